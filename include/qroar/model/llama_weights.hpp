// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <vector>

#include "../tensor.hpp"
#include "../quant/ggml_types.hpp"
#include "llama_config.hpp"

namespace qroar {
inline namespace v0 {

// Float weights of one decoder layer. Matrices are (out_features, in_features), row-major.
struct llama_layer {
  vector attn_norm;  // (dim)
  tensor wq;         // (n_heads * head_dim, dim)
  tensor wk;         // (n_kv_heads * head_dim, dim)
  tensor wv;         // (n_kv_heads * head_dim, dim)
  tensor wo;         // (dim, n_heads * head_dim)
  vector ffn_norm;   // (dim)
  tensor w1;         // gate: (hidden_dim, dim)
  tensor w2;         // down: (dim, hidden_dim)
  tensor w3;         // up:   (hidden_dim, dim)
};

// Where a tensor came from, for writers that must keep the input's storage types (GGUF, safetensors).
struct tensor_source {
  std::string name;                   // name in the file
  ggml_type type = ggml_type::f32;    // storage type in the file
};

// A loaded LLaMA-family model: config plus float weights (dequantized when the file was quantized).
struct llama_model {
  llama_config config;
  tensor token_embedding;  // (vocab_size, dim)
  std::vector<llama_layer> layers;
  vector final_norm;       // (dim)
  tensor output;           // (vocab_size, dim); empty when tied to token_embedding
  std::string source_path;
  std::string source_format;  // "llama2c", "gguf", "hf"

  const tensor& classifier() const noexcept { return output.size() > 0 ? output : token_embedding; }
};

}  // namespace v0
}  // namespace qroar
