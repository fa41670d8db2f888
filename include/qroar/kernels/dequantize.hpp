// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>

#include "../detail/half.hpp"

namespace qroar {
inline namespace v0 {
namespace kernels {

// Dequantization of ggml blocks (layouts: ggml-common.h, mirrored with static_asserts in quant/ggml_blocks.hpp),
// bit-exact with the scalar routines there (ggml-quants.c dequantize_row_<type>, their `_ref` twins here).
// The integer codes are unpacked in int32 lanes (batch<int32_t>::load_unaligned of bytes zero- or sign-extends
// them), converted to float exactly, and scaled by the same float operations in the same order as the scalar
// code; a product followed by a sum is kept as two roundings (detail::separately_rounded), never fused into an
// FMA, as in the reference. Each functor reads `blocks` whole blocks at `src` and writes blocks x block size
// floats at `dst`. Bytes read per value: 34/32 (q8_0) ... 210/256 (q6_K); one float written.

inline constexpr std::size_t q8_0_bytes = 34, q4_0_bytes = 18, q4_1_bytes = 20, q5_0_bytes = 22, q5_1_bytes = 24;
inline constexpr std::size_t q4_K_bytes = 144, q5_K_bytes = 176, q6_K_bytes = 210;

namespace detail {

// b itself, through a register the optimiser cannot see into: a following addition cannot contract with the
// product that made b (the scalar reference rounds the product first; see quant/ggml_blocks.hpp).
template <class Arch>
inline xsimd::batch<float, Arch> separately_rounded(xsimd::batch<float, Arch> b) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(b.data));
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
  __asm__("" : "+w"(b.data));
#else
  alignas(64) volatile float v[xsimd::batch<float, Arch>::size];
  b.store_aligned(const_cast<float*>(v));
  b = xsimd::batch<float, Arch>::load_aligned(const_cast<const float*>(v));
#endif
  return b;
}

inline float half_at(const std::uint8_t* p) noexcept {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return qroar::detail::fp16_to_fp32(h);
}

inline std::uint32_t u32_at(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

// 16 in the lanes where x != 0, else 0, without comparisons (xsimd 8.1's integer select does not compile for
// AVX-512 in C++20 mode): x | -x has its sign bit set exactly when x != 0; the arithmetic shift spreads it.
template <class Arch>
inline xsimd::batch<std::int32_t, Arch> sixteen_if_set(xsimd::batch<std::int32_t, Arch> x) noexcept {
  using ib = xsimd::batch<std::int32_t, Arch>;
  return ((x | (ib(0) - x)) >> 31) & ib(16);
}

// Lane masks 1 << j for j = 0 .. 31 (bit j of a Q5 block's qh holds bit 4 of element j).
alignas(64) inline constexpr std::int32_t bit_of_element[32] = {
    1,       2,       4,       8,       16,      32,       64,       128,      256,       512,       1024,
    2048,    4096,    8192,    16384,   32768,   65536,    131072,   262144,   524288,    1048576,   2097152,
    4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824,
    static_cast<std::int32_t>(0x80000000u)};

}  // namespace detail

// Q8_0: y = float(q) * d.
struct dequantize_q8_0 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(32 % N == 0, "lanes must divide the block");
    for (std::int64_t i = 0; i < blocks; ++i, src += q8_0_bytes, dst += 32) {
      const fb d(detail::half_at(src));
      const auto* qs = reinterpret_cast<const std::int8_t*>(src + 2);
      for (int j = 0; j < 32; j += N) (xsimd::to_float(ib::load_unaligned(qs + j)) * d).store_unaligned(dst + j);
    }
  }
};

// Q4_0: y = float(q - 8) * d; byte j holds element j (low nibble) and j + 16 (high nibble).
struct dequantize_q4_0 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(16 % N == 0, "lanes must divide the half block");
    const ib low(0x0F), eight(8);
    for (std::int64_t i = 0; i < blocks; ++i, src += q4_0_bytes, dst += 32) {
      const fb d(detail::half_at(src));
      for (int j = 0; j < 16; j += N) {
        const ib q = ib::load_unaligned(src + 2 + j);
        (xsimd::to_float((q & low) - eight) * d).store_unaligned(dst + j);
        (xsimd::to_float((q >> 4) - eight) * d).store_unaligned(dst + 16 + j);
      }
    }
  }
};

