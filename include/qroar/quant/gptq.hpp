// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "../model/forward.hpp"
#include "rtn.hpp"
#include "spec.hpp"
#include "weights.hpp"

namespace qroar {
inline namespace v0 {

// GPTQ (Frantar et al. 2023; IST-DASLab/gptq gptq.py): quantize the columns of W one at a time and spread each
// column's quantization error over the columns not yet quantized, weighted by the inverse Hessian of the layer's
// squared output error, H = 2/N sum_n x_n x_n^T over calibration inputs x_n.
//   dead inputs (H_ii = 0): H_ii = 1, W[:, i] = 0
//   act order: columns by decreasing H_ii
//   H += damp * mean(diag H) * I;  U = chol(H^-1) upper (so H^-1 = U^T U)
//   for each block of `block_size` columns, for column i: q = Q(w_i); err = (w_i - q) / U_ii;
//       W[:, i:block_end] -= err * U[i, i:block_end];   after the block: W[:, block_end:] -= Err * U[block, block_end:]
// The grid is qroar's RTN grid (rtn.hpp) with the spec's bits, symmetry, group size and fp16 option, so GPTQ and
// RTN are compared on the same grid; group parameters are found on the current (error-updated) weights when a
// group's first column is reached (in act order, groups follow the permuted order, as gptq.py without
// static_groups).
inline constexpr int gptq_block_size = 128;

namespace detail {

// Per-row quantization parameters of one group on the RTN grid.
struct row_grid {
  float scale = 0.0f, zero = 0.0f, qmin = 0.0f, qmax = 0.0f;
  bool passthrough = false;  // asymmetric constant group: kept exactly, as rtn_group does

  float apply(float v) const noexcept {
    if (passthrough) return v;
    if (scale <= 0.0f) return 0.0f;
    return (std::clamp(std::nearbyint(v / scale) + zero, qmin, qmax) - zero) * scale;
  }
};

inline row_grid find_row_grid(const double* x, Eigen::Index n, Eigen::Index stride, const weight_quant_spec& s) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(x[i * stride]);
  const rtn_group_params p{s.bits, s.symmetric, s.fp16_scales};
  float clip = 1.0f;
  if (s.clip_search) {
    double best = std::numeric_limits<double>::infinity();
    for (int k = 0; k < rtn_clip_grid_points; ++k) {
      const float c = 1.0f - (1.0f - rtn_clip_min_ratio) * static_cast<float>(k) / (rtn_clip_grid_points - 1);
      const double e = rtn_group(v.data(), nullptr, static_cast<int>(n), 1, p, c);
      if (e < best) {
        best = e;
        clip = c;
      }
    }
  }
  row_grid g;
  if (s.symmetric) {
    g.qmax = static_cast<float>((1 << (s.bits - 1)) - 1);
    g.qmin = -g.qmax - 1.0f;
    float amax = 0.0f;
    for (float a : v) amax = std::max(amax, std::abs(a));
    g.scale = kernels::detail::rtn_symmetric_scale(amax, s.bits, s.fp16_scales, clip);
  } else {
    g.qmin = 0.0f;
    g.qmax = static_cast<float>((1 << s.bits) - 1);
    const float mn = *std::min_element(v.begin(), v.end()), mx = *std::max_element(v.begin(), v.end());
    g.scale = kernels::detail::rtn_asymmetric_scale(mn, mx, s.bits, s.fp16_scales, clip);
    if (g.scale > 0.0f) g.zero = std::nearbyint(-(mn * clip) / g.scale);
    else g.passthrough = true;
  }
  return g;
}

}  // namespace detail

// Squared output error sum_n ||(W - Q) x_n||^2 = tr((W - Q) S (W - Q)^T) with S = sum_n x_n x_n^T.
inline double layer_output_error(const tensor& w, const tensor& q, const Eigen::MatrixXd& input_gram) {
  const Eigen::MatrixXd d = (w - q).cast<double>();
  return (d * input_gram).cwiseProduct(d).sum();
}

// Quantizes w (out, in) in place with GPTQ given S = sum_n x_n x_n^T (in, in) of its calibration inputs.
// Returns false (and leaves w RTN-quantized) when the damped Hessian is not positive definite.
inline bool gptq_quantize_matrix(tensor& w, const Eigen::MatrixXd& input_gram, const weight_quant_spec& s) {
  const Eigen::Index rows = w.rows(), cols = w.cols();
  QROAR_ASSERT(input_gram.rows() == cols && input_gram.cols() == cols, "Gram matrix must be (in, in)");
  Eigen::MatrixXd W = w.cast<double>();  // column-major: column operations are contiguous
  Eigen::MatrixXd H = input_gram;
  for (Eigen::Index i = 0; i < cols; ++i)
    if (H(i, i) == 0.0) {
      H(i, i) = 1.0;
      W.col(i).setZero();
    }
  std::vector<Eigen::Index> perm(static_cast<std::size_t>(cols));
  std::iota(perm.begin(), perm.end(), Eigen::Index{0});
  if (s.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](Eigen::Index a, Eigen::Index b) { return H(a, a) > H(b, b); });
  Eigen::MatrixXd Wp(rows, cols), Hp(cols, cols);
  for (Eigen::Index j = 0; j < cols; ++j) Wp.col(j) = W.col(perm[static_cast<std::size_t>(j)]);
  for (Eigen::Index i = 0; i < cols; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) Hp(i, j) = H(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  const double damp = s.damp * Hp.diagonal().mean();
  Hp.diagonal().array() += damp;
  Eigen::LLT<Eigen::MatrixXd> llt(Hp);
  if (llt.info() != Eigen::Success) {
    rtn_quantize(w, s);
    return false;
  }
  const Eigen::MatrixXd Hinv = llt.solve(Eigen::MatrixXd::Identity(cols, cols));
  Eigen::LLT<Eigen::MatrixXd> llt_inv(Hinv);
  if (llt_inv.info() != Eigen::Success) {
    rtn_quantize(w, s);
    return false;
  }
  const Eigen::MatrixXd U = llt_inv.matrixU();  // Hinv = U^T U
  const Eigen::Index gs = s.granularity == weight_granularity::group ? s.group_size : cols;
  std::vector<detail::row_grid> grid(static_cast<std::size_t>(rows));
  if (s.granularity != weight_granularity::group)
    for (Eigen::Index r = 0; r < rows; ++r) grid[static_cast<std::size_t>(r)] = detail::find_row_grid(Wp.data() + r, cols, rows, s);
  Eigen::MatrixXd Q(rows, cols);
  for (Eigen::Index b0 = 0; b0 < cols; b0 += gptq_block_size) {
    const Eigen::Index b1 = std::min(cols, b0 + gptq_block_size), bn = b1 - b0;
    Eigen::MatrixXd err(rows, bn);
    for (Eigen::Index i = b0; i < b1; ++i) {
      if (s.granularity == weight_granularity::group && i % gs == 0) {
        const Eigen::Index n = std::min(gs, cols - i);
        for (Eigen::Index r = 0; r < rows; ++r)
          grid[static_cast<std::size_t>(r)] = detail::find_row_grid(Wp.data() + i * rows + r, n, rows, s);
      }
      const double d = U(i, i);
      for (Eigen::Index r = 0; r < rows; ++r) {
        const double q = grid[static_cast<std::size_t>(r)].apply(static_cast<float>(Wp(r, i)));
        Q(r, i) = q;
        err(r, i - b0) = (Wp(r, i) - q) / d;
      }
      if (i + 1 < b1) Wp.middleCols(i + 1, b1 - i - 1).noalias() -= err.col(i - b0) * U.row(i).segment(i + 1, b1 - i - 1);
    }
    if (b1 < cols) Wp.rightCols(cols - b1).noalias() -= err * U.block(b0, b1, bn, cols - b1);
  }
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index r = 0; r < rows; ++r) w(r, perm[static_cast<std::size_t>(j)]) = static_cast<float>(Q(r, j));
  return true;
}

