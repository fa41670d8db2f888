// The xsimd dequantization kernels against their scalar twins (ggml's reference routines in quant/ggml_blocks.hpp):
// bit for bit, for every block format, over awkward block counts, random codes and awkward fp16 scales.
#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <vector>

#include <qroar/kernels/dequantize.hpp>
#include <qroar/quant/ggml_blocks.hpp>

#include "kernels_testing.hpp"

namespace {

using qroar_kernels_test::arch;

// fp16 scales: zero, negative zero, the smallest subnormal, the largest finite, and random normal values.
std::uint16_t awkward_half(std::mt19937& rng) {
  static constexpr std::uint16_t special[] = {0x0000, 0x8000, 0x0001, 0x7BFF, 0xFBFF, 0x3C00, 0x03FF};
  std::uniform_int_distribution<int> pick(0, 9);
  const int k = pick(rng);
  if (k < 7) return special[k];
  std::uniform_int_distribution<int> exponent(1, 30), mantissa(0, 1023), sign(0, 1);
  return static_cast<std::uint16_t>(sign(rng) << 15 | exponent(rng) << 10 | mantissa(rng));
}

// `blocks` random blocks of Block with random codes and awkward fp16 fields at the given byte offsets.
template <class Block>
std::vector<Block> random_blocks(std::size_t blocks, std::initializer_list<std::size_t> half_offsets, std::mt19937& rng) {
  std::vector<std::uint8_t> bytes(blocks * sizeof(Block));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(byte(rng));
  for (std::size_t i = 0; i < blocks; ++i)
    for (std::size_t off : half_offsets) {
      const std::uint16_t h = awkward_half(rng);
      std::memcpy(bytes.data() + i * sizeof(Block) + off, &h, 2);
    }
  std::vector<Block> out(blocks);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

template <class Block, class Kernel, class Ref>
void check_format(const char* name, std::size_t bytes, std::initializer_list<std::size_t> half_offsets, Kernel kernel,
                  Ref ref) {
  CAPTURE(name);
  REQUIRE(sizeof(Block) == bytes);
  std::mt19937 rng(20261123);
  for (std::size_t blocks : {1, 2, 3, 7, 15, 17, 31, 33}) {
    CAPTURE(blocks);
    const auto x = random_blocks<Block>(blocks, half_offsets, rng);
    const auto n = static_cast<std::int64_t>(blocks) * Block::block_size;
    std::vector<float> simd(static_cast<std::size_t>(n) + 1, -1.0f), scalar(static_cast<std::size_t>(n) + 1, -1.0f);
    kernel(arch{}, reinterpret_cast<const std::uint8_t*>(x.data()), simd.data(), static_cast<std::int64_t>(blocks));
    ref(x.data(), scalar.data(), n);
    CHECK(std::memcmp(simd.data(), scalar.data(), simd.size() * sizeof(float)) == 0);  // incl. the guard float
  }
}

}  // namespace

TEST_CASE("dequantize kernels equal ggml's reference routines bit for bit (every block format)") {
  namespace k = qroar::kernels;
  check_format<qroar::block_q8_0>("q8_0", k::q8_0_bytes, {0}, k::dequantize_q8_0{}, qroar::dequantize_row_q8_0);
  check_format<qroar::block_q4_0>("q4_0", k::q4_0_bytes, {0}, k::dequantize_q4_0{}, qroar::dequantize_row_q4_0);
  check_format<qroar::block_q4_1>("q4_1", k::q4_1_bytes, {0, 2}, k::dequantize_q4_1{}, qroar::dequantize_row_q4_1);
  check_format<qroar::block_q5_0>("q5_0", k::q5_0_bytes, {0}, k::dequantize_q5_0{}, qroar::dequantize_row_q5_0);
  check_format<qroar::block_q5_1>("q5_1", k::q5_1_bytes, {0, 2}, k::dequantize_q5_1{}, qroar::dequantize_row_q5_1);
  check_format<qroar::block_q4_K>("q4_K", k::q4_K_bytes, {0, 2}, k::dequantize_q4_K{}, qroar::dequantize_row_q4_K);
  check_format<qroar::block_q5_K>("q5_K", k::q5_K_bytes, {0, 2}, k::dequantize_q5_K{}, qroar::dequantize_row_q5_K);
  check_format<qroar::block_q6_K>("q6_K", k::q6_K_bytes, {208}, k::dequantize_q6_K{}, qroar::dequantize_row_q6_K);
}

TEST_CASE("bf16 kernel equals the scalar conversion over awkward lengths, NaN and infinity included") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> bits(0, 65535);
  for (std::int64_t n : {1, 3, 7, 15, 16, 17, 31, 33, 127, 1023}) {
    CAPTURE(n);
    std::vector<std::uint16_t> h(static_cast<std::size_t>(n));
    for (auto& v : h) v = static_cast<std::uint16_t>(bits(rng));
    h[0] = 0x7FC1;  // a NaN with payload
    std::vector<float> simd(static_cast<std::size_t>(n)), scalar(static_cast<std::size_t>(n));
    qroar::kernels::dequantize_bf16{}(arch{}, reinterpret_cast<const std::uint8_t*>(h.data()), simd.data(), n);
    for (std::int64_t i = 0; i < n; ++i) scalar[static_cast<std::size_t>(i)] = qroar::detail::bf16_to_fp32(h[static_cast<std::size_t>(i)]);
    CHECK(std::memcmp(simd.data(), scalar.data(), simd.size() * sizeof(float)) == 0);
    // at an odd address (a GGUF with general.alignment 1) the values are the same
    std::vector<std::uint8_t> odd(2 * h.size() + 1);
    std::memcpy(odd.data() + 1, h.data(), 2 * h.size());
    std::vector<float> unaligned(static_cast<std::size_t>(n));
    qroar::kernels::dequantize_bf16{}(arch{}, odd.data() + 1, unaligned.data(), n);
    CHECK(std::memcmp(unaligned.data(), scalar.data(), scalar.size() * sizeof(float)) == 0);
  }
}
