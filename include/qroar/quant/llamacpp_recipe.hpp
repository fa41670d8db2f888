// SPDX-License-Identifier: MIT
// llama.cpp's file types as whole-model recipes: the ggml type llama.cpp's quantizer (llama_model_quantize, as
// llama-quantize runs it: no importance matrix, not --pure) stores each tensor of a llama-architecture model in, so
// that `qroar quantize --quant ggml:q4_K_M` (or `--recipe llama.cpp` with a single-type spec) writes the tensors
// llama.cpp would write, byte for byte (tests/llamacpp checks it against llama.cpp's own quantizer).
//
// The rules (llama.cpp src/llama-quant.cpp, llama_tensor_get_type and tensor_type_fallback, for architecture llama
// without experts; "more bits" layers: i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2):
//   norms, 1-D tensors                      unchanged (f32)
//   output.weight (token_embd when tied)    q6_K, or q8_0 for a q8_0 file or a row length that is not a multiple of
//                                           the file's block size; the file's type for f16 / bf16 / f32 files
//   attn_v.weight                           q2_K: q4_K if n_head / n_head_kv >= 4 else q3_K; q3_K_M: q5_K for the
//                                           first 2 layers, q4_K after; q3_K_L: q5_K; q4_K_M, q5_K_M: q6_K on the
//                                           "more bits" layers; q4_K_S: q5_K for the first 4 layers
//   ffn_down.weight                         q2_K: q3_K; q3_K_M: q5_K for i < n/16, q4_K after; q3_K_L: q5_K;
//                                           q4_K_M, q5_K_M: q6_K on the "more bits" layers; q4_K_S: q5_K for i < n/8
//   attn_output.weight                      q2_K: q3_K; q3_K_M: q4_K; q3_K_L: q5_K
//   every other 2-D weight                  the file's type
//   then, when the row length is not a multiple of the type's block size: q2_K, q3_K -> q4_0, q4_K -> q5_0,
//   q5_K -> q5_1, q6_K -> q8_0, and f16 when that (or a legacy 32-block type) still does not divide.
#pragma once

#include <cstdint>
#include <string>

#include "../error.hpp"
#include "ggml_types.hpp"

