// ggml block formats: layouts, round-trip error bounds, edge cases (zeros, signed zeros, NaN, inf), awkward
// row lengths and the dispatching entry points.
#include <doctest/doctest.h>

#include <qroar/quant/ggml_blocks.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace {

using qroar::ggml_type;

// Round-trip RMSE bounds for inputs uniform in [-1, 1] (so every 32-block has amax ~ 1 and range ~ 2).
// A uniform rounding error with step s has RMS s / sqrt(12); s follows from the bit width b:
//   symmetric legacy types (Q8_0, Q4_0, Q5_0): s = amax / 2^(b-1)    (Q8_0: amax / 127)
//   asymmetric types (Q4_1, Q5_1, Q4_K, Q5_K): s = range / (2^b - 1)
//   Q6_K (symmetric, 6 bits):                  s = amax / 32
// The slack factors cover the clipped extreme code of the symmetric types and the fp16 / 6-bit rounding of
// scales (K-quants re-quantize with scales rounded to 6 bits relative to the block maximum: <= 1/126).
// The fp16 rounding of d adds at most |q| * d * 2^-11 = amax * 2^-11 per element for Q8_0.
const double sqrt12 = std::sqrt(12.0);
const double fp16_rel_eps = std::ldexp(1.0, -11);
const double max_roundtrip_rmse_q8_0 = (1.0 / 127.0) / sqrt12 * 1.1 + fp16_rel_eps;
const double max_roundtrip_rmse_q4_0 = (1.0 / 8.0) / sqrt12 * 1.2;
const double max_roundtrip_rmse_q5_0 = (1.0 / 16.0) / sqrt12 * 1.2;
const double max_roundtrip_rmse_q4_1 = (2.0 / 15.0) / sqrt12 * 1.2;
const double max_roundtrip_rmse_q5_1 = (2.0 / 31.0) / sqrt12 * 1.2;
const double max_roundtrip_rmse_q4_k = (2.0 / 15.0) / sqrt12 * 1.25;
const double max_roundtrip_rmse_q5_k = (2.0 / 31.0) / sqrt12 * 1.25;
const double max_roundtrip_rmse_q6_k = (1.0 / 32.0) / sqrt12 * 1.25;
// f16 / bf16: relative rounding error <= 2^-11 / 2^-8 of |x| <= 1.
const double max_roundtrip_rmse_f16 = std::ldexp(1.0, -11);
const double max_roundtrip_rmse_bf16 = std::ldexp(1.0, -8);

const ggml_type all_types[] = {ggml_type::f32,  ggml_type::f16,  ggml_type::bf16, ggml_type::q8_0,
                               ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1,
                               ggml_type::q4_k, ggml_type::q5_k, ggml_type::q6_k};

std::int64_t block_of(ggml_type t) { return qroar::ggml_traits(t).block_size; }

std::vector<std::uint8_t> quantize(ggml_type t, const std::vector<float>& x) {
  std::vector<std::uint8_t> q(qroar::ggml_row_size(t, x.size()) + 1);  // +1: the writer must not overrun
  q.back() = 0xA5;
  qroar::quantize_row(t, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
  REQUIRE(q.back() == 0xA5);
  q.pop_back();
  return q;
}

std::vector<float> dequantize(ggml_type t, const std::vector<std::uint8_t>& q, std::size_t n) {
  std::vector<float> y(n + 1, 12345.f);
  qroar::dequantize_row(t, q.data(), y.data(), static_cast<std::int64_t>(n));
  REQUIRE(y.back() == 12345.f);
  y.pop_back();
  return y;
}

double rmse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return a.empty() ? 0.0 : std::sqrt(s / double(a.size()));
}

std::vector<float> uniform(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> x(n);
  for (auto& v : x) v = dist(gen);
  return x;
}

std::uint32_t bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

}  // namespace

