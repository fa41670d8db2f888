// The xsimd quantization kernels (kernels/quantize.hpp) against their scalar twins, bit for bit: RTN groups
// (contiguous, and columns as groups for per-channel KV) and ggml's legacy block quantizers, over awkward sizes
// and values that stress every rule the twins fix: signed zeros (which one a min/max keeps), ties of |max| with
// opposite signs (q4_0 keeps the first), exact rounding midpoints, constant and all-zero groups, subnormal
// ranges (a scale without a finite inverse), values whose range overflows, NaN and infinities.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <qroar/kernels/quantize.hpp>
#include <qroar/quant/ggml_blocks.hpp>

#include "kernels_testing.hpp"

namespace {

using qroar_kernels_test::arch;
namespace k = qroar::kernels;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Groups of n values: Gaussian, then in turn every special pattern below (chosen by `pattern`).
std::vector<float> awkward_values(int n, int pattern, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> pos(0, n - 1);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& v : x) v = nd(rng);
  auto at = [&](float v) { x[static_cast<std::size_t>(pos(rng))] = v; };
  switch (pattern) {
    case 0: break;                                                    // Gaussian
    case 1: for (auto& v : x) v = 0.0f; break;                        // all zero
    case 2: for (auto& v : x) v = (pos(rng) & 1) ? 0.0f : -0.0f; break;  // signed zeros only
    case 3: for (auto& v : x) v = std::abs(v); at(-0.0f); at(0.0f); break;  // min is a signed zero
    case 4: for (auto& v : x) v = -std::abs(v); at(0.0f); at(-0.0f); break;  // max is a signed zero
    case 5: for (auto& v : x) v = 0.75f; break;                       // constant
    case 6: at(4.0f); at(-4.0f); at(4.0f); break;                     // |max| ties, both signs
    case 7: for (auto& v : x) v = std::ldexp(std::round(v * 8.0f) + 0.5f, -3); break;  // rounding midpoints
    case 8: for (auto& v : x) v *= 1e-44f; break;                     // subnormal range
    case 9: for (auto& v : x) v *= 1e38f; at(3e38f); at(-3e38f); break;  // max - min overflows
    case 10: at(kNaN); break;
    case 11: at(kInf); break;
    case 12: at(-kInf); at(kNaN); break;
    case 13: for (auto& v : x) v = std::round(v * 4.0f); break;       // small integers: many exact ties
    default: break;
  }
  return x;
}
constexpr int patterns = 14;

// Bit for bit, except that any NaN matches any NaN: IEEE 754 leaves the sign and payload of a NaN result open
// and compilers commute the operands of + and *, so even two inlined copies of the same scalar code can return
// different NaNs (x86 keeps the first operand's).
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); }
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); }
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_bits(a[i], b[i])) return false;
  return true;
}

}  // namespace

TEST_CASE("RTN group kernel equals rtn_group_ref bit for bit, errors included") {
  std::mt19937 rng(7);
  for (int n : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 65, 127, 130}) {
    CAPTURE(n);
    for (int pattern = 0; pattern < patterns; ++pattern) {
      CAPTURE(pattern);
      const auto x = awkward_values(n, pattern, rng);
      for (int bits : {2, 3, 4, 8})
        for (bool symmetric : {true, false})
          for (bool fp16 : {false, true})
            for (float clip : {1.0f, 0.975f, 0.5f}) {
              CAPTURE(bits);
              CAPTURE(symmetric);
              CAPTURE(fp16);
              CAPTURE(clip);
              std::vector<float> simd(x.size()), scalar(x.size());
              const double e1 = k::rtn_fake_quantize{}(arch{}, x.data(), simd.data(), n, bits, symmetric, fp16, clip);
              const double e2 = k::rtn_group_ref(x.data(), scalar.data(), n, 1, bits, symmetric, fp16, clip);
              CHECK(same_bits(simd, scalar));
              CHECK(same_bits(e1, e2));
              // error-only mode, and in-place writing without the error sum, give the same
              const double e3 = k::rtn_fake_quantize{}(arch{}, x.data(), nullptr, n, bits, symmetric, fp16, clip);
              CHECK(same_bits(e1, e3));
              auto in_place = x;
              const double e4 =
                  k::rtn_fake_quantize{false}(arch{}, in_place.data(), in_place.data(), n, bits, symmetric, fp16, clip);
              CHECK(same_bits(in_place, scalar));
              CHECK(e4 == 0.0);
            }
    }
  }
}

