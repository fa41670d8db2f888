// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace qroar {
inline namespace v0 {
namespace kernels {

// RMSNorm of one row (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * g.
// x, g, y: (n). y may alias x. The sum of squares is accumulated in float lanes, reduced in double.
// FLOPs: 4n; bytes: 12n.
struct rmsnorm {
  template <class Arch>
  void operator()(Arch, const float* x, const float* g, std::size_t n, float eps, float* y) const noexcept;
};

template <class Arch>
void rmsnorm::operator()(Arch, const float* x, const float* g, std::size_t n, float eps, float* y) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t lanes = batch::size;
  const std::size_t vec = n - n % lanes;
  batch acc0(0.0f), acc1(0.0f);
  std::size_t i = 0;
  for (; i + 2 * lanes <= vec; i += 2 * lanes) {
    const batch a = batch::load_unaligned(x + i), b = batch::load_unaligned(x + i + lanes);
    acc0 = xsimd::fma(a, a, acc0);
    acc1 = xsimd::fma(b, b, acc1);
  }
  for (; i < vec; i += lanes) {
    const batch a = batch::load_unaligned(x + i);
    acc0 = xsimd::fma(a, a, acc0);
  }
  alignas(64) float part[lanes];
  (acc0 + acc1).store_aligned(part);
  double ss = 0.0;
  for (std::size_t l = 0; l < lanes; ++l) ss += static_cast<double>(part[l]);
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  const batch vinv(inv);
  for (i = 0; i < vec; i += lanes)
    (batch::load_unaligned(x + i) * vinv * batch::load_unaligned(g + i)).store_unaligned(y + i);
  for (; i < n; ++i) y[i] = x[i] * inv * g[i];
}

// Scalar twin: the sum of squares in double (llama2.c rmsnorm, with a double accumulator).
inline void rmsnorm_ref(const float* x, const float* g, std::size_t n, float eps, float* y) noexcept {
  double ss = 0.0;
  for (std::size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] * inv * g[i];
}

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
