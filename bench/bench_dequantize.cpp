// Dequantization of ggml blocks, xsimd kernels (kernels/dequantize.hpp) against their scalar twins (ggml's reference
// routines, quant/ggml_blocks.hpp): BM_Dequantize<type> / BM_Dequantize<type>Ref over one 4096 x 64 tensor
// (262,144 values: a gutenberg-3m-sized matrix). Counters: values per second and bytes (read + written) per second.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <qroar/kernels/dequantize.hpp>
#include <qroar/quant/ggml_blocks.hpp>

namespace {

using arch = xsimd::default_arch;
constexpr std::int64_t values = 4096 * 64;

// Random codes; every fp16 field at the given offsets set to 1/64 (finite, normal).
template <class Block>
std::vector<Block> blocks(std::initializer_list<std::size_t> half_offsets) {
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(values / Block::block_size) * sizeof(Block));
  std::mt19937 rng(3);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  for (std::size_t i = 0; i < bytes.size(); i += sizeof(Block))
    for (std::size_t off : half_offsets) {
      const std::uint16_t h = 0x2400;  // 2^-6
      std::memcpy(bytes.data() + i + off, &h, 2);
    }
  std::vector<Block> out(bytes.size() / sizeof(Block));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

template <class Block, class Kernel, class Ref, bool UseRef>
void run(benchmark::State& state, std::initializer_list<std::size_t> half_offsets, Ref ref) {
  const auto x = blocks<Block>(half_offsets);
  std::vector<float> y(static_cast<std::size_t>(values));
  for (auto _ : state) {
    if constexpr (UseRef) ref(x.data(), y.data(), values);
    else Kernel{}(arch{}, reinterpret_cast<const std::uint8_t*>(x.data()), y.data(), values / Block::block_size);
    benchmark::ClobberMemory();
  }
  state.counters["values_per_second"] = benchmark::Counter(static_cast<double>(values), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes_per_second"] = benchmark::Counter(
      static_cast<double>(x.size() * sizeof(Block) + y.size() * sizeof(float)), benchmark::Counter::kIsIterationInvariantRate);
}

namespace k = qroar::kernels;
#define QROAR_DEQUANT_BENCH(NAME, BLOCK, KERNEL, REF, ...)                                                    \
  void BM_Dequantize##NAME(benchmark::State& s) { run<qroar::BLOCK, k::KERNEL, decltype(&qroar::REF), false>(s, {__VA_ARGS__}, &qroar::REF); } \
  void BM_Dequantize##NAME##Ref(benchmark::State& s) { run<qroar::BLOCK, k::KERNEL, decltype(&qroar::REF), true>(s, {__VA_ARGS__}, &qroar::REF); } \
  BENCHMARK(BM_Dequantize##NAME);                                                                              \
  BENCHMARK(BM_Dequantize##NAME##Ref)

QROAR_DEQUANT_BENCH(Q8_0, block_q8_0, dequantize_q8_0, dequantize_row_q8_0, 0);
QROAR_DEQUANT_BENCH(Q4_0, block_q4_0, dequantize_q4_0, dequantize_row_q4_0, 0);
QROAR_DEQUANT_BENCH(Q4_1, block_q4_1, dequantize_q4_1, dequantize_row_q4_1, 0, 2);
QROAR_DEQUANT_BENCH(Q5_0, block_q5_0, dequantize_q5_0, dequantize_row_q5_0, 0);
QROAR_DEQUANT_BENCH(Q5_1, block_q5_1, dequantize_q5_1, dequantize_row_q5_1, 0, 2);
QROAR_DEQUANT_BENCH(Q4_K, block_q4_K, dequantize_q4_K, dequantize_row_q4_K, 0, 2);
QROAR_DEQUANT_BENCH(Q5_K, block_q5_K, dequantize_q5_K, dequantize_row_q5_K, 0, 2);
QROAR_DEQUANT_BENCH(Q6_K, block_q6_K, dequantize_q6_K, dequantize_row_q6_K, 208);

}  // namespace
