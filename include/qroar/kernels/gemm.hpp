// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../tensor.hpp"

namespace qroar {
inline namespace v0 {
namespace kernels {

// out = x w^T for a linear layer: x (rows, in) with row stride ldx, w (features, in) with stride ldw (the
// (out_features, in_features) layout of every weight), out (rows, features) with stride ldo.
//
// w is first packed into panels of P = gemm_panel_width<Arch>() features, each panel (in, P) contiguous, the
// features zero-padded to a multiple of P: panel p holds packed[p*in*P + c*P + f] = w(p*P + f, c). Packing costs
// features * in moves per call, against rows * features * in FMAs, so it is paid once per layer and call rather
// than per block of rows. The register tile is R = 8 rows (6 with 16 vector registers; one broadcast of x(i, c) each) x 2 vectors of
// features.
// Every output element is the same sequence of FMAs over c = 0 .. in-1 whatever rows or features a call covers,
// so splitting the work between threads never changes a result.

template <class Arch>
constexpr Eigen::Index gemm_panel_width() noexcept {
  return 2 * static_cast<Eigen::Index>(xsimd::batch<float, Arch>::size);
}

// Floats of the packed w for a given panel width.
inline constexpr std::size_t packed_weights_size(Eigen::Index features, Eigen::Index in, Eigen::Index panel) noexcept {
  return static_cast<std::size_t>((features + panel - 1) / panel * panel * in);
}

// Packs feature panels [p_begin, p_end) of w (see above). packed: packed_weights_size(...) floats, 64-byte aligned.
struct pack_weights {
  template <class Arch>
  void operator()(Arch, const float* w, Eigen::Index ldw, Eigen::Index features, Eigen::Index in, Eigen::Index p_begin,
                  Eigen::Index p_end, float* packed) const noexcept;
};

template <class Arch>
void pack_weights::operator()(Arch, const float* w, Eigen::Index ldw, Eigen::Index features, Eigen::Index in,
                              Eigen::Index p_begin, Eigen::Index p_end, float* packed) const noexcept {
  constexpr Eigen::Index P = gemm_panel_width<Arch>();
  for (Eigen::Index p = p_begin; p < p_end; ++p) {
    float* dst = packed + p * in * P;
    const Eigen::Index f0 = p * P, nf = std::min(P, features - f0);
    for (Eigen::Index f = 0; f < nf; ++f) {
      const float* src = w + (f0 + f) * ldw;
      for (Eigen::Index c = 0; c < in; ++c) dst[c * P + f] = src[c];
    }
    for (Eigen::Index f = nf; f < P; ++f)
      for (Eigen::Index c = 0; c < in; ++c) dst[c * P + f] = 0.0f;
  }
}

namespace detail {

template <int R, class Arch>
inline void gemm_tile(const float* x, Eigen::Index ldx, const float* panel, Eigen::Index in, float* out,
                      Eigen::Index ldo, Eigen::Index nf) noexcept {
  using batch = xsimd::batch<float, Arch>;
  constexpr Eigen::Index lanes = static_cast<Eigen::Index>(batch::size);
  batch acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = batch(0.0f);
  for (Eigen::Index c = 0; c < in; ++c) {
    const batch b0 = batch::load_aligned(panel + c * 2 * lanes), b1 = batch::load_aligned(panel + c * 2 * lanes + lanes);
    for (int r = 0; r < R; ++r) {
      const batch a(x[r * ldx + c]);
      acc0[r] = xsimd::fma(a, b0, acc0[r]);
      acc1[r] = xsimd::fma(a, b1, acc1[r]);
    }
  }
  if (nf == 2 * lanes) {
    for (int r = 0; r < R; ++r) {
      acc0[r].store_unaligned(out + r * ldo);
      acc1[r].store_unaligned(out + r * ldo + lanes);
    }
  } else {  // last, partial panel
    alignas(64) float tmp[2 * lanes];
    for (int r = 0; r < R; ++r) {
      acc0[r].store_aligned(tmp);
      acc1[r].store_aligned(tmp + lanes);
      std::copy(tmp, tmp + nf, out + r * ldo);
    }
  }
}

}  // namespace detail

// out rows [0, rows) x features [p_begin * P, min(p_end * P, features)) of x w^T from packed w.
// FLOPs: 2 * rows * features * in.
struct gemm_nt {
  template <class Arch>
  void operator()(Arch, const float* x, Eigen::Index ldx, Eigen::Index rows, const float* packed, Eigen::Index features,
                  Eigen::Index in, Eigen::Index p_begin, Eigen::Index p_end, float* out,
                  Eigen::Index ldo) const noexcept;
};

template <class Arch>
void gemm_nt::operator()(Arch, const float* x, Eigen::Index ldx, Eigen::Index rows, const float* packed,
                         Eigen::Index features, Eigen::Index in, Eigen::Index p_begin, Eigen::Index p_end, float* out,
                         Eigen::Index ldo) const noexcept {
  constexpr Eigen::Index P = gemm_panel_width<Arch>();
  // 2R accumulators + 3 operands fit 32 vector registers (AVX-512) with R = 8, 16 registers with R = 6
  constexpr int R = xsimd::batch<float, Arch>::size >= 16 ? 8 : 6;
  for (Eigen::Index p = p_begin; p < p_end; ++p) {
    const float* panel = packed + p * in * P;
    const Eigen::Index f0 = p * P, nf = std::min(P, features - f0);
    Eigen::Index i = 0;
    for (; i + R <= rows; i += R) detail::gemm_tile<R, Arch>(x + i * ldx, ldx, panel, in, out + i * ldo + f0, ldo, nf);
    if (i + 4 <= rows) detail::gemm_tile<4, Arch>(x + i * ldx, ldx, panel, in, out + i * ldo + f0, ldo, nf), i += 4;
    if (i + 2 <= rows) detail::gemm_tile<2, Arch>(x + i * ldx, ldx, panel, in, out + i * ldo + f0, ldo, nf), i += 2;
    if (i < rows) detail::gemm_tile<1, Arch>(x + i * ldx, ldx, panel, in, out + i * ldo + f0, ldo, nf);
  }
}

// Scalar twin: out(i, f) = sum_c x(i, c) w(f, c), straight from the unpacked w.
inline void gemm_nt_ref(const float* x, Eigen::Index ldx, Eigen::Index rows, const float* w, Eigen::Index ldw,
                        Eigen::Index features, Eigen::Index in, float* out, Eigen::Index ldo) noexcept {
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index f = 0; f < features; ++f) {
      float s = 0.0f;
      for (Eigen::Index c = 0; c < in; ++c) s += x[i * ldx + c] * w[f * ldw + c];
      out[i * ldo + f] = s;
    }
}

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
