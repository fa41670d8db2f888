// SPDX-License-Identifier: MIT
// A llama_model from a GGUF file (llama.cpp naming), over the gguf_file reader of gguf.hpp.
//
//   token_embd.weight (vocab, dim)      blk.N.attn_norm.weight (dim)     blk.N.attn_{q,k,v,output}.weight
//   blk.N.ffn_norm.weight (dim)         blk.N.ffn_{gate,up,down}.weight  output_norm.weight (dim)
//   output.weight (vocab, dim), optional: absent (or bit-identical to token_embd.weight) means tied
//
// GGUF stores a tensor as ne[0] (contiguous, the input dimension) x ne[1] rows, so gguf_file::dequantize gives
// the (out_features, in_features) matrices of llama_model directly. For architecture llama, convert_hf_to_gguf.py
// permutes W_Q / W_K back to interleaved pairs (llama.cpp rope mode NORMAL, FORMULAS 1.3-1.4): layout interleaved.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "../detail/model_io.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "gguf.hpp"

namespace qroar {
inline namespace v0 {

struct gguf_load_options {
  // The trained context L0 to record in config.original_ctx; 0 = from the file (rope.scaling.original_context_length,
  // else llama.context_length). llama.context_length is the context the converter declared, which is not always the
  // training context: ggml-org's stories260K.gguf says 2048 for a model trained at 512 (shared/data/MANIFEST.md).
  int original_ctx = 0;
};

namespace detail {
namespace gguf_model_io {

inline int positive_int(const gguf_file& f, const std::string& key, std::int64_t fallback) {
  const std::int64_t v = f.get_int(key, fallback);
  if (v <= 0 || v > 0x7fffffffLL) {
    if (!f.contains(key)) throw format_error(f.path(), "", 0, "metadata key '" + key + "' is missing");
    throw format_error(f.path(), "", 0, "metadata key '" + key + "' = " + std::to_string(v) + " must be a positive int32");
  }
  return static_cast<int>(v);
}

}  // namespace gguf_model_io
}  // namespace detail

// Builds a llama_model from an open GGUF file: dequantizes every tensor to float (any type gguf_file can
// dequantize). Keys read ({a} = general.architecture, which must be "llama"):
//   {a}.embedding_length, feed_forward_length, block_count, attention.head_count, attention.head_count_kv
//   (default head_count), attention.key_length (default dim / heads), rope.dimension_count (default head_dim),
//   rope.freq_base (default 10000, as llama.cpp), attention.layer_norm_rms_epsilon (default 1e-5),
//   context_length (max_position_embeddings; also L0 unless overridden), rope.scaling.type / factor /
//   original_context_length / attn_factor (none, linear, yarn -> qroar's yarn-ggml semantics), or the older
//   rope.scale_linear.
// Errors: unsupported (another architecture, a rope_freqs tensor, an unknown scaling type, a type that cannot be
// dequantized), format_error (missing keys or tensors, shapes that disagree with the keys), numeric_error
// (non-finite weights, naming tensor and element).
inline llama_model llama_model_from_gguf(const gguf_file& f, const gguf_load_options& options = {}) {
  namespace gm = detail::gguf_model_io;
  const std::string arch = f.architecture();
  if (arch != "llama")
    throw unsupported(f.path() + ": GGUF architecture '" + arch + "' is not supported (llama is)");
  const std::string a = arch + ".";
  llama_model m;
  llama_config& c = m.config;
  c.architecture = "llama";
  c.dim = gm::positive_int(f, a + "embedding_length", 0);
  c.hidden_dim = gm::positive_int(f, a + "feed_forward_length", 0);
  c.n_layers = gm::positive_int(f, a + "block_count", 0);
  c.n_heads = gm::positive_int(f, a + "attention.head_count", 0);
  c.n_kv_heads = gm::positive_int(f, a + "attention.head_count_kv", c.n_heads);
  c.head_dim = gm::positive_int(f, a + "attention.key_length", c.dim / c.n_heads > 0 ? c.dim / c.n_heads : 1);
  const int n_rot = gm::positive_int(f, a + "rope.dimension_count", c.head_dim);
  c.rotary_dim = n_rot == c.head_dim ? 0 : n_rot;
  c.rope_theta = f.get_float(a + "rope.freq_base", 10000.0);
  c.norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.layout = pair_layout::interleaved;
  const int context = gm::positive_int(f, a + "context_length", 2048);
  c.max_position_embeddings = context;
  const int scaling_l0 = static_cast<int>(f.get_int(a + "rope.scaling.original_context_length", 0));
  c.original_ctx = options.original_ctx > 0 ? options.original_ctx : scaling_l0 > 0 ? scaling_l0 : context;

  std::string type = f.get_string(a + "rope.scaling.type", "none");
  double factor = f.get_float(a + "rope.scaling.factor", 0.0);
  if (f.contains(a + "rope.scale_linear") && !f.contains(a + "rope.scaling.type")) {
    type = "linear";
    factor = f.get_float(a + "rope.scale_linear", 1.0);
  }
  if (type == "linear" && factor > 0.0 && factor != 1.0) {
    c.rope = rope_scaling::linear(factor);
    c.rope.original_ctx = c.original_ctx;
  } else if (type == "yarn") {
    c.rope = rope_scaling::yarn_ggml(factor > 0.0 ? factor : 1.0, c.original_ctx);
    c.rope.attn_factor = f.get_float(a + "rope.scaling.attn_factor", 1.0);
    c.rope.beta_fast = f.get_float(a + "rope.scaling.yarn_beta_fast", 32.0);
    c.rope.beta_slow = f.get_float(a + "rope.scaling.yarn_beta_slow", 1.0);
    c.rope.ext_factor = f.get_float(a + "rope.scaling.yarn_ext_factor", 1.0);
  } else if (type != "none" && type != "linear") {
    throw unsupported(f.path() + ": rope.scaling.type '" + type + "' is not supported (none, linear, yarn are)");
  }
  if (c.rope.type != rope_type::none) c.rope.max_position_embeddings = context;
  if (f.tensor("rope_freqs.weight"))
    throw unsupported(f.path() + ": tensor 'rope_freqs.weight' (per-pair RoPE frequency factors) is not supported");

  const gguf_tensor_info* emb = f.tensor("token_embd.weight");
  if (!emb) throw format_error(f.path(), "token_embd.weight", 0, "required tensor is missing");
  const std::int64_t vocab = f.get_int(a + "vocab_size", emb->n_rows());
  if (vocab != emb->n_rows() || vocab <= 0 || vocab > 0x7fffffffLL)
    throw format_error(f.path(), "token_embd.weight", emb->info_offset,
                       "has " + std::to_string(emb->n_rows()) + " rows, the vocabulary size is " + std::to_string(vocab));
  c.vocab_size = static_cast<int>(vocab);
  const gguf_tensor_info* out = f.tensor("output.weight");
  c.tied_embeddings = out == nullptr;
  c.validate(f.path());
  if (c.rope.type != rope_type::none) c.rope.validate(c.rope_geometry());

  auto load = [&](const std::string& name, int rows, int cols) {
    const gguf_tensor_info* info = f.tensor(name);
    if (!info) throw format_error(f.path(), name, 0, "required tensor is missing");
    if (info->ne[0] != cols || info->n_rows() != rows || info->ne[2] != 1 || info->ne[3] != 1)
      throw format_error(f.path(), name, info->info_offset,
                         "shape ne = [" + std::to_string(info->ne[0]) + ", " + std::to_string(info->ne[1]) + ", " +
                             std::to_string(info->ne[2]) + ", " + std::to_string(info->ne[3]) + "], expected [" +
                             std::to_string(cols) + ", " + std::to_string(rows) + "]");
    tensor t = f.dequantize(*info);
    detail::model_io::check_finite(t.data(), static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), f.path(), name);
    return t;
  };
  auto load_vector = [&](const std::string& name, int n) {
    const tensor t = load(name, 1, n);
    return vector(Eigen::Map<const vector>(t.data(), n));
  };
  const int q = c.q_dim(), kv = c.kv_dim();
  m.token_embedding = load("token_embd.weight", c.vocab_size, c.dim);
  m.layers.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    llama_layer& L = m.layers[static_cast<std::size_t>(l)];
    L.attn_norm = load_vector(p + "attn_norm.weight", c.dim);
    L.wq = load(p + "attn_q.weight", q, c.dim);
    L.wk = load(p + "attn_k.weight", kv, c.dim);
    L.wv = load(p + "attn_v.weight", kv, c.dim);
    L.wo = load(p + "attn_output.weight", c.dim, q);
    L.ffn_norm = load_vector(p + "ffn_norm.weight", c.dim);
    L.w1 = load(p + "ffn_gate.weight", c.hidden_dim, c.dim);
    L.w2 = load(p + "ffn_down.weight", c.dim, c.hidden_dim);
    L.w3 = load(p + "ffn_up.weight", c.hidden_dim, c.dim);
  }
  m.final_norm = load_vector("output_norm.weight", c.dim);
  if (out) {
    m.output = load("output.weight", c.vocab_size, c.dim);
    // Converters often store the tied classifier as its own copy (ggml-org's stories260K.gguf does): a bit-identical
    // output.weight is recorded as tied, the form the llama2.c and HF files of the same model have.
    if (std::memcmp(m.output.data(), m.token_embedding.data(), sizeof(float) * static_cast<std::size_t>(m.output.size())) == 0) {
      m.output.resize(0, 0);
      c.tied_embeddings = true;
    }
  }
  m.source_path = f.path();
  m.source_format = "gguf";
  return m;
}

// Opens `path` with gguf_file::open and builds the model (see llama_model_from_gguf).
inline llama_model load_gguf_model(const std::string& path, const gguf_load_options& options = {}) {
  return llama_model_from_gguf(gguf_file::open(path), options);
}

}  // namespace v0
}  // namespace qroar
