// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../detail/half.hpp"
#include "../detail/rounding.hpp"
#include "dequantize.hpp"

namespace qroar {
inline namespace v0 {
namespace kernels {

// Quantization kernels, each bit-exact with a scalar twin:
//  - rtn_fake_quantize / rtn_fake_quantize_columns: round-to-nearest groups (quant/rtn.hpp, quant/kv_cache.hpp),
//    twin rtn_group_ref below, for every input (NaN and infinities included);
//  - quantize_q8_0 ... quantize_q5_1: ggml's legacy block formats, twins quantize_row_<type>_ref in
//    quant/ggml_blocks.hpp. A block with a non-finite value, or whose scale has no finite inverse, is handed to
//    the reference (its codes depend on x86's NaN-to-integer conversion), so the result is the reference's for
//    every input. The K-quants stay with their references: make_qkx2_quants / make_qx_quants choose codes from
//    sequential float sums whose order defines the result (ggml has no SIMD version of them either).

// ---------------------------------------------------------------------------------------------------------
// RTN groups. One group of n values x, b bits, clip ratio c (quant/rtn.hpp):
//   symmetric:  s = amax * c / (2^(b-1) - 1),  q = clamp(nearbyint(x / s), -2^(b-1), 2^(b-1) - 1),  x' = q * s
//               (s = 0: x' = 0)
//   asymmetric: s = (max * c - min * c) / (2^b - 1),  z = nearbyint(-min * c / s),
//               q = clamp(nearbyint(x / s) + z, 0, 2^b - 1),  x' = (q - z) * s   (s = 0: x' = x)
// s is rounded to binary16 first when fp16_scale. nearbyint rounds half to even; amax, min and max skip NaN
// (std::max / std::min semantics); clamp is std::clamp. The squared error sum of (x' - x)^2 is accumulated in
// double in eight interleaved partial sums (element i into sum i mod 8), added as ((0+1)+(2+3))+((4+5)+(6+7)):
// a fixed order both implementations follow, so a clip search picks the same ratio with either. Every x'
// product is rounded before x' - x is formed (detail::rounded, separately_rounded): no FMA.

namespace detail {

struct squared_error_sum {
  double part[8] = {};
  void add(std::ptrdiff_t i, float diff) noexcept {
    part[i & 7] += static_cast<double>(diff) * static_cast<double>(diff);  // exact: a float square fits a double
  }
  double total() const noexcept {
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  }
};

inline float rtn_scale(float s, bool fp16) noexcept {
  return fp16 ? qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(s)) : s;
}

inline float rtn_symmetric_scale(float amax, int bits, bool fp16, float clip) noexcept {
  return rtn_scale(amax * clip / static_cast<float>((1 << (bits - 1)) - 1), fp16);
}

inline float rtn_asymmetric_scale(float mn, float mx, int bits, bool fp16, float clip) noexcept {
  using qroar::detail::rounded;
  return rtn_scale((rounded(mx * clip) - rounded(mn * clip)) / static_cast<float>((1 << bits) - 1), fp16);
}

// std::clamp(v, lo, hi) = v < lo ? lo : (hi < v ? hi : v), lane by lane (signed zeros and NaN included).
template <class Arch>
inline xsimd::batch<float, Arch> clamp_like_std(xsimd::batch<float, Arch> v, xsimd::batch<float, Arch> lo,
                                                xsimd::batch<float, Arch> hi) noexcept {
  return xsimd::select(v < lo, lo, xsimd::select(hi < v, hi, v));
}

// std::max(a, b) = a < b ? b : a and std::min(a, b) = b < a ? b : a, lane by lane (xsimd::max / min follow
// the instruction's NaN rule instead; GCC 12 also warns on the AVX-512 intrinsics' undefined pass-through).
template <class Arch>
inline xsimd::batch<float, Arch> max_like_std(xsimd::batch<float, Arch> a, xsimd::batch<float, Arch> b) noexcept {
  return xsimd::select(a < b, b, a);
}
template <class Arch>
inline xsimd::batch<float, Arch> min_like_std(xsimd::batch<float, Arch> a, xsimd::batch<float, Arch> b) noexcept {
  return xsimd::select(b < a, b, a);
}

}  // namespace detail

// The scalar twin: one group of n values at stride `stride`; writes x' to out (which may be x) when out is
// non-null; returns the squared error sum.
inline double rtn_group_ref(const float* x, float* out, int n, std::ptrdiff_t stride, int bits, bool symmetric,
                            bool fp16_scale, float clip = 1.0f) noexcept {
  using qroar::detail::rounded;
  detail::squared_error_sum err;
  if (symmetric) {
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
    float amax = 0.0f;
    for (int i = 0; i < n; ++i) amax = std::max(amax, std::abs(x[i * stride]));
    const float s = detail::rtn_symmetric_scale(amax, bits, fp16_scale, clip);
    for (int i = 0; i < n; ++i) {
      const float v = x[i * stride];
      const float q = s > 0.0f ? std::clamp(std::nearbyint(v / s), qmin, qmax) : 0.0f;
      const float d = rounded(q * s);
      err.add(i, d - v);
      if (out) out[i * stride] = d;
    }
  } else {
    const float levels = static_cast<float>((1 << bits) - 1);
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    for (int i = 0; i < n; ++i) {
      mn = std::min(mn, x[i * stride]);
      mx = std::max(mx, x[i * stride]);
    }
    const float s = detail::rtn_asymmetric_scale(mn, mx, bits, fp16_scale, clip);
    const float z = s > 0.0f ? std::nearbyint(-(mn * clip) / s) : 0.0f;
    for (int i = 0; i < n; ++i) {
      const float v = x[i * stride];
      const float d = s > 0.0f ? rounded((std::clamp(std::nearbyint(v / s) + z, 0.0f, levels) - z) * s) : v;
      err.add(i, d - v);
      if (out) out[i * stride] = d;
    }
  }
  return err.total();
}

// One contiguous group x[0..n): full batches in SIMD, the tail with the twin's per-element code. With
// `with_error` false the squared error is not accumulated and 0 is returned (writing callers that do not use it).
struct rtn_fake_quantize {
  bool with_error = true;

  template <class Arch>
  double operator()(Arch, const float* x, float* out, int n, int bits, bool symmetric, bool fp16_scale,
                    float clip = 1.0f) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    constexpr int N = static_cast<int>(fb::size);
#if XSIMD_WITH_AVX2
    // groups shorter than a 16-lane AVX-512 batch (per-token KV groups of 8) take the 8-lane AVX2 path
    if constexpr (N == 16 && std::is_base_of_v<xsimd::avx512f, Arch>)
      if (n < N) return (*this)(xsimd::avx2{}, x, out, n, bits, symmetric, fp16_scale, clip);  // keeps with_error
#endif
    alignas(64) float lane[N];
    detail::squared_error_sum err;
    auto add_errors = [&](int i0, fb diff) {
      if (!with_error) return;
      diff.store_aligned(lane);
      for (int k = 0; k < N; ++k) err.add(i0 + k, lane[k]);
    };
    // Lane-wise reductions with std::max / std::min semantics (NaN never enters), then across lanes: the
    // maximum (minimum) of the non-NaN values does not depend on the order; where signed zeros tie, the
    // result cannot change x' (see the notes in tests/kernels/test_quantize.cpp).
    if (symmetric) {
      const float qmax = static_cast<float>((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
      fb vamax(0.0f);
      int i = 0;
      for (; i + N <= n; i += N) {
        const fb a = xsimd::abs(fb::load_unaligned(x + i));
        vamax = detail::max_like_std(vamax, a);
      }
      vamax.store_aligned(lane);
      float amax = 0.0f;
      for (int k = 0; k < N; ++k) amax = std::max(amax, lane[k]);
      for (; i < n; ++i) amax = std::max(amax, std::abs(x[i]));
      const float s = detail::rtn_symmetric_scale(amax, bits, fp16_scale, clip);
      const fb vs(s), lo(qmin), hi(qmax);
      i = 0;
      for (; i + N <= n; i += N) {
        const fb v = fb::load_unaligned(x + i);
        const fb q = s > 0.0f ? detail::clamp_like_std(xsimd::nearbyint(v / vs), lo, hi) : fb(0.0f);
        const fb d = detail::separately_rounded(q * vs);
        add_errors(i, d - v);
        if (out) d.store_unaligned(out + i);
      }
      for (; i < n; ++i) {
        const float v = x[i];
        const float q = s > 0.0f ? std::clamp(std::nearbyint(v / s), qmin, qmax) : 0.0f;
        const float d = qroar::detail::rounded(q * s);
        if (with_error) err.add(i, d - v);
        if (out) out[i] = d;
      }
    } else {
      const float levels = static_cast<float>((1 << bits) - 1);
      const float inf = std::numeric_limits<float>::infinity();
      fb vmn(inf), vmx(-inf);
      int i = 0;
      for (; i + N <= n; i += N) {
        const fb v = fb::load_unaligned(x + i);
        vmn = detail::min_like_std(vmn, v);
        vmx = detail::max_like_std(vmx, v);
      }
      float mn = inf, mx = -inf;
      vmn.store_aligned(lane);
      for (int k = 0; k < N; ++k) mn = std::min(mn, lane[k]);
      vmx.store_aligned(lane);
      for (int k = 0; k < N; ++k) mx = std::max(mx, lane[k]);
      for (; i < n; ++i) {
        mn = std::min(mn, x[i]);
        mx = std::max(mx, x[i]);
      }
      const float s = detail::rtn_asymmetric_scale(mn, mx, bits, fp16_scale, clip);
      const float z = s > 0.0f ? std::nearbyint(-(mn * clip) / s) : 0.0f;
      const fb vs(s), vz(z), lo(0.0f), hi(levels);
      i = 0;
      for (; i + N <= n; i += N) {
        const fb v = fb::load_unaligned(x + i);
        const fb d = s > 0.0f ? detail::separately_rounded((detail::clamp_like_std(xsimd::nearbyint(v / vs) + vz, lo, hi) - vz) * vs) : v;
        add_errors(i, d - v);
        if (out) d.store_unaligned(out + i);
      }
      for (; i < n; ++i) {
        const float v = x[i];
        const float d = s > 0.0f ? qroar::detail::rounded((std::clamp(std::nearbyint(v / s) + z, 0.0f, levels) - z) * s) : v;
        if (with_error) err.add(i, d - v);
        if (out) out[i] = d;
      }
    }
    return err.total();
  }
};

// Columns as groups, in place: column c < cols of the rows x cols block at x (row stride ld) is one group
// (quant/kv_cache.hpp's per-channel KV groups), no clip, fp32 scales. SIMD lanes are columns, so every lane
// reduces and rounds its own column in the twin's order; the last cols % lanes columns use the twin.
struct rtn_fake_quantize_columns {
  template <class Arch>
  void operator()(Arch, float* x, int rows, int cols, std::ptrdiff_t ld, int bits, bool symmetric) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    constexpr int N = static_cast<int>(fb::size);
    const float inf = std::numeric_limits<float>::infinity();
    const fb zero(0.0f);
    int c = 0;
    for (; c + N <= cols; c += N) {
      float* col = x + c;
      if (symmetric) {
        const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
        const fb lo(-qmax - 1.0f), hi(qmax);
        fb amax(0.0f);
        for (int t = 0; t < rows; ++t) {
          const fb a = xsimd::abs(fb::load_unaligned(col + t * ld));
          amax = detail::max_like_std(amax, a);
        }
        const fb s = amax * fb(1.0f) / hi;  // the twin's amax * clip / qmax with clip = 1
        const auto positive = s > zero;
        for (int t = 0; t < rows; ++t) {
          const fb v = fb::load_unaligned(col + t * ld);
          const fb q = xsimd::select(positive, detail::clamp_like_std(xsimd::nearbyint(v / s), lo, hi), zero);
          (q * s).store_unaligned(col + t * ld);
        }
      } else {
        const fb levels(static_cast<float>((1 << bits) - 1));
        fb mn(inf), mx(-inf);
        for (int t = 0; t < rows; ++t) {
          const fb v = fb::load_unaligned(col + t * ld);
          mn = detail::min_like_std(mn, v);
          mx = detail::max_like_std(mx, v);
        }
        const fb s = (mx * fb(1.0f) - mn * fb(1.0f)) / levels;
        const auto positive = s > zero;
        const fb z = xsimd::select(positive, xsimd::nearbyint(-(mn * fb(1.0f)) / s), zero);
        for (int t = 0; t < rows; ++t) {
          const fb v = fb::load_unaligned(col + t * ld);
          const fb d = (detail::clamp_like_std(xsimd::nearbyint(v / s) + z, zero, levels) - z) * s;
          xsimd::select(positive, d, v).store_unaligned(col + t * ld);
        }
      }
    }
    for (; c < cols; ++c) rtn_group_ref(x + c, x + c, rows, ld, bits, symmetric, false);
  }
};

// ---------------------------------------------------------------------------------------------------------
// ggml legacy blocks of 32 (formulas at their twins in quant/ggml_blocks.hpp). The float part (scaling,
// rounding or truncation, clamping) runs in SIMD lanes; the nibble and high-bit packing is scalar. Where the
// twin writes min(15, (int8)t) with t = x * id + 8.5 in [0, 17) (|x * id| <= 8 (1 + 3 eps) for finite input
// and a finite id), the kernel truncates min(t, 15) instead: truncation is monotone, so both give the same code.
// Each functor takes `ref_block(x, dst)`, the twin for one block, used for the blocks described at the top.

namespace detail {

template <class Arch>
inline bool all_finite(const float* x) noexcept {  // the 32 values of one block
  using fb = xsimd::batch<float, Arch>;
  fb acc(0.0f);
  for (int j = 0; j < 32; j += static_cast<int>(fb::size)) {
    const fb v = fb::load_unaligned(x + j);
    acc += v - v;  // 0 for finite v, NaN for NaN and infinities
  }
  return xsimd::all(acc == fb(0.0f));
}

template <class Arch>
inline float block_amax(const float* x) noexcept {  // finite values: max is then order-independent
  using fb = xsimd::batch<float, Arch>;
  fb m(0.0f);
  for (int j = 0; j < 32; j += static_cast<int>(fb::size)) m = max_like_std(m, xsimd::abs(fb::load_unaligned(x + j)));
  alignas(64) float lane[fb::size];
  m.store_aligned(lane);
  float amax = 0.0f;
  for (float v : lane) amax = std::max(amax, v);
  return amax;
}

inline void store_half(std::uint8_t* p, float v) noexcept {
  const std::uint16_t h = qroar::detail::fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

inline void store_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<std::uint8_t>(v >> (8 * k));
}

// Nibbles (Bits = 4) or nibbles plus high bits (Bits = 5) of 32 codes: qs[j] = low(code[j]) | low(code[j+16]) << 4,
// bit j of qh = bit 4 of code[j].
template <int Bits>
inline void pack_codes(const std::int32_t* code, std::uint8_t* qs, std::uint8_t* qh) noexcept {
  std::uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<std::uint8_t>((code[j] & 0x0F) | ((code[j + 16] & 0x0F) << 4));
    if constexpr (Bits == 5) {
      h |= static_cast<std::uint32_t>((code[j] >> 4) & 1) << j;
      h |= static_cast<std::uint32_t>((code[j + 16] >> 4) & 1) << (j + 16);
    }
  }
  if constexpr (Bits == 5) store_u32(qh, h);
}

}  // namespace detail

// Q8_0: d = amax / 127, q = round(x / d) (round half away from zero).
struct quantize_q8_0 {
  template <class Arch, class RefBlock>
  void operator()(Arch, const float* x, std::uint8_t* dst, std::int64_t blocks, RefBlock&& ref_block) const {
    using fb = xsimd::batch<float, Arch>;
    constexpr int N = static_cast<int>(fb::size);
    static_assert(32 % N == 0, "lanes must divide the block");
    for (std::int64_t b = 0; b < blocks; ++b, x += 32, dst += q8_0_bytes) {
      if (!detail::all_finite<Arch>(x)) {
        ref_block(x, dst);
        continue;
      }
      const float d = detail::block_amax<Arch>(x) / ((1 << 7) - 1);
      const float id = d != 0.f ? 1.0f / d : 0.0f;
      if (!std::isfinite(id)) {
        ref_block(x, dst);
        continue;
      }
      detail::store_half(dst, d);
      auto* qs = reinterpret_cast<std::int8_t*>(dst + 2);
      for (int j = 0; j < 32; j += N) xsimd::to_int(xsimd::round(fb::load_unaligned(x + j) * fb(id))).store_unaligned(qs + j);
    }
  }
};

// Q4_0 (Bits 4) / Q5_0 (Bits 5): d = max / -2^(Bits-1) with max the signed value of the first largest |x|,
// q = min(2^Bits - 1, (int8)(x / d + 2^(Bits-1) + 0.5)).
template <int Bits>
struct quantize_q_zero_offset {
  template <class Arch, class RefBlock>
  void operator()(Arch, const float* x, std::uint8_t* dst, std::int64_t blocks, RefBlock&& ref_block) const {
    using fb = xsimd::batch<float, Arch>;
    constexpr int N = static_cast<int>(fb::size);
    static_assert(32 % N == 0, "lanes must divide the block");
    constexpr std::size_t bytes = Bits == 4 ? q4_0_bytes : q5_0_bytes;
    constexpr float offset = (1 << (Bits - 1)) + 0.5f, top = (1 << Bits) - 1;
    alignas(64) std::int32_t code[32];
    for (std::int64_t b = 0; b < blocks; ++b, x += 32, dst += bytes) {
      if (!detail::all_finite<Arch>(x)) {
        ref_block(x, dst);
        continue;
      }
      const float amax = detail::block_amax<Arch>(x);
      float max = 0.0f;
      if (amax > 0.0f)
        for (int j = 0; j < 32; ++j)
          if (std::fabs(x[j]) == amax) {
            max = x[j];
            break;
          }
      const float d = max / -(1 << (Bits - 1));
      const float id = d != 0.f ? 1.0f / d : 0.0f;
      if (!std::isfinite(id)) {
        ref_block(x, dst);
        continue;
      }
      detail::store_half(dst, d);
      for (int j = 0; j < 32; j += N) {
        const fb t = detail::separately_rounded(fb::load_unaligned(x + j) * fb(id)) + fb(offset);
        xsimd::to_int(detail::min_like_std(t, fb(top))).store_aligned(code + j);
      }
      detail::pack_codes<Bits>(code, dst + (Bits == 4 ? 2 : 6), dst + 2);
    }
  }
};
using quantize_q4_0 = quantize_q_zero_offset<4>;
using quantize_q5_0 = quantize_q_zero_offset<5>;

// Q4_1 (Bits 4) / Q5_1 (Bits 5): d = (max - min) / (2^Bits - 1), m = min, q = (x - min) / d + 0.5 truncated
// (Q4_1: at most 15; Q5_1: no clamp).
template <int Bits>
struct quantize_q_min {
  template <class Arch, class RefBlock>
  void operator()(Arch, const float* x, std::uint8_t* dst, std::int64_t blocks, RefBlock&& ref_block) const {
    using fb = xsimd::batch<float, Arch>;
    constexpr int N = static_cast<int>(fb::size);
    static_assert(32 % N == 0, "lanes must divide the block");
    constexpr std::size_t bytes = Bits == 4 ? q4_1_bytes : q5_1_bytes;
    alignas(64) std::int32_t code[32];
    alignas(64) float lane[N];
    for (std::int64_t b = 0; b < blocks; ++b, x += 32, dst += bytes) {
      if (!detail::all_finite<Arch>(x)) {
        ref_block(x, dst);
        continue;
      }
      fb vmn = fb::load_unaligned(x), vmx = vmn;
      for (int j = N; j < 32; j += N) {
        const fb v = fb::load_unaligned(x + j);
        vmn = detail::min_like_std(vmn, v);
        vmx = detail::max_like_std(vmx, v);
      }
      float min = std::numeric_limits<float>::max(), max = -std::numeric_limits<float>::max();
      vmn.store_aligned(lane);
      for (float v : lane) min = std::min(min, v);
      vmx.store_aligned(lane);
      for (float v : lane) max = std::max(max, v);
      if (min == 0.0f || max == 0.0f) {  // which signed zero the twin keeps depends on the order: its loop
        min = std::numeric_limits<float>::max();
        max = -std::numeric_limits<float>::max();
        for (int j = 0; j < 32; ++j) {
          if (x[j] < min) min = x[j];
          if (x[j] > max) max = x[j];
        }
      }
      const float d = (max - min) / ((1 << Bits) - 1);
      const float id = d != 0.f ? 1.0f / d : 0.0f;
      if (!std::isfinite(d) || !std::isfinite(id)) {
        ref_block(x, dst);
        continue;
      }
      detail::store_half(dst, d);
      detail::store_half(dst + 2, min);
      const fb vmin(min), vid(id), half(0.5f), top(15.0f);
      for (int j = 0; j < 32; j += N) {
        fb t = detail::separately_rounded((fb::load_unaligned(x + j) - vmin) * vid) + half;
        if constexpr (Bits == 4) t = detail::min_like_std(t, top);
        xsimd::to_int(t).store_aligned(code + j);
      }
      detail::pack_codes<Bits>(code, dst + (Bits == 4 ? 4 : 8), dst + 4);
    }
  }
};
using quantize_q4_1 = quantize_q_min<4>;
using quantize_q5_1 = quantize_q_min<5>;

// F16: binary32 to binary16, round to nearest even, with the F16C instruction where the build has it (the same
// bits as the scalar qroar::detail::fp32_to_fp16 for every input: overflow to infinity, subnormals, NaN kept
// quiet with its payload's top bits), else the scalar conversion.
struct quantize_f16 {
  template <class Arch>
  void operator()(Arch, const float* src, std::uint8_t* dst, std::int64_t n) const noexcept {
    std::int64_t body = 0;
#if defined(__F16C__) && defined(__AVX__)
    body = n - n % 8;
    for (std::int64_t i = 0; i < body; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
    for (std::int64_t i = body; i < n; ++i) detail::store_half(dst + 2 * i, src[i]);
  }
};

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
