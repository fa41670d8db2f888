// SPDX-License-Identifier: MIT
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "../model/llama_weights.hpp"
#include "ggml_blocks.hpp"
#include "llamacpp_recipe.hpp"
#include "rtn.hpp"
#include "spec.hpp"

namespace qroar {
inline namespace v0 {

// The linear weights a weight quantizer touches: wq wk wv wo w1 w2 w3 of every layer (not the embeddings, not
// the norms, not a tied classifier). `fn(layer, name, tensor)` sees each of them.
inline void for_each_linear_weight(llama_model& m, const std::function<void(int, const char*, tensor&)>& fn) {
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    auto& L = m.layers[l];
    const int li = static_cast<int>(l);
    fn(li, "wq", L.wq);
    fn(li, "wk", L.wk);
    fn(li, "wv", L.wv);
    fn(li, "wo", L.wo);
    fn(li, "w1", L.w1);
    fn(li, "w2", L.w2);
    fn(li, "w3", L.w3);
  }
}

// The ggml type a row of length n is stored in when `wanted` is requested (the rule of llama.cpp's quantizer as
// used for ../shared: the requested type when n is a multiple of its block size, else q8_0 when n is a multiple
// of 32, else f32).
inline ggml_type ggml_type_for_row(ggml_type wanted, std::int64_t n) {
  if (n % ggml_traits(wanted).block_size == 0) return wanted;
  if (n % 32 == 0) return ggml_type::q8_0;
  return ggml_type::f32;
}

// Quantizes and dequantizes every row of w with a ggml block format (bit-exact with ggml's reference quantizer).
inline void ggml_fake_quantize(tensor& w, ggml_type wanted) {
  const ggml_type t = ggml_type_for_row(wanted, w.cols());
  if (t == ggml_type::f32) return;
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(ggml_row_size(t, static_cast<std::uint64_t>(w.cols()))));
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    quantize_row(t, w.data() + r * w.cols(), buf.data(), w.cols());
    dequantize_row(t, buf.data(), w.data() + r * w.cols(), w.cols());
  }
}

// The recipe role of a llama_layer weight named as for_each_linear_weight names it.
inline recipe_role recipe_role_of_layer_weight(const std::string& name) {
  if (name == "wq") return recipe_role::attn_q;
  if (name == "wk") return recipe_role::attn_k;
  if (name == "wv") return recipe_role::attn_v;
  if (name == "wo") return recipe_role::attn_output;
  if (name == "w1") return recipe_role::ffn_gate;
  if (name == "w2") return recipe_role::ffn_down;
  return recipe_role::ffn_up;
}

// Quantizes and dequantizes `w` (rows x cols) in exactly type `t` (no fallback; f32 leaves it, f16 / bf16 round).
inline void ggml_fake_quantize_exact(tensor& w, ggml_type t) {
  if (t == ggml_type::f32) return;
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(ggml_row_size(t, static_cast<std::uint64_t>(w.cols()))));
  for (Eigen::Index r = 0; r < w.rows(); ++r) {
    quantize_row(t, w.data() + r * w.cols(), buf.data(), w.cols());
    dequantize_row(t, buf.data(), w.data() + r * w.cols(), w.cols());
  }
}

// llama.cpp's recipe for file type `f` simulated on a model in place: every linear weight, the token embedding and
// the output in the type llamacpp_recipe_type gives them (what `qroar quantize` with the recipe writes).
inline void llamacpp_recipe_quantize(llama_model& m, llama_file_type f) {
  const auto& c = m.config;
  const int gqa = c.n_kv_heads > 0 ? c.n_heads / c.n_kv_heads : 1;
  const bool tied = m.output.size() == 0;
  for_each_linear_weight(m, [&](int layer, const char* name, tensor& w) {
    ggml_fake_quantize_exact(w, llamacpp_recipe_type(f, recipe_role_of_layer_weight(name), layer, c.n_layers, gqa,
                                                     w.cols(), tied));
  });
  ggml_fake_quantize_exact(m.token_embedding, llamacpp_recipe_type(f, recipe_role::token_embedding, 0, c.n_layers, gqa,
                                                                   m.token_embedding.cols(), tied));
  if (!tied)
    ggml_fake_quantize_exact(m.output, llamacpp_recipe_type(f, recipe_role::output, 0, c.n_layers, gqa,
                                                            m.output.cols(), tied));
}

// Simulated weight-only quantization of a model in place (RTN and ggml formats; GPTQ needs calibration data,
// see quant/gptq.hpp).
inline void quantize_weights(llama_model& m, const weight_quant_spec& s) {
  switch (s.method) {
    case weight_method::none:
      return;
    case weight_method::rtn:
      for_each_linear_weight(m, [&](int, const char*, tensor& w) { rtn_quantize(w, s); });
      return;
    case weight_method::ggml:
      if (s.llamacpp_recipe) {
        llamacpp_recipe_quantize(m, *s.llamacpp_recipe);
        return;
      }
      for_each_linear_weight(m, [&](int, const char*, tensor& w) { ggml_fake_quantize(w, s.ggml); });
      return;
    case weight_method::gptq:
      throw invalid_argument("GPTQ needs calibration tokens: use qroar::gptq_quantize_model (quant/gptq.hpp)");
  }
}

}  // namespace v0
}  // namespace qroar