// Q4_1: y = (float(q) * d) + m.
struct dequantize_q4_1 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(16 % N == 0, "lanes must divide the half block");
    const ib low(0x0F);
    for (std::int64_t i = 0; i < blocks; ++i, src += q4_1_bytes, dst += 32) {
      const fb d(detail::half_at(src)), m(detail::half_at(src + 2));
      for (int j = 0; j < 16; j += N) {
        const ib q = ib::load_unaligned(src + 4 + j);
        (detail::separately_rounded(xsimd::to_float(q & low) * d) + m).store_unaligned(dst + j);
        (detail::separately_rounded(xsimd::to_float(q >> 4) * d) + m).store_unaligned(dst + 16 + j);
      }
    }
  }
};

// Q5_0 / Q5_1: the 4 low bits as Q4, bit 4 of element j = bit j of the little-endian uint32 qh.
// Q5_0: y = float(q - 16) * d; Q5_1: y = (float(q) * d) + m.
template <bool WithMin>
struct dequantize_q5 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(16 % N == 0, "lanes must divide the half block");
    constexpr std::size_t bytes = WithMin ? q5_1_bytes : q5_0_bytes, qh_at = WithMin ? 4 : 2;
    const ib low(0x0F), sixteen(16);
    for (std::int64_t i = 0; i < blocks; ++i, src += bytes, dst += 32) {
      const fb d(detail::half_at(src));
      const fb m(WithMin ? detail::half_at(src + 2) : 0.0f);
      const ib qh(static_cast<std::int32_t>(detail::u32_at(src + qh_at)));
      const std::uint8_t* qs = src + qh_at + 4;
      for (int j = 0; j < 16; j += N) {
        const ib q = ib::load_unaligned(qs + j);
        const ib h0 = detail::sixteen_if_set(qh & ib::load_aligned(detail::bit_of_element + j));
        const ib h1 = detail::sixteen_if_set(qh & ib::load_aligned(detail::bit_of_element + 16 + j));
        if constexpr (WithMin) {
          (detail::separately_rounded(xsimd::to_float((q & low) | h0) * d) + m).store_unaligned(dst + j);
          (detail::separately_rounded(xsimd::to_float((q >> 4) | h1) * d) + m).store_unaligned(dst + 16 + j);
        } else {
          (xsimd::to_float(((q & low) | h0) - sixteen) * d).store_unaligned(dst + j);
          (xsimd::to_float(((q >> 4) | h1) - sixteen) * d).store_unaligned(dst + 16 + j);
        }
      }
    }
  }
};
using dequantize_q5_0 = dequantize_q5<false>;
using dequantize_q5_1 = dequantize_q5<true>;

// Q4_K / Q5_K: super-blocks of 256 = 8 sub-blocks of 32 with 6-bit scales and mins (ggml get_scale_min_k4);
// y = (d * sc) * float(q) - dmin * m, the product rounded before the subtraction (Q5_K: bit 4 from qh).
template <bool Five>
struct dequantize_qk_min {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(32 % N == 0, "lanes must divide the sub-block");
    constexpr std::size_t bytes = Five ? q5_K_bytes : q4_K_bytes;
    const ib low(0x0F);
    for (std::int64_t i = 0; i < blocks; ++i, src += bytes) {
      const float d = detail::half_at(src), dmin = detail::half_at(src + 2);
      const std::uint8_t* scales = src + 4;  // 12 bytes
      const std::uint8_t* qh = src + 16;     // Q5_K: 32 bytes
      const std::uint8_t* ql = src + (Five ? 48 : 16);
      auto scale_min = [&](int j, int& sc, int& m) {  // ggml get_scale_min_k4
        if (j < 4) {
          sc = scales[j] & 63;
          m = scales[j + 4] & 63;
        } else {
          sc = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
          m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        }
      };
      for (int chunk = 0; chunk < 4; ++chunk, ql += 32, dst += 64) {
        int sc, m;
        scale_min(2 * chunk, sc, m);
        const fb d1(d * static_cast<float>(sc)), m1(dmin * static_cast<float>(m));
        scale_min(2 * chunk + 1, sc, m);
        const fb d2(d * static_cast<float>(sc)), m2(dmin * static_cast<float>(m));
        const ib u1(1 << (2 * chunk)), u2(2 << (2 * chunk));
        for (int l = 0; l < 32; l += N) {
          const ib q = ib::load_unaligned(ql + l);
          ib lo = q & low, hi = q >> 4;
          if constexpr (Five) {
            const ib h = ib::load_unaligned(qh + l);
            lo = lo + detail::sixteen_if_set(h & u1);
            hi = hi + detail::sixteen_if_set(h & u2);
          }
          (detail::separately_rounded(d1 * xsimd::to_float(lo)) - m1).store_unaligned(dst + l);
          (detail::separately_rounded(d2 * xsimd::to_float(hi)) - m2).store_unaligned(dst + 32 + l);
        }
      }
    }
  }
};
using dequantize_q4_K = dequantize_qk_min<false>;
using dequantize_q5_K = dequantize_qk_min<true>;

