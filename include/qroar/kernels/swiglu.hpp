// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>

#include <xsimd/xsimd.hpp>

namespace qroar {
inline namespace v0 {
namespace kernels {

// SwiGLU gate (Shazeer 2020): h = silu(a) * b = a / (1 + exp(-a)) * b, elementwise.
// a, b, h: (n); h may alias a or b. FLOPs: ~4n plus n exps; bytes: 12n.
struct swiglu {
  template <class Arch>
  void operator()(Arch, const float* a, const float* b, std::size_t n, float* h) const noexcept;
};

template <class Arch>
void swiglu::operator()(Arch, const float* a, const float* b, std::size_t n, float* h) const noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t lanes = batch::size;
  const batch one(1.0f);
  std::size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const batch x = batch::load_unaligned(a + i);
    (x / (one + xsimd::exp(-x)) * batch::load_unaligned(b + i)).store_unaligned(h + i);
  }
  for (; i < n; ++i) h[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

// Scalar twin.
inline void swiglu_ref(const float* a, const float* b, std::size_t n, float* h) noexcept {
  for (std::size_t i = 0; i < n; ++i) h[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