TEST_CASE("ggml block structs match ggml-common.h and the type table") {
  CHECK(sizeof(qroar::block_q8_0) == 34);
  CHECK(sizeof(qroar::block_q4_0) == 18);
  CHECK(sizeof(qroar::block_q4_1) == 20);
  CHECK(sizeof(qroar::block_q5_0) == 22);
  CHECK(sizeof(qroar::block_q5_1) == 24);
  CHECK(sizeof(qroar::block_q4_K) == 144);
  CHECK(sizeof(qroar::block_q5_K) == 176);
  CHECK(sizeof(qroar::block_q6_K) == 210);
  CHECK(qroar::ggml_traits(ggml_type::q4_k).type_size == qroar::block_q4_K::type_size);
  CHECK(qroar::ggml_traits(ggml_type::q5_k).type_size == qroar::block_q5_K::type_size);
  CHECK(qroar::ggml_traits(ggml_type::q6_k).type_size == qroar::block_q6_K::type_size);
  CHECK(qroar::ggml_traits(ggml_type::q8_0).block_size == qroar::block_q8_0::block_size);
  CHECK(offsetof(qroar::block_q6_K, d) == 208);
  CHECK(offsetof(qroar::block_q5_K, qs) == 48);
}

TEST_CASE("helpers: nearest_int rounds half to even, fp16 rounds to nearest even") {
  using qroar::detail::nearest_int;
  CHECK(nearest_int(0.5f) == 0);
  CHECK(nearest_int(1.5f) == 2);
  CHECK(nearest_int(2.5f) == 2);
  CHECK(nearest_int(-0.5f) == 0);
  CHECK(nearest_int(-1.5f) == -2);
  CHECK(nearest_int(-2.6f) == -3);
  CHECK(nearest_int(4194303.f) == 4194303);
  CHECK(nearest_int(std::numeric_limits<float>::quiet_NaN()) == 0);
  // 1 + 2^-11 lies half way between fp16 1.0 and 1 + 2^-10: ties to the even mantissa (1.0).
  CHECK(qroar::detail::fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);
  CHECK(qroar::detail::fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
  CHECK(qroar::detail::fp32_to_fp16(65520.f) == 0x7C00);  // rounds up to inf
  CHECK(qroar::detail::fp32_to_fp16(65519.f) == 0x7BFF);
  CHECK(qroar::detail::fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(qroar::detail::fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // tie to even (0)
  // trunc_to_int8 reproduces x86's (int8_t) of an out-of-range float: low byte of INT32_MIN.
  CHECK(qroar::detail::trunc_to_int8(std::numeric_limits<float>::quiet_NaN()) == 0);
  CHECK(qroar::detail::trunc_to_int8(16.7f) == 16);
  CHECK(qroar::detail::trunc_to_uint8(32.4f) == 32);
}

TEST_CASE("round trip: quantize -> dequantize error within bounds derived from the bit width") {
  const auto x = uniform(256 * 64, 7);
  struct bound {
    ggml_type type;
    double max_rmse;
  };
  const bound bounds[] = {
      {ggml_type::f32, 0.0},
      {ggml_type::f16, max_roundtrip_rmse_f16},
      {ggml_type::bf16, max_roundtrip_rmse_bf16},
      {ggml_type::q8_0, max_roundtrip_rmse_q8_0},
      {ggml_type::q4_0, max_roundtrip_rmse_q4_0},
      {ggml_type::q4_1, max_roundtrip_rmse_q4_1},
      {ggml_type::q5_0, max_roundtrip_rmse_q5_0},
      {ggml_type::q5_1, max_roundtrip_rmse_q5_1},
      {ggml_type::q4_k, max_roundtrip_rmse_q4_k},
      {ggml_type::q5_k, max_roundtrip_rmse_q5_k},
      {ggml_type::q6_k, max_roundtrip_rmse_q6_k},
  };
  for (const auto& b : bounds) {
    SUBCASE(qroar::to_string(b.type)) {
      const auto y = dequantize(b.type, quantize(b.type, x), x.size());
      const double e = rmse(x, y);
      MESSAGE(std::string(qroar::to_string(b.type)) << " round-trip RMSE " << e << " (bound " << b.max_rmse << ")");
      CHECK(e <= b.max_rmse);
      if (b.type != ggml_type::f32) CHECK(e > 0.0);
    }
  }
}

TEST_CASE("round trip: a second quantization of dequantized values is a fixed point for the legacy types") {
  // Dequantized values lie exactly on the grid, so re-quantizing reproduces them up to fp16 rounding of d.
  const auto x = uniform(32 * 40, 11);
  for (ggml_type t : {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q5_0}) {
    const auto y = dequantize(t, quantize(t, x), x.size());
    const auto z = dequantize(t, quantize(t, y), y.size());
    CHECK(rmse(y, z) <= 1e-3);
  }
}

TEST_CASE("awkward row lengths: whole-row quantization equals block-by-block, f16/bf16/f32 any length") {
  const std::int64_t odd_lengths[] = {1, 3, 7, 15, 17, 31, 33, 127, 129, 1023};
  for (ggml_type t : {ggml_type::f32, ggml_type::f16, ggml_type::bf16}) {
    for (std::int64_t n : odd_lengths) {
      const auto x = uniform(static_cast<std::size_t>(n), static_cast<unsigned>(n));
      const auto y = dequantize(t, quantize(t, x), x.size());
      CHECK(rmse(x, y) <= (t == ggml_type::bf16 ? max_roundtrip_rmse_bf16 : max_roundtrip_rmse_f16));
    }
  }
  for (ggml_type t : all_types) {
    const std::int64_t qk = block_of(t);
    if (qk == 1) continue;
    for (std::int64_t blocks : {1, 3, 7, 17, 33}) {
      const std::string type_name = qroar::to_string(t);
    CAPTURE(type_name);
      CAPTURE(blocks);
      const auto x = uniform(static_cast<std::size_t>(qk * blocks), static_cast<unsigned>(blocks * 13));
      const auto whole = quantize(t, x);
      std::vector<std::uint8_t> pieces;
      for (std::int64_t b = 0; b < blocks; ++b) {
        const std::vector<float> part(x.begin() + b * qk, x.begin() + (b + 1) * qk);
        const auto q = quantize(t, part);
        pieces.insert(pieces.end(), q.begin(), q.end());
      }
      CHECK(whole == pieces);
    }
    // n not a multiple of the block size is a programmer error.
    std::vector<float> x(static_cast<std::size_t>(qk + 1), 0.f);
    std::vector<std::uint8_t> q(1024);
    CHECK_THROWS_AS(qroar::quantize_row(t, x.data(), q.data(), qk + 1), qroar_test::assertion_failure);
    CHECK_THROWS_AS(qroar::dequantize_row(t, q.data(), x.data(), qk - 1), qroar_test::assertion_failure);
  }
  // Zero elements: nothing written.
  for (ggml_type t : all_types) CHECK(quantize(t, {}).empty());
}

TEST_CASE("unsupported types throw qroar::unsupported") {
  std::vector<float> x(256, 0.f);
  std::vector<std::uint8_t> q(1024, 0);
  for (ggml_type t : {ggml_type::q2_k, ggml_type::q3_k, ggml_type::q8_1, ggml_type::q8_k}) {
    CHECK_THROWS_AS(qroar::dequantize_row(t, q.data(), x.data(), 256), qroar::unsupported);
    CHECK_THROWS_AS(qroar::quantize_row(t, x.data(), q.data(), 256), qroar::unsupported);
    CHECK_FALSE(qroar::ggml_type_is_convertible(t));
  }
}

TEST_CASE("all-zero blocks and signed zeros") {
  // Every type stores an all-zero block with d = +-0 and dequantizes it to a zero. f32, f16 and bf16 keep the
  // sign of each zero; the block types do not, and give the sign ggml gives: -0 for Q4_0 / Q5_0 (d = max / -8
  // is -0, code 8 -> 0 * -0) and Q6_K (d = 0 times code q - 32 = -32), +0 for the others.
  for (ggml_type t : all_types) {
    const std::string type_name = qroar::to_string(t);
    CAPTURE(type_name);
    const std::size_t n = static_cast<std::size_t>(block_of(t) == 1 ? 256 : block_of(t) * 2);
    const bool keeps_sign = t == ggml_type::f32 || t == ggml_type::f16 || t == ggml_type::bf16;
    const bool negative_zero = t == ggml_type::q4_0 || t == ggml_type::q5_0 || t == ggml_type::q6_k;
    for (float zero : {0.0f, -0.0f}) {
      const std::vector<float> x(n, zero);
      const auto y = dequantize(t, quantize(t, x), n);
      for (float v : y) {
        CHECK(v == 0.0f);
        CHECK(std::signbit(v) == (keeps_sign ? std::signbit(zero) : negative_zero));
      }
    }
  }
  // Q6_K zeroes the whole block (ggml: memset) when every sub-block scale is below GROUP_MAX_EPS.
  const std::vector<float> x(256, 0.0f);
  const auto q = quantize(ggml_type::q6_k, x);
  for (auto b : q) CHECK(b == 0);
}

TEST_CASE("a block of one non-zero value reproduces it exactly up to fp16 scale rounding") {
  for (ggml_type t : all_types) {
    const std::string type_name = qroar::to_string(t);
    CAPTURE(type_name);
    const std::size_t n = static_cast<std::size_t>(block_of(t) == 1 ? 32 : block_of(t));
    std::vector<float> x(n, 0.f);
    x[5] = -0.75f;  // exactly representable as fp16 and as code * fp16(d) for every type
    const auto y = dequantize(t, quantize(t, x), n);
    CHECK(y[5] == doctest::Approx(-0.75).epsilon(1e-3));
    for (std::size_t i = 0; i < n; ++i)
      if (i != 5) CHECK(std::fabs(y[i]) <= 0.75 / 15);  // at most one step of the coarsest (4-bit) grid
  }
}

TEST_CASE("non-finite input: deterministic, never a crash; f32/f16/bf16 keep NaN and inf") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (ggml_type t : all_types) {
    const std::string type_name = qroar::to_string(t);
    CAPTURE(type_name);
    const std::size_t n = static_cast<std::size_t>(block_of(t) == 1 ? 64 : block_of(t) * 2);
    auto x = uniform(n, 3);
    x[0] = nan;
    x[1] = inf;
    x[n - 1] = -inf;
    const auto q1 = quantize(t, x);
    const auto q2 = quantize(t, x);
    CHECK(q1 == q2);
    const auto y = dequantize(t, q1, n);
    if (block_of(t) == 1) {
      CHECK(std::isnan(y[0]));
      CHECK(y[1] == inf);
      CHECK(y[n - 1] == -inf);
      CHECK(y[2] == doctest::Approx(x[2]).epsilon(1e-2));
    }
  }
  // Q8_0 documented behaviour (as ggml on x86): ggml's MAX(amax, NaN) yields NaN and the next comparison
  // restarts the max search, so amax covers only the elements after the last NaN of the block (earlier ones
  // may exceed 127 and wrap). The NaN itself is stored as code 0. With the NaN first, the block is intact.
  auto x = uniform(32, 5);
  x[0] = nan;
  const auto y = dequantize(ggml_type::q8_0, quantize(ggml_type::q8_0, x), 32);
  CHECK(y[0] == 0.0f);
  for (std::size_t i = 1; i < 32; ++i) CHECK(std::fabs(y[i] - x[i]) <= 1.0 / 127);
}

TEST_CASE("Q4_0 extreme value maps to code 0 and the opposite extreme is clipped") {
  // d = max / -8 with max the signed value of largest magnitude: +1 -> code 0 (value -8 d = 1),
  // -1 would need code 16 and is clipped to 15 (value 7 d = -0.875).
  std::vector<float> x(32, 0.f);
  x[0] = 1.0f;
  x[1] = -1.0f;
  const auto q = quantize(ggml_type::q4_0, x);
  const auto y = dequantize(ggml_type::q4_0, q, 32);
  CHECK(bits(y[0]) == bits(1.0f));
  CHECK(y[1] == -0.875f);
  CHECK((q[2] & 0x0F) == 0);  // element 0 -> low nibble of qs[0] (after the 2-byte d)
  CHECK(y[2] == 0.0f);
}