TEST_CASE("RTN error sum: eight interleaved partial sums in a fixed order") {
  // An independent evaluation of the documented order on values where the order matters.
  std::vector<float> x(19);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 3 == 0) ? 1e4f : 1e-4f * static_cast<float>(i);
  std::vector<float> out(x.size());
  const double err = k::rtn_group_ref(x.data(), out.data(), 19, 1, 3, true, false);
  double part[8] = {};
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(out[i] - x[i]);
    part[i % 8] += d * d;
  }
  CHECK(err == ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])));
}

TEST_CASE("RTN column kernel (per-channel KV groups) equals rtn_group_ref per column") {
  std::mt19937 rng(11);
  for (int rows : {1, 2, 3, 5, 8, 17, 33})
    for (int cols : {1, 3, 7, 8, 15, 16, 17, 33, 69}) {
      CAPTURE(rows);
      CAPTURE(cols);
      const int ld = cols + 3;
      for (int pattern = 0; pattern < patterns; ++pattern) {
        CAPTURE(pattern);
        const auto x = awkward_values(rows * ld, pattern, rng);
        for (int bits : {2, 4, 8})
          for (bool symmetric : {true, false}) {
            CAPTURE(bits);
            CAPTURE(symmetric);
            auto simd = x, scalar = x;
            k::rtn_fake_quantize_columns{}(arch{}, simd.data(), rows, cols, ld, bits, symmetric);
            for (int c = 0; c < cols; ++c)
              (void)k::rtn_group_ref(scalar.data() + c, scalar.data() + c, rows, ld, bits, symmetric, false);
            CHECK(same_bits(simd, scalar));  // the padding columns included: untouched by both
          }
      }
    }
}

namespace {

template <class Block, class Kernel, class Ref>
void check_ggml(const std::string& name, Kernel kernel, Ref ref) {
  CAPTURE(name);
  std::mt19937 rng(5);
  for (std::size_t blocks : {1, 2, 3, 7, 33}) {
    CAPTURE(blocks);
    for (int pattern = 0; pattern < patterns; ++pattern) {
      CAPTURE(pattern);
      // every block of the row gets the pattern (and its own random values)
      std::vector<float> x;
      for (std::size_t b = 0; b < blocks; ++b) {
        const auto v = awkward_values(32, (b % 2 == 0) ? pattern : 0, rng);
        x.insert(x.end(), v.begin(), v.end());
      }
      const auto n = static_cast<std::int64_t>(x.size());
      std::vector<Block> simd(blocks + 1), scalar(blocks + 1);  // + a guard block
      std::memset(static_cast<void*>(simd.data()), 0xA5, simd.size() * sizeof(Block));
      std::memset(static_cast<void*>(scalar.data()), 0xA5, scalar.size() * sizeof(Block));
      kernel(arch{}, x.data(), reinterpret_cast<std::uint8_t*>(simd.data()), static_cast<std::int64_t>(blocks),
             [&](const float* xb, std::uint8_t* dst) { ref(xb, reinterpret_cast<Block*>(dst), 32); });
      ref(x.data(), scalar.data(), n);
      CHECK(std::memcmp(simd.data(), scalar.data(), simd.size() * sizeof(Block)) == 0);
    }
  }
}

}  // namespace

TEST_CASE("ggml quantize kernels equal ggml's reference quantizers bit for bit") {
  check_ggml<qroar::block_q8_0>("q8_0", k::quantize_q8_0{}, qroar::quantize_row_q8_0_ref);
  check_ggml<qroar::block_q4_0>("q4_0", k::quantize_q4_0{}, qroar::quantize_row_q4_0_ref);
  check_ggml<qroar::block_q4_1>("q4_1", k::quantize_q4_1{}, qroar::quantize_row_q4_1_ref);
  check_ggml<qroar::block_q5_0>("q5_0", k::quantize_q5_0{}, qroar::quantize_row_q5_0_ref);
  check_ggml<qroar::block_q5_1>("q5_1", k::quantize_q5_1{}, qroar::quantize_row_q5_1_ref);
}

