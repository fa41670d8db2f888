// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <vector>

#include "../tensor.hpp"
#include "layout.hpp"
#include "scaling.hpp"

namespace qroar {
inline namespace v0 {

// cos(m * theta'_j) * a and sin(m * theta'_j) * a for a list of positions m, the table every RoPE
// application reads. Angles are formed in double precision (m * theta in float32 loses ~m * 2^-24 rad).
// cos, sin: (n_positions, d/2).
struct rope_table {
  tensor cos;
  tensor sin;
  rope_dims dims;

  rope_table() = default;
  rope_table(const rope_dims& d, const std::vector<double>& inv_freq, double attention_factor,
             const std::vector<int>& positions)
      : dims(d) {
    QROAR_ASSERT(static_cast<int>(inv_freq.size()) == d.pairs(), "inv_freq must have rotary_dim/2 entries");
    const auto np = static_cast<Eigen::Index>(positions.size());
    cos.resize(np, d.pairs());
    sin.resize(np, d.pairs());
    for (Eigen::Index t = 0; t < np; ++t)
      for (int j = 0; j < d.pairs(); ++j) {
        const double angle = static_cast<double>(positions[static_cast<std::size_t>(t)]) * inv_freq[static_cast<std::size_t>(j)];
        cos(t, j) = static_cast<float>(std::cos(angle) * attention_factor);
        sin(t, j) = static_cast<float>(std::sin(angle) * attention_factor);
      }
  }

  // Table for positions 0 .. n-1 under a scaling (seq_len = n for the length-dependent schemes).
  static rope_table for_positions(const rope_dims& d, const rope_scaling& sc, int n, int first_position = 0) {
    std::vector<int> pos(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = first_position + i;
    const int seq_len = first_position + n;
    return rope_table(d, inverse_frequencies(sc, d, seq_len), attention_factor(sc, d, seq_len), pos);
  }
};

// Rotates one head vector x (head_dim channels) by row t of the table:
//   x' = x*cos - y*sin, y' = x*sin + y*cos for each pair (x, y) (RoFormer, Su et al. 2021, eq. 13).
// Channels >= rotary_dim are copied unchanged (partial rotary). The attention factor is in the table.
inline void rotate_head(float* QROAR_RESTRICT x, const rope_table& table, Eigen::Index t) noexcept {
  const rope_dims& d = table.dims;
  const float* c = table.cos.data() + t * table.cos.cols();
  const float* s = table.sin.data() + t * table.sin.cols();
  const int n = d.pairs();
  if (d.layout == pair_layout::interleaved) {
    for (int j = 0; j < n; ++j) {
      const float x0 = x[2 * j], x1 = x[2 * j + 1];
      x[2 * j] = x0 * c[j] - x1 * s[j];
      x[2 * j + 1] = x0 * s[j] + x1 * c[j];
    }
  } else {
    for (int j = 0; j < n; ++j) {
      const float x0 = x[j], x1 = x[j + n];
      x[j] = x0 * c[j] - x1 * s[j];
      x[j + n] = x0 * s[j] + x1 * c[j];
    }
  }
}

// Applies RoPE in place to a block of token rows. x: (tokens, n_heads * head_dim); token t uses table row t.
inline void apply_rope(tensor& x, int n_heads, const rope_table& table) {
  QROAR_ASSERT(x.cols() == static_cast<Eigen::Index>(n_heads) * table.dims.head_dim, "x must be (tokens, n_heads*head_dim)");
  QROAR_ASSERT(x.rows() <= table.cos.rows(), "rope table has fewer positions than x has rows");
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (int h = 0; h < n_heads; ++h) rotate_head(x.data() + t * x.cols() + h * table.dims.head_dim, table, t);
}

}  // namespace v0
}  // namespace qroar
