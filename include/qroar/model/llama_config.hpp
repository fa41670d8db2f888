// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "../error.hpp"
#include "../rope/layout.hpp"
#include "../rope/scaling.hpp"

namespace qroar {
inline namespace v0 {

// Hyper-parameters of a LLaMA-family decoder (RMSNorm, GQA attention with RoPE, SwiGLU FFN, no biases).
struct llama_config {
  std::string architecture = "llama";
  int dim = 0;          // hidden size
  int hidden_dim = 0;   // FFN inner size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;
  int head_dim = 0;     // 0 means dim / n_heads
  int rotary_dim = 0;   // 0 means head_dim (partial rotary otherwise)
  double rope_theta = 10000.0;
  pair_layout layout = pair_layout::interleaved;  // row order of W_Q / W_K as stored
  int original_ctx = 0;                           // context the model was trained at (L0)
  int max_position_embeddings = 0;                // HF max_position_embeddings (0: original_ctx)
  float norm_eps = 1e-5f;
  bool tied_embeddings = true;
  rope_scaling rope;  // scaling recorded in the file (HF rope_scaling, GGUF rope.scaling.*); none by default

  int head_size() const noexcept { return head_dim > 0 ? head_dim : (n_heads > 0 ? dim / n_heads : 0); }
  int q_dim() const noexcept { return n_heads * head_size(); }
  int kv_dim() const noexcept { return n_kv_heads * head_size(); }
  int n_rep() const noexcept { return n_kv_heads > 0 ? n_heads / n_kv_heads : 0; }
  rope_dims rope_geometry() const { return rope_dims{head_size(), rotary_dim, rope_theta, layout}; }

  // The first problem of this config ("" when it is valid).
  std::string problem() const {
    if (dim <= 0 || hidden_dim <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv_heads <= 0 || vocab_size <= 0)
      return "dim, hidden_dim, n_layers, n_heads, n_kv_heads and vocab_size must be positive";
    if (n_heads % n_kv_heads != 0) return "n_heads must be a multiple of n_kv_heads";
    if (head_dim == 0 && dim % n_heads != 0) return "dim must be a multiple of n_heads";
    if (head_size() % 2 != 0) return "head_dim must be even";
    if (rotary_dim < 0 || rotary_dim % 2 != 0 || rotary_dim > head_size()) return "rotary_dim must be even and <= head_dim";
    if (!(rope_theta > 1.0) || !std::isfinite(rope_theta)) return "rope_theta must be finite and > 1";
    if (!(norm_eps > 0.0f) || !std::isfinite(norm_eps)) return "norm_eps must be positive and finite";
    // head_dim is capped too, so that q_dim() and kv_dim() (n_heads * head_dim) cannot overflow int.
    if (dim > (1 << 20) || hidden_dim > (1 << 22) || n_layers > 4096 || n_heads > 4096 || vocab_size > (1 << 24) ||
        head_dim > (1 << 16))
      return "sizes are implausibly large";
    return {};
  }

  // A config built by the caller (a model about to be written, say): invalid_argument naming `source`.
  void validate(const std::string& source) const {
    if (const std::string p = problem(); !p.empty()) throw invalid_argument(source + ": invalid model config: " + p);
  }

  // A config read from `file` (header, metadata or config.json at byte `offset`): a bad value is a defect of the
  // file, so format_error (CLI exit 1), also for the RoPE scaling the file records.
  void validate_loaded(const std::string& file, std::uint64_t offset = 0) const {
    if (const std::string p = problem(); !p.empty()) throw format_error(file, "", offset, "invalid model config: " + p);
    if (rope.type == rope_type::none) return;
    try {
      rope.validate(rope_geometry());
    } catch (const invalid_argument& e) {
      throw format_error(file, "", offset, std::string("invalid RoPE scaling: ") + e.what());
    }
  }
};

}  // namespace v0
}  // namespace qroar
