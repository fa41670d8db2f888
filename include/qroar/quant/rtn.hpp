// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "../kernels/quantize.hpp"
#include "../tensor.hpp"
#include "spec.hpp"

namespace qroar {
inline namespace v0 {

// Round-to-nearest fake quantization (quantize, then dequantize in place) of n values at stride `stride`.
// Symmetric: levels -2^(b-1) .. 2^(b-1)-1, scale = amax / (2^(b-1)-1), q = clamp(round(x/scale)).
// Asymmetric: levels 0 .. 2^b-1, scale = (max-min)/(2^b-1), zero = round(-min/scale),
//             q = clamp(round(x/scale) + zero), x' = (q - zero) * scale  (GPTQ quant.py convention, with the
//             actual min/max so that Q(g*x) = g*Q(x) for g > 0).
// round() is round-half-to-even (numpy's np.round, torch.round). `clip` scales the range by a ratio
// (clip search); `fp16_scale` stores the scale as binary16 first. An all-zero group stays zero.
struct rtn_group_params {
  int bits = 4;
  bool symmetric = true;
  bool fp16_scale = false;
};

namespace detail {

// Returns the squared error of the group; writes the dequantized values when `out` is non-null. Contiguous groups
// run the xsimd kernel, strided ones its scalar twin (kernels/quantize.hpp; the two agree bit for bit).
inline double rtn_group(const float* x, float* out, int n, std::ptrdiff_t stride, const rtn_group_params& p,
                        float clip = 1.0f) noexcept {
  if (stride == 1)
    return kernels::rtn_fake_quantize{}(xsimd::default_arch{}, x, out, n, p.bits, p.symmetric, p.fp16_scale, clip);
  return kernels::rtn_group_ref(x, out, n, stride, p.bits, p.symmetric, p.fp16_scale, clip);
}

// Writes the dequantized values of the group in place (no error sum).
inline void rtn_apply(float* x, int n, std::ptrdiff_t stride, const rtn_group_params& p, float clip = 1.0f) noexcept {
  if (stride == 1)
    (void)kernels::rtn_fake_quantize{false}(xsimd::default_arch{}, x, x, n, p.bits, p.symmetric, p.fp16_scale, clip);
  else
    (void)kernels::rtn_group_ref(x, x, n, stride, p.bits, p.symmetric, p.fp16_scale, clip);
}

}  // namespace detail

// Clip ratios tried by the clip search: 1.0, 0.975, ..., 0.5 (21 points), keeping the lowest group MSE.
inline constexpr int rtn_clip_grid_points = 21;
inline constexpr float rtn_clip_min_ratio = 0.5f;

// Fake-quantizes one group in place; with `clip_search` picks the clip ratio of least squared error first.
inline void rtn_quantize_group(float* x, int n, std::ptrdiff_t stride, const rtn_group_params& p, bool clip_search) {
  float best_clip = 1.0f;
  if (clip_search) {
    double best = std::numeric_limits<double>::infinity();
    for (int k = 0; k < rtn_clip_grid_points; ++k) {
      const float c = 1.0f - (1.0f - rtn_clip_min_ratio) * static_cast<float>(k) / (rtn_clip_grid_points - 1);
      const double e = detail::rtn_group(x, nullptr, n, stride, p, c);
      if (e < best) {
        best = e;
        best_clip = c;
      }
    }
  }
  detail::rtn_apply(x, n, stride, p, best_clip);
}

// RTN fake quantization of a weight matrix w: (out_features, in_features), in place, following the spec's
// granularity: one scale per tensor, per output row (channel), or per group of `group_size` consecutive input
// columns of a row (the last group of a row is shorter when in_features is not a multiple).
inline void rtn_quantize(tensor& w, const weight_quant_spec& s) {
  QROAR_ASSERT(s.method == weight_method::rtn || s.method == weight_method::gptq, "not an RTN-style spec");
  const rtn_group_params p{s.bits, s.symmetric, s.fp16_scales};
  switch (s.granularity) {
    case weight_granularity::per_tensor:
      rtn_quantize_group(w.data(), static_cast<int>(w.size()), 1, p, s.clip_search);
      break;
    case weight_granularity::channel:
      for (Eigen::Index r = 0; r < w.rows(); ++r)
        rtn_quantize_group(w.data() + r * w.cols(), static_cast<int>(w.cols()), 1, p, s.clip_search);
      break;
    case weight_granularity::group:
      for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index c0 = 0; c0 < w.cols(); c0 += s.group_size) {
          const auto n = static_cast<int>(std::min<Eigen::Index>(s.group_size, w.cols() - c0));
          rtn_quantize_group(w.data() + r * w.cols() + c0, n, 1, p, s.clip_search);
        }
      break;
  }
}

}  // namespace v0
}  // namespace qroar
