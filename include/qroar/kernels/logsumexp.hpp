// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include <xsimd/xsimd.hpp>

namespace qroar {
inline namespace v0 {
namespace kernels {

// log(sum_i exp(x_i)) of one row, x: (n), n >= 1: max, then the exps of x - max (<= 0, so float exp is exact to
// an ulp) summed in float lanes per chunk and in double across chunks. Returns double.
// FLOPs: ~3n plus n exps; bytes: 8n (two passes).
struct logsumexp {
  template <class Arch>
  double operator()(Arch, const float* x, std::size_t n) const noexcept;
};

template <class Arch>
double logsumexp::operator()(Arch, const float* x, std::size_t n) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t lanes = batch::size;
  constexpr std::size_t chunk = 1024;
  const std::size_t vec = n - n % lanes;
  alignas(64) float part[lanes];
  batch vmx(-std::numeric_limits<float>::infinity());
  for (std::size_t i = 0; i < vec; i += lanes) vmx = xsimd::max(vmx, batch::load_unaligned(x + i));
  vmx.store_aligned(part);
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t l = 0; l < lanes; ++l) mx = std::max(mx, part[l]);
  for (std::size_t i = vec; i < n; ++i) mx = std::max(mx, x[i]);
  const batch bmx(mx);
  double sum = 0.0;
  for (std::size_t c0 = 0; c0 < vec; c0 += chunk) {
    const std::size_t c1 = std::min(vec, c0 + chunk);
    batch acc(0.0f);
    for (std::size_t i = c0; i < c1; i += lanes) acc += xsimd::exp(batch::load_unaligned(x + i) - bmx);
    acc.store_aligned(part);
    for (std::size_t l = 0; l < lanes; ++l) sum += static_cast<double>(part[l]);
  }
  for (std::size_t i = vec; i < n; ++i) sum += static_cast<double>(std::exp(x[i] - mx));
  return std::log(sum) + static_cast<double>(mx);
}

// Scalar twin (the window_nll of the original forward pass): exps in double.
inline double logsumexp_ref(const float* x, std::size_t n) noexcept {
  float mx = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
  return std::log(sum) + static_cast<double>(mx);
}

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
