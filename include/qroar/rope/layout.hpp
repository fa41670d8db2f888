// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <string>

#include "../config.hpp"
#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// Which two channels of a head form RoPE pair j (d = rotary dimension, channels >= d are not rotated):
//
//   half_split (HF rotate_half, GPT-NeoX, ggml NEOX)     interleaved (Meta, GPT-J, llama2.c, GGUF llama)
//   channel: 0 1 2 3 | 4 5 6 7                           channel: 0 1 | 2 3 | 4 5 | 6 7
//   pair j:  0 1 2 3 | 0 1 2 3                           pair j:  0 0 | 1 1 | 2 2 | 3 3
//   role:    x x x x | y y y y                           role:    x y | x y | x y | x y
//
// Source: HF transformers models/llama/modeling_llama.py (rotate_half); karpathy/llama2.c run.c.
enum class pair_layout { interleaved, half_split };

inline const char* to_string(pair_layout layout) noexcept {
  return layout == pair_layout::interleaved ? "interleaved" : "half_split";
}

inline pair_layout pair_layout_from_string(const std::string& name) {
  if (name == "interleaved" || name == "normal" || name == "gptj") return pair_layout::interleaved;
  if (name == "half_split" || name == "half-split" || name == "neox") return pair_layout::half_split;
  throw invalid_argument("unknown RoPE pair layout '" + name + "' (expected interleaved or half_split)");
}

// The geometry of RoPE in one attention head.
struct rope_dims {
  int head_dim = 0;      // hd: channels per head
  int rotary_dim = 0;    // d: rotated channels (0 means head_dim); d <= hd, d even
  double base = 10000.0;  // b: RoPE base (HF rope_theta, ggml freq_base)
  pair_layout layout = pair_layout::interleaved;

  int rotary() const noexcept { return rotary_dim > 0 ? rotary_dim : head_dim; }
  int pairs() const noexcept { return rotary() / 2; }

  void validate() const {
    if (head_dim <= 0 || head_dim % 2 != 0)
      throw invalid_argument("head_dim must be a positive even number, got " + std::to_string(head_dim));
    if (rotary() <= 0 || rotary() % 2 != 0 || rotary() > head_dim)
      throw invalid_argument("rotary_dim must be even and in (0, head_dim], got " + std::to_string(rotary()));
    if (!(base > 1.0)) throw invalid_argument("RoPE base must be > 1, got " + std::to_string(base));
  }
};

// The two channels (x, y) of pair j inside one head.
inline std::array<int, 2> pair_channels(const rope_dims& dims, int pair) {
  QROAR_ASSERT(pair >= 0 && pair < dims.pairs(), "pair index out of range");
  if (dims.layout == pair_layout::interleaved) return {2 * pair, 2 * pair + 1};
  return {pair, pair + dims.rotary() / 2};
}

// The rotary pair that channel c of a head belongs to, or -1 for a channel that is not rotated (c >= d).
inline int pair_of_channel(const rope_dims& dims, int channel) {
  QROAR_ASSERT(channel >= 0 && channel < dims.head_dim, "channel index out of range");
  if (channel >= dims.rotary()) return -1;
  return dims.layout == pair_layout::interleaved ? channel / 2 : channel % (dims.rotary() / 2);
}

// Rows of W_Q (head = query head) or of W_K / W_V (head = KV head) that produce pair j:
// row = head * hd + channel, for (out_features, in_features) weight matrices.
inline std::array<int, 2> pair_rows(const rope_dims& dims, int head, int pair) {
  QROAR_ASSERT(head >= 0, "head index must be non-negative");
  const auto ch = pair_channels(dims, pair);
  return {head * dims.head_dim + ch[0], head * dims.head_dim + ch[1]};
}

// Grouped-query attention: query head h reads KV head h / n_rep, n_rep = n_heads / n_kv_heads
// (HF repeat_kv, ggml broadcasting).
inline int kv_head_of(int query_head, int n_heads, int n_kv_heads) {
  QROAR_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads");
  QROAR_ASSERT(query_head >= 0 && query_head < n_heads, "query head out of range");
  return query_head / (n_heads / n_kv_heads);
}

// Row permutation between the layouts inside one head: interleaved row 2j+t <-> half-split row t*d/2 + j
// (HF convert_llama_weights_to_hf.py permute; llama.cpp convert_hf_to_gguf.py is its inverse).
// Returns the half-split channel that holds interleaved channel c. Non-rotary channels stay in place.
inline int interleaved_to_half_split_channel(int channel, int rotary_dim) {
  if (channel >= rotary_dim) return channel;
  return (channel % 2) * (rotary_dim / 2) + channel / 2;
}

}  // namespace v0
}  // namespace qroar