// One row of the GPTQ report: output error on the calibration inputs of GPTQ and of RTN on the same grid.
struct gptq_layer_report {
  int layer = 0;
  std::string weight;
  double gptq_error = 0.0;
  double rtn_error = 0.0;
  bool cholesky_ok = true;
};

// Sequential GPTQ over a whole model: for each layer, the calibration windows run through the model whose earlier
// layers are already quantized; the attention projections (wq wk wv wo) are quantized with their input Gram
// matrices, then the FFN inputs are captured again with the quantized attention and w1 w3 w2 are quantized.
// `windows`: token windows (each run at positions 0..n-1 with `scaling`).
inline std::vector<gptq_layer_report> gptq_quantize_model(llama_model& m, const std::vector<std::vector<int>>& windows,
                                                          const weight_quant_spec& s, const rope_scaling& scaling = {},
                                                          int threads = 0,
                                                          const std::function<void(int, int)>& progress = {}) {
  QROAR_ASSERT(s.method == weight_method::gptq, "not a GPTQ spec");
  if (windows.empty()) throw invalid_argument("GPTQ needs at least one calibration window");
  int longest = 0;
  for (const auto& w : windows) longest = std::max(longest, static_cast<int>(w.size()));
  const auto table = rope_table::for_positions(m.config.rope_geometry(), scaling, longest);
  std::vector<gptq_layer_report> report;
  auto gram_of = [](const tensor& x, Eigen::MatrixXd& g) {
    const Eigen::MatrixXd xd = x.cast<double>();
    g.noalias() += xd.transpose() * xd;
  };
  auto quantize = [&](int l, const char* name, tensor& w, const Eigen::MatrixXd& gram) {
    gptq_layer_report r;
    r.layer = l;
    r.weight = name;
    const tensor original = w;
    tensor rtn = w;
    rtn_quantize(rtn, s);
    r.cholesky_ok = gptq_quantize_matrix(w, gram, s);
    r.gptq_error = layer_output_error(original, w, gram);
    r.rtn_error = layer_output_error(original, rtn, gram);
    report.push_back(r);
  };
  const int dim = m.config.dim, hidden = m.config.hidden_dim, qd = m.config.q_dim();
  for (int l = 0; l < m.config.n_layers; ++l) {
    auto& L = m.layers[static_cast<std::size_t>(l)];
    Eigen::MatrixXd g_attn = Eigen::MatrixXd::Zero(dim, dim), g_out = Eigen::MatrixXd::Zero(qd, qd);
    forward_hooks hooks;
    hooks.last_layer = l;
    hooks.attention_input = [&](int layer, int, tensor& x) { if (layer == l) gram_of(x, g_attn); };
    hooks.attention_output = [&](int layer, int, tensor& x) { if (layer == l) gram_of(x, g_out); };
    for (const auto& w : windows) {
      kv_cache cache(m.config, static_cast<int>(w.size()));
      forward_hidden(m, w, cache, table, threads, &hooks);
    }
    quantize(l, "wq", L.wq, g_attn);
    quantize(l, "wk", L.wk, g_attn);
    quantize(l, "wv", L.wv, g_attn);
    quantize(l, "wo", L.wo, g_out);
    Eigen::MatrixXd g_ffn = Eigen::MatrixXd::Zero(dim, dim), g_hidden = Eigen::MatrixXd::Zero(hidden, hidden);
    forward_hooks ffn_hooks;
    ffn_hooks.last_layer = l;
    ffn_hooks.ffn_input = [&](int layer, int, tensor& x) { if (layer == l) gram_of(x, g_ffn); };
    for (const auto& w : windows) {
      kv_cache cache(m.config, static_cast<int>(w.size()));
      forward_hidden(m, w, cache, table, threads, &ffn_hooks);
    }
    quantize(l, "w1", L.w1, g_ffn);
    quantize(l, "w3", L.w3, g_ffn);
    forward_hooks down_hooks;
    down_hooks.last_layer = l;
    down_hooks.ffn_hidden = [&](int layer, int, tensor& x) { if (layer == l) gram_of(x, g_hidden); };
    for (const auto& w : windows) {
      kv_cache cache(m.config, static_cast<int>(w.size()));
      forward_hidden(m, w, cache, table, threads, &down_hooks);
    }
    quantize(l, "w2", L.w2, g_hidden);
    if (progress) progress(l + 1, m.config.n_layers);
  }
  return report;
}

}  // namespace v0
}  // namespace qroar
