// SPDX-License-Identifier: MIT
// Moving W_Q / W_K rows between the two RoPE pair layouts (docs/formulas.md §1.3).
#pragma once

#include <string>

#include "../config.hpp"
#include "../error.hpp"
#include "../rope/layout.hpp"
#include "../tensor.hpp"
#include "llama_weights.hpp"

namespace qroar {
inline namespace v0 {

// Reorders the rows of W_Q (n_heads = query heads) or W_K (n_heads = KV heads) from layout `from` to `to`.
// w: (n_heads * head_dim, in_features); returns the same shape. Inside each head h, with d = rotary_dim
// (0 means head_dim) and t in {0, 1}:
//
//   interleaved row h*hd + 2j + t   <->   half-split row h*hd + t*d/2 + j      (j < d/2)
//
// which is HF convert_llama_weights_to_hf.py `permute` (Meta -> HF) and its inverse, llama.cpp
// convert_hf_to_gguf.py `LlamaModel.permute` (HF -> GGUF). Channels >= d are not rotated and keep their rows.
inline tensor permute_qk_rows(const tensor& w, int n_heads, int head_dim, int rotary_dim, pair_layout from,
                              pair_layout to) {
  const int d = rotary_dim > 0 ? rotary_dim : head_dim;
  if (n_heads <= 0 || head_dim <= 0 || d % 2 != 0 || d > head_dim)
    throw invalid_argument("permute_qk_rows: bad geometry (n_heads " + std::to_string(n_heads) + ", head_dim " +
                           std::to_string(head_dim) + ", rotary_dim " + std::to_string(d) + ")");
  if (w.rows() != static_cast<Eigen::Index>(n_heads) * head_dim)
    throw invalid_argument("permute_qk_rows: matrix has " + std::to_string(w.rows()) + " rows, expected n_heads * head_dim = " +
                           std::to_string(static_cast<long long>(n_heads) * head_dim));
  if (from == to) return w;
  tensor out(w.rows(), w.cols());
  for (int h = 0; h < n_heads; ++h) {
    for (int c = 0; c < head_dim; ++c) {
      const Eigen::Index inter = static_cast<Eigen::Index>(h) * head_dim + c;
      const Eigen::Index half = static_cast<Eigen::Index>(h) * head_dim + interleaved_to_half_split_channel(c, d);
      if (from == pair_layout::interleaved) out.row(half) = w.row(inter);
      else out.row(inter) = w.row(half);
    }
  }
  return out;
}

// Converts W_Q and W_K of every layer to layout `to` and records it in model.config.layout.
// A model already in layout `to` is left unchanged.
inline void convert_pair_layout(llama_model& model, pair_layout to) {
  const llama_config& c = model.config;
  if (c.layout == to) return;
  for (auto& layer : model.layers) {
    layer.wq = permute_qk_rows(layer.wq, c.n_heads, c.head_size(), c.rotary_dim, c.layout, to);
    layer.wk = permute_qk_rows(layer.wk, c.n_kv_heads, c.head_size(), c.rotary_dim, c.layout, to);
  }
  model.config.layout = to;
}

}  // namespace v0
}  // namespace qroar