namespace qroar {
inline namespace v0 {

// llama.cpp's llama_ftype values (llama.h) for the file types qroar can write.
enum class llama_file_type : std::uint32_t {
  all_f32 = 0,
  mostly_f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q8_0 = 7,
  q5_0 = 8,
  q5_1 = 9,
  q4_k_s = 14,
  q4_k_m = 15,
  q5_k_s = 16,
  q5_k_m = 17,
  q6_k = 18,
  mostly_bf16 = 32,
};

namespace detail {
struct llama_file_type_name {
  llama_file_type type;
  const char* name;       // llama-quantize's name
  ggml_type default_type;  // the type of every tensor the recipe does not single out
};
inline constexpr llama_file_type_name llama_file_type_names[] = {
    {llama_file_type::all_f32, "f32", ggml_type::f32},        {llama_file_type::mostly_f16, "f16", ggml_type::f16},
    {llama_file_type::mostly_bf16, "bf16", ggml_type::bf16},  {llama_file_type::q4_0, "q4_0", ggml_type::q4_0},
    {llama_file_type::q4_1, "q4_1", ggml_type::q4_1},         {llama_file_type::q5_0, "q5_0", ggml_type::q5_0},
    {llama_file_type::q5_1, "q5_1", ggml_type::q5_1},         {llama_file_type::q8_0, "q8_0", ggml_type::q8_0},
    {llama_file_type::q4_k_s, "q4_K_S", ggml_type::q4_k},     {llama_file_type::q4_k_m, "q4_K_M", ggml_type::q4_k},
    {llama_file_type::q5_k_s, "q5_K_S", ggml_type::q5_k},     {llama_file_type::q5_k_m, "q5_K_M", ggml_type::q5_k},
    {llama_file_type::q6_k, "q6_K", ggml_type::q6_k},
};
}  // namespace detail

inline const char* to_string(llama_file_type t) {
  for (const auto& e : detail::llama_file_type_names)
    if (e.type == t) return e.name;
  return "?";
}

// The file type named `name` (llama-quantize's names: q4_0, q4_K_M, ...). Throws invalid_argument otherwise.
inline llama_file_type llama_file_type_from_string(const std::string& name) {
  for (const auto& e : detail::llama_file_type_names)
    if (name == e.name) return e.type;
  std::string known;
  for (const auto& e : detail::llama_file_type_names) known += std::string(known.empty() ? "" : " ") + e.name;
  throw invalid_argument("unknown llama.cpp file type '" + name + "' (known: " + known + ")");
}

// The file type whose every tensor is `t` (the single-type recipes: q4_K -> q4_K_S, q5_K -> q5_K_S).
inline llama_file_type llama_file_type_of(ggml_type t) {
  switch (t) {
    case ggml_type::f32: return llama_file_type::all_f32;
    case ggml_type::f16: return llama_file_type::mostly_f16;
    case ggml_type::bf16: return llama_file_type::mostly_bf16;
    case ggml_type::q4_0: return llama_file_type::q4_0;
    case ggml_type::q4_1: return llama_file_type::q4_1;
    case ggml_type::q5_0: return llama_file_type::q5_0;
    case ggml_type::q5_1: return llama_file_type::q5_1;
    case ggml_type::q8_0: return llama_file_type::q8_0;
    case ggml_type::q4_k: return llama_file_type::q4_k_s;
    case ggml_type::q5_k: return llama_file_type::q5_k_s;
    case ggml_type::q6_k: return llama_file_type::q6_k;
    default: throw unsupported(std::string("no llama.cpp file type stores ggml type ") + to_string(t));
  }
}

inline ggml_type llama_file_type_default(llama_file_type f) {
  for (const auto& e : detail::llama_file_type_names)
    if (e.type == f) return e.default_type;
  throw invalid_argument("unknown llama.cpp file type");
}

// The tensors a recipe tells apart.
enum class recipe_role { token_embedding, output, attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down };

// The ggml type llama.cpp stores a 2-D weight of `role` in, for file type `f` (see the file comment). `layer` /
// `n_layers` place per-layer tensors; `n_gqa` = n_heads / n_kv_heads; `row_length` is ne0 (the input dimension);
// `tied`: the model has no output.weight (token_embd then takes the output's rule).
inline ggml_type llamacpp_recipe_type(llama_file_type f, recipe_role role, int layer, int n_layers, int n_gqa,
                                      std::int64_t row_length, bool tied) {
  const ggml_type base = llama_file_type_default(f);
  if (!ggml_traits(base).supported || ggml_traits(base).block_size == 1) return base;  // f32 / f16 / bf16 files
  auto more_bits = [](int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  ggml_type t = base;
  using lf = llama_file_type;
  if (role == recipe_role::output || (tied && role == recipe_role::token_embedding)) {
    const auto block = static_cast<std::int64_t>(ggml_traits(base).block_size);
    if (row_length % block != 0) t = ggml_type::q8_0;
    else if (base != ggml_type::q8_0) t = ggml_type::q6_k;
  } else if (role == recipe_role::attn_v) {
    if ((f == lf::q4_k_m || f == lf::q5_k_m) && more_bits(layer, n_layers)) t = ggml_type::q6_k;
    else if (f == lf::q4_k_s && layer < 4) t = ggml_type::q5_k;
  } else if (role == recipe_role::ffn_down) {
    if ((f == lf::q4_k_m || f == lf::q5_k_m) && more_bits(layer, n_layers)) t = ggml_type::q6_k;
    else if (f == lf::q4_k_s && layer < n_layers / 8) t = ggml_type::q5_k;
  }
  (void)n_gqa;  // used by the q2_K / q3_K recipes, which qroar cannot write (no quantizer for those blocks)
  // tensor_type_fallback
  if (row_length % static_cast<std::int64_t>(ggml_traits(t).block_size) != 0) {
    switch (t) {
      case ggml_type::q4_k: t = ggml_type::q5_0; break;
      case ggml_type::q5_k: t = ggml_type::q5_1; break;
      case ggml_type::q6_k: t = ggml_type::q8_0; break;
      default: break;  // the 32-blocks: straight to f16 below
    }
    if (row_length % static_cast<std::int64_t>(ggml_traits(t).block_size) != 0) t = ggml_type::f16;
  }
  return t;
}

}  // namespace v0
}  // namespace qroar