TEST_CASE("quantize_row dispatches the kernels: same bytes as the references") {
  std::mt19937 rng(9);
  std::vector<float> x;
  for (int b = 0; b < 16; ++b) {
    const auto v = awkward_values(32, b % patterns, rng);
    x.insert(x.end(), v.begin(), v.end());
  }
  const auto n = static_cast<std::int64_t>(x.size());
  auto check = [&](qroar::ggml_type t, auto ref) {
    const auto bytes = static_cast<std::size_t>(qroar::ggml_row_size(t, static_cast<std::uint64_t>(n)));
    std::vector<std::uint8_t> a(bytes), b(bytes);
    qroar::quantize_row(t, x.data(), a.data(), n);
    ref(x.data(), b.data(), n);
    CHECK(a == b);
  };
  check(qroar::ggml_type::q8_0, [](const float* s, std::uint8_t* d, std::int64_t m) {
    qroar::quantize_row_q8_0_ref(s, reinterpret_cast<qroar::block_q8_0*>(d), m); });
  check(qroar::ggml_type::q4_0, [](const float* s, std::uint8_t* d, std::int64_t m) {
    qroar::quantize_row_q4_0_ref(s, reinterpret_cast<qroar::block_q4_0*>(d), m); });
  check(qroar::ggml_type::q4_1, [](const float* s, std::uint8_t* d, std::int64_t m) {
    qroar::quantize_row_q4_1_ref(s, reinterpret_cast<qroar::block_q4_1*>(d), m); });
  check(qroar::ggml_type::q5_0, [](const float* s, std::uint8_t* d, std::int64_t m) {
    qroar::quantize_row_q5_0_ref(s, reinterpret_cast<qroar::block_q5_0*>(d), m); });
  check(qroar::ggml_type::q5_1, [](const float* s, std::uint8_t* d, std::int64_t m) {
    qroar::quantize_row_q5_1_ref(s, reinterpret_cast<qroar::block_q5_1*>(d), m); });
}

TEST_CASE("f16 kernels equal the scalar binary16 conversions: all 65,536 halves, and floats at every boundary") {
  // binary16 -> binary32, exhaustively (a signalling NaN may come out quiet: any NaN matches any NaN)
  std::vector<std::uint8_t> halves(2 * 65536 + 2);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    halves[2 * h] = static_cast<std::uint8_t>(h & 0xFF);
    halves[2 * h + 1] = static_cast<std::uint8_t>(h >> 8);
  }
  for (std::int64_t n : {std::int64_t{65536}, std::int64_t{65535}, std::int64_t{13}, std::int64_t{7}}) {
    CAPTURE(n);
    for (std::int64_t offset : {std::int64_t{0}, std::int64_t{1}}) {  // an odd half offset: unaligned 16-byte loads
      std::vector<float> simd(static_cast<std::size_t>(n)), scalar(static_cast<std::size_t>(n));
      k::dequantize_f16{}(arch{}, halves.data() + 2 * offset, simd.data(), n);
      for (std::int64_t i = 0; i < n; ++i)
        scalar[static_cast<std::size_t>(i)] =
            qroar::detail::fp16_to_fp32(static_cast<std::uint16_t>(halves[static_cast<std::size_t>(2 * (i + offset))] |
                                                                    halves[static_cast<std::size_t>(2 * (i + offset) + 1)] << 8));
      CHECK(same_bits(simd, scalar));
    }
  }
  // binary32 -> binary16: every half's value, the midpoints between neighbouring halves (ties to even) and one
  // ulp either side of them, the overflow threshold, NaNs with payloads, and random floats
  std::vector<float> x;
  auto bits_to_float = [](std::uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; };
  for (std::uint32_t h = 0; h < 0x7C00; ++h) {
    const float a = qroar::detail::fp16_to_fp32(static_cast<std::uint16_t>(h));
    const float b = qroar::detail::fp16_to_fp32(static_cast<std::uint16_t>(h + 1));
    const float mid = a + (b - a) / 2;
    for (float v : {a, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, kInf)}) {
      x.push_back(v);
      x.push_back(-v);
    }
  }
  for (std::uint32_t u : {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x7F800001u, 0xFFFFFFFFu, 0x7FA5A5A5u, 0x477FF000u,
                          0x477FEFFFu, 0x477FFFFFu, 0x33000000u, 0x33000001u, 0x32FFFFFFu, 0x7F7FFFFFu, 0x00000001u})
    x.push_back(bits_to_float(u));
  std::mt19937 rng(13);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 100000; ++i) x.push_back(bits_to_float(any(rng)));
  const auto n = static_cast<std::int64_t>(x.size());
  std::vector<std::uint8_t> simd(static_cast<std::size_t>(2 * n)), scalar(static_cast<std::size_t>(2 * n));
  k::quantize_f16{}(arch{}, x.data(), simd.data(), n);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint16_t h = qroar::detail::fp32_to_fp16(x[static_cast<std::size_t>(i)]);
    std::memcpy(scalar.data() + 2 * i, &h, 2);
  }
  CHECK(simd == scalar);
}