// Q6_K: super-blocks of 256 = 16 sub-blocks of 16 with int8 scales; y = (d * sc) * float(q - 32), q = 4 low bits
// from ql and 2 high bits from qh.
struct dequantize_q6_K {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t blocks) const noexcept {
    using fb = xsimd::batch<float, Arch>;
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr int N = static_cast<int>(ib::size);
    static_assert(16 % N == 0, "lanes must divide the sub-block");
    const ib low(0x0F), three(3), thirty_two(32);
    for (std::int64_t i = 0; i < blocks; ++i, src += q6_K_bytes) {
      const std::uint8_t* ql = src;         // 128 bytes
      const std::uint8_t* qh = src + 128;   // 64 bytes
      const auto* sc = reinterpret_cast<const std::int8_t*>(src + 192);  // 16 scales
      const float d = detail::half_at(src + 208);
      for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, dst += 128)
        for (int l = 0; l < 32; l += N) {
          const int is = l / 16;
          const ib a = ib::load_unaligned(ql + l), b = ib::load_unaligned(ql + 32 + l), h = ib::load_unaligned(qh + l);
          const ib q1 = ((a & low) | ((h & three) << 4)) - thirty_two;
          const ib q2 = ((b & low) | (((h >> 2) & three) << 4)) - thirty_two;
          const ib q3 = ((a >> 4) | (((h >> 4) & three) << 4)) - thirty_two;
          const ib q4 = ((b >> 4) | (((h >> 6) & three) << 4)) - thirty_two;
          (fb(d * static_cast<float>(sc[is + 0])) * xsimd::to_float(q1)).store_unaligned(dst + l);
          (fb(d * static_cast<float>(sc[is + 2])) * xsimd::to_float(q2)).store_unaligned(dst + 32 + l);
          (fb(d * static_cast<float>(sc[is + 4])) * xsimd::to_float(q3)).store_unaligned(dst + 64 + l);
          (fb(d * static_cast<float>(sc[is + 6])) * xsimd::to_float(q4)).store_unaligned(dst + 96 + l);
        }
    }
  }
};

// BF16: y = the bits shifted into the high half of a float.
struct dequantize_bf16 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t n) const noexcept {
    using ib = xsimd::batch<std::int32_t, Arch>;
    constexpr std::int64_t N = static_cast<std::int64_t>(ib::size);
    std::int64_t i = 0;
    // GGUF data is aligned (general.alignment >= 2 in practice); an odd address takes the scalar loop
    if (reinterpret_cast<std::uintptr_t>(src) % alignof(std::uint16_t) == 0) {
      const auto* h = reinterpret_cast<const std::uint16_t*>(src);
      for (; i + N <= n; i += N)
        xsimd::bitwise_cast<xsimd::batch<float, Arch>>(ib::load_unaligned(h + i) << 16).store_unaligned(dst + i);
    }
    for (; i < n; ++i) {
      std::uint16_t v;
      std::memcpy(&v, src + 2 * i, 2);
      dst[i] = qroar::detail::bf16_to_fp32(v);
    }
  }
};

// F16: IEEE binary16 to binary32 with the F16C instruction where the build has it (exact, like the scalar
// qroar::detail::fp16_to_fp32, except that a signalling NaN comes out quiet), else the scalar conversion.
// Only the 8-lane form is used (the AVX-512 form saves nothing on a load-bound loop).
struct dequantize_f16 {
  template <class Arch>
  void operator()(Arch, const std::uint8_t* src, float* dst, std::int64_t n) const noexcept {
    std::int64_t body = 0;
#if defined(__F16C__) && defined(__AVX__)
    body = n - n % 8;
    for (std::int64_t i = 0; i < body; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
#endif
    for (std::int64_t i = body; i < n; ++i) dst[i] = detail::half_at(src + 2 * i);
  }
};

}  // namespace kernels
}  // namespace v0
}  // namespace qroar
