// SPDX-License-Identifier: MIT
// ggml block formats: layouts, dequantizers and the reference quantizers that make model files.
//
// The structs mirror ggml/src/ggml-common.h byte for byte; the quantizers are transcriptions of the `_ref`
// routines of ggml/src/ggml-quants.c (ggml-org/llama.cpp) and reproduce their output bit for bit: same
// float operations in the same order, same rounding (roundf, truncating casts, nearest_int), fp16 by
// round-to-nearest-even. See docs/formats.md and docs/formulas.md §3.
//
// FMA: ggml-quants.c lives in ggml-base, which is compiled without -march flags, so its products are rounded
// before they are added. Compiled with -mfma (or -march=native) and -ffp-contract=fast (GCC's default),
// `a*b + c` could be fused here and change the last bit. Every product that feeds an addition therefore goes
// through detail::rounded(), an optimisation barrier that makes the rounded product observable.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "../config.hpp"
#include "../detail/half.hpp"
#include "../detail/rounding.hpp"
#include "../error.hpp"
#include "../kernels/dequantize.hpp"
#include "../kernels/quantize.hpp"
#include "ggml_types.hpp"

namespace qroar {
inline namespace v0 {

// ---------------------------------------------------------------------------------------------------------
// Block layouts (ggml-common.h). `d`, `m`, `dmin` are IEEE binary16 bit patterns.

// Q8_0: value = d * qs[j].
struct block_q8_0 {
  static constexpr int block_size = 32;
  static constexpr int type_size = 34;
  std::uint16_t d;
  std::int8_t qs[32];
};
static_assert(sizeof(block_q8_0) == block_q8_0::type_size, "wrong q8_0 block size/padding");

// Q4_0: value = d * (q - 8); qs[j] low nibble = element j, high nibble = element j + 16.
struct block_q4_0 {
  static constexpr int block_size = 32;
  static constexpr int type_size = 18;
  std::uint16_t d;
  std::uint8_t qs[16];
};
static_assert(sizeof(block_q4_0) == block_q4_0::type_size, "wrong q4_0 block size/padding");

// Q4_1: value = d * q + m; nibbles as Q4_0.
struct block_q4_1 {
  static constexpr int block_size = 32;
  static constexpr int type_size = 20;
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qs[16];
};
static_assert(sizeof(block_q4_1) == block_q4_1::type_size, "wrong q4_1 block size/padding");

// Q5_0: value = d * (q - 16); low 4 bits as Q4_0, bit 4 of element j is bit j of qh (little-endian uint32).
struct block_q5_0 {
  static constexpr int block_size = 32;
  static constexpr int type_size = 22;
  std::uint16_t d;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
static_assert(sizeof(block_q5_0) == block_q5_0::type_size, "wrong q5_0 block size/padding");

// Q5_1: value = d * q + m; bits as Q5_0.
struct block_q5_1 {
  static constexpr int block_size = 32;
  static constexpr int type_size = 24;
  std::uint16_t d;
  std::uint16_t m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
static_assert(sizeof(block_q5_1) == block_q5_1::type_size, "wrong q5_1 block size/padding");

// K-quants: super-blocks of QK_K = 256 elements.
constexpr int qk_k = 256;
constexpr int k_scale_size = 12;

// Q4_K: 8 sub-blocks of 32; value = d * sc_k * q - dmin * m_k, 6-bit sc_k / m_k packed in scales[12]
// (see detail::get_scale_min_k4). qs[32c + l]: low nibble = element 64c + l, high = element 64c + 32 + l.
struct block_q4_K {
  static constexpr int block_size = qk_k;
  static constexpr int type_size = 144;
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[k_scale_size];
  std::uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q4_K) == block_q4_K::type_size, "wrong q4_K block size/padding");

// Q5_K: as Q4_K with a fifth bit: element 64c + l gains 16 if bit 2c of qh[l] is set, element 64c + 32 + l
// if bit 2c + 1 is set.
struct block_q5_K {
  static constexpr int block_size = qk_k;
  static constexpr int type_size = 176;
  std::uint16_t d;
  std::uint16_t dmin;
  std::uint8_t scales[k_scale_size];
  std::uint8_t qh[qk_k / 8];
  std::uint8_t qs[qk_k / 2];
};
static_assert(sizeof(block_q5_K) == block_q5_K::type_size, "wrong q5_K block size/padding");

// Q6_K: 16 sub-blocks of 16; value = d * scales[k] * (q - 32), q = 4 bits from ql + 2 bits from qh.
struct block_q6_K {
  static constexpr int block_size = qk_k;
  static constexpr int type_size = 210;
  std::uint8_t ql[qk_k / 2];
  std::uint8_t qh[qk_k / 4];
  std::int8_t scales[qk_k / 16];
  std::uint16_t d;
};
static_assert(sizeof(block_q6_K) == block_q6_K::type_size, "wrong q6_K block size/padding");
// The xsimd kernels (kernels/dequantize.hpp) read the same layouts from bytes.
static_assert(kernels::q8_0_bytes == sizeof(block_q8_0) && kernels::q4_0_bytes == sizeof(block_q4_0) &&
                  kernels::q4_1_bytes == sizeof(block_q4_1) && kernels::q5_0_bytes == sizeof(block_q5_0) &&
                  kernels::q5_1_bytes == sizeof(block_q5_1) && kernels::q4_K_bytes == sizeof(block_q4_K) &&
                  kernels::q5_K_bytes == sizeof(block_q5_K) && kernels::q6_K_bytes == sizeof(block_q6_K),
              "kernels/dequantize.hpp block sizes");

namespace detail {

// a * b rounded to float before any use.
inline float mul(float a, float b) noexcept { return rounded(a * b); }

inline float fp16(std::uint16_t h) noexcept { return fp16_to_fp32(h); }

// ggml-quants.c nearest_int: adds 1.5 * 2^23 and reads the mantissa, i.e. round half to even for
// |f| <= 4194303 (ggml asserts that range; outside it the result is the same bit pattern as ggml's).
inline int nearest_int(float fval) noexcept {
  const float val = rounded(fval) + 12582912.f;  // rounded(): fval is often a product
  std::int32_t i;
  std::memcpy(&i, &val, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> int32 conversion as x86 cvttss2si performs it: truncation toward zero, and the "integer
// indefinite" value INT32_MIN for NaN and out-of-range inputs (undefined behaviour in C/C++, which
// ggml's `(int8_t)(x + 8.5f)` relies on only for non-finite input).
inline std::int32_t trunc_to_int32(float v) noexcept {
  if (!(v > -2147483904.0f && v < 2147483648.0f)) return std::numeric_limits<std::int32_t>::min();
  return static_cast<std::int32_t>(v);
}
// (int8_t)v and (uint8_t)v as compiled by GCC/Clang on x86-64: truncate to int32, keep the low byte.
inline std::int8_t trunc_to_int8(float v) noexcept {
  return static_cast<std::int8_t>(static_cast<std::uint8_t>(static_cast<std::uint32_t>(trunc_to_int32(v)) & 0xFFu));
}
inline std::uint8_t trunc_to_uint8(float v) noexcept {
  return static_cast<std::uint8_t>(static_cast<std::uint32_t>(trunc_to_int32(v)) & 0xFFu);
}

// ggml's MIN / MAX macros: ((a) < (b) ? (a) : (b)), ((a) > (b) ? (a) : (b)); their NaN behaviour matters.
template <class T>
constexpr T ggml_min(T a, T b) noexcept { return a < b ? a : b; }
template <class T>
constexpr T ggml_max(T a, T b) noexcept { return a > b ? a : b; }

inline std::uint32_t load_u32_le(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline void store_u32_le(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}

// ggml-quants.c get_scale_min_k4: the 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block.
inline void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) noexcept {
  if (j < 4) {
    d = static_cast<std::uint8_t>(q[j] & 63);
    m = static_cast<std::uint8_t>(q[j + 4] & 63);
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Inverse of get_scale_min_k4 for all eight sub-blocks (quantize_row_q4_K_ref's packing loop).
inline void set_scales_mins_k4(std::uint8_t* scales, const std::uint8_t* ls, const std::uint8_t* lm) noexcept {
  for (int j = 0; j < qk_k / 32; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] = static_cast<std::uint8_t>(scales[j - 4] | ((ls[j] >> 4) << 6));
      scales[j - 0] = static_cast<std::uint8_t>(scales[j - 0] | ((lm[j] >> 4) << 6));
    }
  }
}

// ggml-quants.c make_qkx2_quants: asymmetric quantization of x[0..n) to codes L in 0..nmax with a scale and a
// non-positive offset, chosen by a grid over iscale = (rmin + rdelta*is + nmax)/(max - min), is = 0..nstep,
// each followed by a weighted least-squares fit of (scale, min). Returns the scale; *the_min = -min >= 0.
// `weights` has n entries; Laux is scratch of n bytes. use_mad selects |diff| instead of diff^2.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L, float* the_min,
                              std::uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) noexcept {
  float min = x[0];
  float max = x[0];
  float sum_w = weights[0];
  float sum_x = mul(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += mul(w, x[i]);
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = fnmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(ggml_max(0, ggml_min(nmax, l)));
    float diff = mul(scale, static_cast<float>(L[i])) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    const float w = weights[i];
    best_error += mul(w, diff);
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + mul(rdelta, static_cast<float>(is)) + fnmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = ggml_max(0, ggml_min(nmax, l));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += mul(w, fl);
      sum_l2 += mul(w * fl, fl);
      sum_xl += mul(w * fl, x[i]);
    }
    const float D = mul(sum_w, sum_l2) - mul(sum_l, sum_l);
    if (D > 0) {
      float this_scale = (mul(sum_w, sum_xl) - mul(sum_x, sum_l)) / D;
      float this_min = (mul(sum_l2, sum_x) - mul(sum_l, sum_xl)) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = mul(this_scale, static_cast<float>(Laux[i])) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        const float w = weights[i];
        cur_error += mul(w, diff);
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// ggml-quants.c make_qx_quants (qw == nullptr): symmetric quantization of x[0..n) to codes L in 0..2*nmax-1
// (stored with the +nmax offset). iscale = -nmax/max with `max` the signed value of largest magnitude, then a
// least-squares scale; for rmse_type 1 the weights are x^2 and 18 more iscales -(nmax + 0.1*is)/max are tried,
// keeping the one maximising (sum w*l*x)^2 / sum w*l^2. Returns the scale (0 for an all-zero group).
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, int rmse_type) noexcept {
  constexpr float group_max_eps = 1e-15f;  // ggml-quants.c GROUP_MAX_EPS
  float max = 0;
  float amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < group_max_eps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float fnmax = static_cast<float>(nmax);
  float iscale = static_cast<float>(-nmax) / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) {
      const int l = nearest_int(iscale * x[i]);
      L[i] = static_cast<std::int8_t>(nmax + ggml_max(-nmax, ggml_min(nmax - 1, l)));
    }
    return 1 / iscale;
  }
  bool return_early = false;
  if (rmse_type < 0) {
    rmse_type = -rmse_type;
    return_early = true;
  }
  auto weight = [rmse_type](float v) noexcept -> float {
    return rmse_type == 1 ? v * v : rmse_type == 2 ? 1.f : rmse_type == 3 ? std::fabs(v) : std::sqrt(std::fabs(v));
  };
  float sumlx = 0;
  float suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = ggml_max(-nmax, ggml_min(nmax - 1, l));
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = weight(x[i]);
    const float fl = static_cast<float>(l);
    sumlx += mul(w * x[i], fl);
    suml2 += mul(w * fl, fl);
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(fnmax + mul(0.1f, static_cast<float>(is))) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = ggml_max(-nmax, ggml_min(nmax - 1, l));
      const float w = weight(x[i]);
      const float fl = static_cast<float>(l);
      sumlx += mul(w * x[i], fl);
      suml2 += mul(w * fl, fl);
    }
    if (suml2 > 0 && mul(sumlx, sumlx) > mul(best, suml2)) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<std::int8_t>(nmax + ggml_max(-nmax, ggml_min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// Dequantizers: y[0..k) from k / block_size blocks. Precondition: k is a multiple of the block size
// (checked by qroar::dequantize_row). Bit-exact with ggml-quants.c dequantize_row_<type>.

// ggml-quants.c dequantize_row_q8_0: y = d * q.
inline void dequantize_row_q8_0(const block_q8_0* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q8_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    for (int j = 0; j < 32; ++j) y[i * 32 + j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

// ggml-quants.c dequantize_row_q4_0: y = (q - 8) * d.
inline void dequantize_row_q4_0(const block_q4_0* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q4_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    for (int j = 0; j < 16; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * 32 + j] = static_cast<float>(x0) * d;
      y[i * 32 + j + 16] = static_cast<float>(x1) * d;
    }
  }
}

// ggml-quants.c dequantize_row_q4_1: y = q * d + m.
inline void dequantize_row_q4_1(const block_q4_1* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q4_1::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    const float m = detail::fp16(x[i].m);
    for (int j = 0; j < 16; ++j) {
      const int x0 = x[i].qs[j] & 0x0F;
      const int x1 = x[i].qs[j] >> 4;
      y[i * 32 + j] = detail::mul(static_cast<float>(x0), d) + m;
      y[i * 32 + j + 16] = detail::mul(static_cast<float>(x1), d) + m;
    }
  }
}

// ggml-quants.c dequantize_row_q5_0: y = (q - 16) * d.
inline void dequantize_row_q5_0(const block_q5_0* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q5_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    const std::uint32_t qh = detail::load_u32_le(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> (j + 0)) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      const int x0 = ((x[i].qs[j] & 0x0F) | xh0) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | xh1) - 16;
      y[i * 32 + j] = static_cast<float>(x0) * d;
      y[i * 32 + j + 16] = static_cast<float>(x1) * d;
    }
  }
}

// ggml-quants.c dequantize_row_q5_1: y = q * d + m.
inline void dequantize_row_q5_1(const block_q5_1* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q5_1::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    const float m = detail::fp16(x[i].m);
    const std::uint32_t qh = detail::load_u32_le(x[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int xh0 = static_cast<int>(((qh >> (j + 0)) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      const int x0 = (x[i].qs[j] & 0x0F) | xh0;
      const int x1 = (x[i].qs[j] >> 4) | xh1;
      y[i * 32 + j] = detail::mul(static_cast<float>(x0), d) + m;
      y[i * 32 + j + 16] = detail::mul(static_cast<float>(x1), d) + m;
    }
  }
}

// ggml-quants.c dequantize_row_q4_K: y = (d * sc) * q - dmin * m per 32-element sub-block.
inline void dequantize_row_q4_K(const block_q4_K* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / qk_k;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q = x[i].qs;
    const float d = detail::fp16(x[i].d);
    const float min = detail::fp16(x[i].dmin);
    int is = 0;
    std::uint8_t sc, m;
    for (int j = 0; j < qk_k; j += 64) {
      detail::get_scale_min_k4(is + 0, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = detail::mul(min, m);
      detail::get_scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = detail::mul(min, m);
      for (int l = 0; l < 32; ++l) *y++ = detail::mul(d1, static_cast<float>(q[l] & 0xF)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = detail::mul(d2, static_cast<float>(q[l] >> 4)) - m2;
      q += 32;
      is += 2;
    }
  }
}

// ggml-quants.c dequantize_row_q5_K: as Q4_K with the fifth bit from qh.
inline void dequantize_row_q5_K(const block_q5_K* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / qk_k;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* ql = x[i].qs;
    const std::uint8_t* qh = x[i].qh;
    const float d = detail::fp16(x[i].d);
    const float min = detail::fp16(x[i].dmin);
    int is = 0;
    std::uint8_t sc, m;
    unsigned u1 = 1, u2 = 2;
    for (int j = 0; j < qk_k; j += 64) {
      detail::get_scale_min_k4(is + 0, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = detail::mul(min, m);
      detail::get_scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = detail::mul(min, m);
      for (int l = 0; l < 32; ++l)
        *y++ = detail::mul(d1, static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0))) - m1;
      for (int l = 0; l < 32; ++l)
        *y++ = detail::mul(d2, static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0))) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

// ggml-quants.c dequantize_row_q6_K: y = (d * sc) * (q - 32).
inline void dequantize_row_q6_K(const block_q6_K* QROAR_RESTRICT x, float* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / qk_k;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = detail::fp16(x[i].d);
    const std::uint8_t* ql = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* sc = x[i].scales;
    for (int n = 0; n < qk_k; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reference quantizers: k / block_size blocks from x[0..k). Precondition: k is a multiple of the block size
// (checked by qroar::quantize_row). Bit-exact with ggml-quants.c quantize_row_<type>_ref, which is what
// ggml_quantize_chunk runs without an importance matrix.
//
// Non-finite input: no crash and a deterministic result, but the block is meaningless. For the legacy types a
// NaN is skipped by the max search and its code is the one x86 produces for the (undefined in C) conversion
// of NaN to an integer, which detail::trunc_to_int* reproduce; an inf makes d = inf and the other codes NaN
// products. Validate weights with std::isfinite before quantizing.

// ggml-quants.c quantize_row_q8_0_ref: d = amax / 127, q = roundf(x / d).
inline void quantize_row_q8_0_ref(const float* QROAR_RESTRICT x, block_q8_0* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q8_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = detail::ggml_max(amax, std::fabs(x[i * 32 + j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = detail::fp32_to_fp16(d);
    for (int j = 0; j < 32; ++j) y[i].qs[j] = detail::trunc_to_int8(std::round(x[i * 32 + j] * id));
  }
}

// ggml-quants.c quantize_row_q4_0_ref: d = max / -8 (max = signed value of largest |x|, first on ties),
// q = min(15, (int8)(x / d + 8.5)).
inline void quantize_row_q4_0_ref(const float* QROAR_RESTRICT x, block_q4_0* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q4_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = x[i * 32 + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = detail::fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const float x0 = detail::mul(x[i * 32 + j], id);
      const float x1 = detail::mul(x[i * 32 + 16 + j], id);
      const int xi0 = detail::ggml_min(15, static_cast<int>(detail::trunc_to_int8(x0 + 8.5f)));
      const int xi1 = detail::ggml_min(15, static_cast<int>(detail::trunc_to_int8(x1 + 8.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(xi0) | (static_cast<std::uint8_t>(xi1) << 4));
    }
  }
}

// ggml-quants.c quantize_row_q4_1_ref: d = (max - min) / 15, m = min, q = min(15, (int8)((x - min) / d + 0.5)).
inline void quantize_row_q4_1_ref(const float* QROAR_RESTRICT x, block_q4_1* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q4_1::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    float min = std::numeric_limits<float>::max();
    float max = -std::numeric_limits<float>::max();
    for (int j = 0; j < 32; ++j) {
      const float v = x[i * 32 + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = detail::fp32_to_fp16(d);
    y[i].m = detail::fp32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
      const float x0 = detail::mul(x[i * 32 + j] - min, id);
      const float x1 = detail::mul(x[i * 32 + 16 + j] - min, id);
      const int xi0 = detail::ggml_min(15, static_cast<int>(detail::trunc_to_int8(x0 + 0.5f)));
      const int xi1 = detail::ggml_min(15, static_cast<int>(detail::trunc_to_int8(x1 + 0.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(xi0) | (static_cast<std::uint8_t>(xi1) << 4));
    }
  }
}

// ggml-quants.c quantize_row_q5_0_ref: d = max / -16, q = min(31, (int8)(x / d + 16.5)).
inline void quantize_row_q5_0_ref(const float* QROAR_RESTRICT x, block_q5_0* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q5_0::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float v = x[i * 32 + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -16;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = detail::fp32_to_fp16(d);
    std::uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const float x0 = detail::mul(x[i * 32 + j], id);
      const float x1 = detail::mul(x[i * 32 + 16 + j], id);
      const auto xi0 = static_cast<std::uint8_t>(detail::ggml_min(31, static_cast<int>(detail::trunc_to_int8(x0 + 16.5f))));
      const auto xi1 = static_cast<std::uint8_t>(detail::ggml_min(31, static_cast<int>(detail::trunc_to_int8(x1 + 16.5f))));
      y[i].qs[j] = static_cast<std::uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    detail::store_u32_le(y[i].qh, qh);
  }
}

// ggml-quants.c quantize_row_q5_1_ref: d = (max - min) / 31, m = min, q = (uint8)((x - min) / d + 0.5), no clamp.
inline void quantize_row_q5_1_ref(const float* QROAR_RESTRICT x, block_q5_1* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / block_q5_1::block_size;
  for (std::int64_t i = 0; i < nb; ++i) {
    float min = std::numeric_limits<float>::max();
    float max = -std::numeric_limits<float>::max();
    for (int j = 0; j < 32; ++j) {
      const float v = x[i * 32 + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[i].d = detail::fp32_to_fp16(d);
    y[i].m = detail::fp32_to_fp16(min);
    std::uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const float x0 = detail::mul(x[i * 32 + j] - min, id);
      const float x1 = detail::mul(x[i * 32 + 16 + j] - min, id);
      const std::uint8_t xi0 = detail::trunc_to_uint8(x0 + 0.5f);
      const std::uint8_t xi1 = detail::trunc_to_uint8(x1 + 0.5f);
      y[i].qs[j] = static_cast<std::uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
    }
    detail::store_u32_le(y[i].qh, qh);
  }
}

namespace detail {

// The common part of quantize_row_q4_K_ref / quantize_row_q5_K_ref: per 32-element sub-block
// make_qkx2_quants with weights av_x + |x| (av_x = sqrt(sum x^2 / 32)), 6-bit scales and mins relative to
// the largest, fp16 super-block d / dmin, then codes re-chosen with the rounded scales. Fills L (256 codes),
// scales[12], d and dmin.
inline void quantize_superblock_k4(const float* x, int nmax, float rmin, float rdelta, int nstep, std::uint8_t* L,
                                   std::uint8_t* scales_out, std::uint16_t& d_out, std::uint16_t& dmin_out) noexcept {
  std::uint8_t Laux[32];
  float weights[32];
  float mins[qk_k / 32];
  float scales[qk_k / 32];
  float max_scale = 0;  // as we are deducting the min, scales are always positive
  float max_min = 0;
  for (int j = 0; j < qk_k / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += mul(x[32 * j + l], x[32 * j + l]);
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
    const float scale = scales[j];
    if (scale > max_scale) max_scale = scale;
    const float min = mins[j];
    if (min > max_min) max_min = min;
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::uint8_t ls[qk_k / 32], lm[qk_k / 32];
  for (int j = 0; j < qk_k / 32; ++j) {
    // ggml stores nearest_int into a uint8_t before MIN(63, .)
    ls[j] = ggml_min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = ggml_min<std::uint8_t>(63, static_cast<std::uint8_t>(nearest_int(inv_min * mins[j])));
  }
  std::memset(scales_out, 0, k_scale_size);
  set_scales_mins_k4(scales_out, ls, lm);
  d_out = fp32_to_fp16(max_scale / 63.f);
  dmin_out = fp32_to_fp16(max_min / 63.f);
  std::uint8_t sc, m;
  for (int j = 0; j < qk_k / 32; ++j) {
    get_scale_min_k4(j, scales_out, sc, m);
    const float d = fp16(d_out) * sc;
    if (d == 0.f) continue;
    const float dm = mul(fp16(dmin_out), m);
    for (int ii = 0; ii < 32; ++ii) {
      int l = nearest_int((x[32 * j + ii] + dm) / d);
      l = ggml_max(0, ggml_min(nmax, l));
      L[32 * j + ii] = static_cast<std::uint8_t>(l);
    }
  }
}

}  // namespace detail

// ggml-quants.c quantize_row_q4_K_ref: make_qkx2_quants(32, 15, rmin -1, rdelta 0.1, nstep 20) per sub-block.
inline void quantize_row_q4_K_ref(const float* QROAR_RESTRICT x, block_q4_K* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / qk_k;
  std::uint8_t L[qk_k];
  for (std::int64_t i = 0; i < nb; ++i) {
    detail::quantize_superblock_k4(x, 15, -1.f, 0.1f, 20, L, y[i].scales, y[i].d, y[i].dmin);
    std::uint8_t* q = y[i].qs;
    for (int j = 0; j < qk_k; j += 64) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
      q += 32;
    }
    x += qk_k;
  }
}

// ggml-quants.c quantize_row_q5_K_ref: make_qkx2_quants(32, 31, rmin -0.5, rdelta 0.1, nstep 15) per sub-block.
inline void quantize_row_q5_K_ref(const float* QROAR_RESTRICT x, block_q5_K* QROAR_RESTRICT y, std::int64_t k) noexcept {
  const std::int64_t nb = k / qk_k;
  std::uint8_t L[qk_k];
  for (std::int64_t i = 0; i < nb; ++i) {
    detail::quantize_superblock_k4(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, y[i].d, y[i].dmin);
    std::uint8_t* qh = y[i].qh;
    std::uint8_t* ql = y[i].qs;
    std::memset(qh, 0, qk_k / 8);
    unsigned m1 = 1, m2 = 2;
    for (int n = 0; n < qk_k; n += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] = static_cast<std::uint8_t>(qh[j] | m1);
        }
        int l2 = L[n + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] = static_cast<std::uint8_t>(qh[j] | m2);
        }
        ql[j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
      }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
    x += qk_k;
  }
}

// ggml-quants.c quantize_row_q6_K_ref: make_qx_quants(16, 32, rmse_type 1) per sub-block, int8 scales
// relative to the signed largest (which maps to -128), codes re-chosen with d = fp16(-max_scale/128).
inline void quantize_row_q6_K_ref(const float* QROAR_RESTRICT x, block_q6_K* QROAR_RESTRICT y, std::int64_t k) noexcept {
  constexpr float group_max_eps = 1e-15f;  // ggml-quants.c GROUP_MAX_EPS
  const std::int64_t nb = k / qk_k;
  std::int8_t L[qk_k];
  float scales[qk_k / 16];
  for (std::int64_t i = 0; i < nb; ++i) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < qk_k / 16; ++ib) {
      const float scale = detail::make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
      scales[ib] = scale;
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < group_max_eps) {
      std::memset(&y[i], 0, sizeof(block_q6_K));
      y[i].d = detail::fp32_to_fp16(0.f);
      x += qk_k;
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = detail::fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < qk_k / 16; ++ib)
      y[i].scales[ib] = static_cast<std::int8_t>(detail::ggml_min(127, detail::nearest_int(iscale * scales[ib])));
    for (int j = 0; j < qk_k / 16; ++j) {
      const float d = detail::fp16(y[i].d) * y[i].scales[j];
      if (d == 0.f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        int l = detail::nearest_int(x[16 * j + ii] / d);
        l = detail::ggml_max(-32, detail::ggml_min(31, l));
        L[16 * j + ii] = static_cast<std::int8_t>(l + 32);
      }
    }
    std::uint8_t* ql = y[i].ql;
    std::uint8_t* qh = y[i].qh;
    for (int j = 0; j < qk_k; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l + 0] & 0xF;
        const int q2 = L[j + l + 32] & 0xF;
        const int q3 = L[j + l + 64] & 0xF;
        const int q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = static_cast<std::uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<std::uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                          ((L[j + l + 96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
    x += qk_k;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Type-dispatched rows.

// True for the types dequantize_row / quantize_row handle: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1,
// q4_K, q5_K, q6_K.
inline bool ggml_type_is_convertible(ggml_type type) noexcept {
  switch (type) {
    case ggml_type::f32: case ggml_type::f16: case ggml_type::bf16: case ggml_type::q8_0: case ggml_type::q4_0:
    case ggml_type::q4_1: case ggml_type::q5_0: case ggml_type::q5_1: case ggml_type::q4_k: case ggml_type::q5_k:
    case ggml_type::q6_k:
      return true;
    default:
      return false;
  }
}

namespace detail {
inline void check_row(ggml_type type, std::int64_t n, const char* op) {
  if (!ggml_type_is_convertible(type)) {
    const auto* tr = ggml_traits(static_cast<std::uint32_t>(type));
    throw unsupported(std::string(op) + ": ggml type " +
                      (tr ? std::string(tr->name) : "#" + std::to_string(static_cast<std::uint32_t>(type))) +
                      " is not supported");
  }
  QROAR_ASSERT(n >= 0, "negative element count");
  QROAR_ASSERT(n % static_cast<std::int64_t>(ggml_traits(type).block_size) == 0,
               "element count is not a multiple of the ggml block size");
}
}  // namespace detail

// dst[0..n) = the n values stored at src in `type` (n / block_size blocks). Throws qroar::unsupported for a
// type outside ggml_type_is_convertible; n must be a multiple of the block size (QROAR_ASSERT).
inline void dequantize_row(ggml_type type, const void* src, float* dst, std::int64_t n) {
  using arch = xsimd::default_arch;
  detail::check_row(type, n, "dequantize_row");
  const auto* b = static_cast<const std::uint8_t*>(src);
  switch (type) {
    case ggml_type::f32:
      if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
      return;
    case ggml_type::f16: return kernels::dequantize_f16{}(arch{}, b, dst, n);
    case ggml_type::bf16: return kernels::dequantize_bf16{}(arch{}, b, dst, n);
    // the xsimd kernels of kernels/dequantize.hpp, bit-exact twins of dequantize_row_<type> above
    case ggml_type::q8_0: return kernels::dequantize_q8_0{}(arch{}, b, dst, n / block_q8_0::block_size);
    case ggml_type::q4_0: return kernels::dequantize_q4_0{}(arch{}, b, dst, n / block_q4_0::block_size);
    case ggml_type::q4_1: return kernels::dequantize_q4_1{}(arch{}, b, dst, n / block_q4_1::block_size);
    case ggml_type::q5_0: return kernels::dequantize_q5_0{}(arch{}, b, dst, n / block_q5_0::block_size);
    case ggml_type::q5_1: return kernels::dequantize_q5_1{}(arch{}, b, dst, n / block_q5_1::block_size);
    case ggml_type::q4_k: return kernels::dequantize_q4_K{}(arch{}, b, dst, n / qk_k);
    case ggml_type::q5_k: return kernels::dequantize_q5_K{}(arch{}, b, dst, n / qk_k);
    case ggml_type::q6_k: return kernels::dequantize_q6_K{}(arch{}, b, dst, n / qk_k);
    default: return;  // unreachable: check_row threw
  }
}

namespace detail {
// One block of 32 through a reference quantizer (the kernels' fallback).
template <class Block, void (*Ref)(const float*, Block*, std::int64_t) noexcept>
inline void ref_block(const float* x, std::uint8_t* dst) noexcept {
  Ref(x, reinterpret_cast<Block*>(dst), 32);
}
}  // namespace detail

// Writes ggml_row_size(type, n) bytes at dst: src[0..n) stored in `type` by ggml's reference quantizer
// (f16 / bf16 by round-to-nearest-even). Same errors as dequantize_row. Block data must be 2-byte aligned
// (alignof of the block structs), as it is in a GGUF data section.
inline void quantize_row(ggml_type type, const float* src, void* dst, std::int64_t n) {
  using arch = xsimd::default_arch;
  detail::check_row(type, n, "quantize_row");
  auto* b = static_cast<std::uint8_t*>(dst);
  switch (type) {
    case ggml_type::f32:
      if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
      return;
    case ggml_type::f16: return kernels::quantize_f16{}(arch{}, src, b, n);
    case ggml_type::bf16:
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = detail::fp32_to_bf16(src[i]);
        std::memcpy(b + 2 * i, &h, 2);
      }
      return;
    // the xsimd kernels of kernels/quantize.hpp, bit-exact twins of quantize_row_<type>_ref above (which they
    // call for blocks they do not handle); the K-quants run their references (see kernels/quantize.hpp)
    case ggml_type::q8_0: return kernels::quantize_q8_0{}(arch{}, src, b, n / 32, detail::ref_block<block_q8_0, quantize_row_q8_0_ref>);
    case ggml_type::q4_0: return kernels::quantize_q4_0{}(arch{}, src, b, n / 32, detail::ref_block<block_q4_0, quantize_row_q4_0_ref>);
    case ggml_type::q4_1: return kernels::quantize_q4_1{}(arch{}, src, b, n / 32, detail::ref_block<block_q4_1, quantize_row_q4_1_ref>);
    case ggml_type::q5_0: return kernels::quantize_q5_0{}(arch{}, src, b, n / 32, detail::ref_block<block_q5_0, quantize_row_q5_0_ref>);
    case ggml_type::q5_1: return kernels::quantize_q5_1{}(arch{}, src, b, n / 32, detail::ref_block<block_q5_1, quantize_row_q5_1_ref>);
    case ggml_type::q4_k: return quantize_row_q4_K_ref(src, static_cast<block_q4_K*>(dst), n);
    case ggml_type::q5_k: return quantize_row_q5_K_ref(src, static_cast<block_q5_K*>(dst), n);
    case ggml_type::q6_k: return quantize_row_q6_K_ref(src, static_cast<block_q6_K*>(dst), n);
    default: return;
  }
}

}  // namespace v0
}  // namespace qroar
