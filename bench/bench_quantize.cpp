// Quantization kernels (kernels/quantize.hpp) against their scalar twins, on one 4096 x 64 tensor (262,144 values,
// a gutenberg-3m-sized matrix) of Gaussian values:
//  - BM_Quantize<type> / ...Ref: ggml legacy blocks (quantize_row_<type>_ref is the twin);
//  - BM_RtnGroups/<g> / ...Ref: RTN fake quantization in groups of g, without the error sum (as the KV hooks and
//    the final write of a weight group run it) (W4 symmetric; g = 8, 32, 64: rtn:w4:g32 and the
//    per-token KV groups of a head), and BM_RtnClipSearch (21 clip ratios per group of 32);
//  - BM_RtnColumns / ...Ref: per-channel KV groups, 64 positions x 4096 channels;
//  - BM_F16FromFloat / BM_F16ToFloat / ...Ref: binary16 conversions (F16C) against the scalar ones.
// Counters: values per second and bytes (read + written) per second.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include <qroar/kernels/dequantize.hpp>
#include <qroar/kernels/quantize.hpp>
#include <qroar/quant/ggml_blocks.hpp>
#include <qroar/quant/rtn.hpp>

namespace {

using arch = xsimd::default_arch;
namespace k = qroar::kernels;
constexpr std::int64_t values = 4096 * 64;

std::vector<float> gaussian() {
  std::vector<float> x(static_cast<std::size_t>(values));
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : x) v = nd(rng);
  return x;
}

void counters(benchmark::State& state, double bytes) {
  state.counters["values_per_second"] = benchmark::Counter(static_cast<double>(values), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

template <class Block, class Kernel, void (*Ref)(const float*, Block*, std::int64_t) noexcept, bool UseRef>
void ggml(benchmark::State& state) {
  const auto x = gaussian();
  std::vector<Block> y(static_cast<std::size_t>(values / Block::block_size));
  for (auto _ : state) {
    if constexpr (UseRef) Ref(x.data(), y.data(), values);
    else
      Kernel{}(arch{}, x.data(), reinterpret_cast<std::uint8_t*>(y.data()), values / 32,
               [](const float* xb, std::uint8_t* d) { Ref(xb, reinterpret_cast<Block*>(d), 32); });
    benchmark::ClobberMemory();
  }
  counters(state, static_cast<double>(x.size() * sizeof(float) + y.size() * sizeof(Block)));
}

#define QROAR_QUANT_BENCH(NAME, BLOCK, KERNEL, REF)                                             \
  void BM_Quantize##NAME(benchmark::State& s) { ggml<qroar::BLOCK, k::KERNEL, qroar::REF, false>(s); } \
  void BM_Quantize##NAME##Ref(benchmark::State& s) { ggml<qroar::BLOCK, k::KERNEL, qroar::REF, true>(s); } \
  BENCHMARK(BM_Quantize##NAME);                                                                   \
  BENCHMARK(BM_Quantize##NAME##Ref)

QROAR_QUANT_BENCH(Q8_0, block_q8_0, quantize_q8_0, quantize_row_q8_0_ref);
QROAR_QUANT_BENCH(Q4_0, block_q4_0, quantize_q4_0, quantize_row_q4_0_ref);
QROAR_QUANT_BENCH(Q4_1, block_q4_1, quantize_q4_1, quantize_row_q4_1_ref);
QROAR_QUANT_BENCH(Q5_0, block_q5_0, quantize_q5_0, quantize_row_q5_0_ref);
QROAR_QUANT_BENCH(Q5_1, block_q5_1, quantize_q5_1, quantize_row_q5_1_ref);

template <bool UseRef>
void rtn_groups(benchmark::State& state) {
  const auto x = gaussian();
  std::vector<float> y(x.size());
  const int g = static_cast<int>(state.range(0));
  for (auto _ : state) {
    for (std::int64_t i = 0; i < values; i += g) {
      if constexpr (UseRef) (void)k::rtn_group_ref(x.data() + i, y.data() + i, g, 1, 4, true, false);
      else k::rtn_fake_quantize{false}(arch{}, x.data() + i, y.data() + i, g, 4, true, false);
    }
    benchmark::ClobberMemory();
  }
  counters(state, 2.0 * static_cast<double>(x.size() * sizeof(float)));
}
void BM_RtnGroups(benchmark::State& s) { rtn_groups<false>(s); }
void BM_RtnGroupsRef(benchmark::State& s) { rtn_groups<true>(s); }
BENCHMARK(BM_RtnGroups)->Arg(8)->Arg(32)->Arg(64);
BENCHMARK(BM_RtnGroupsRef)->Arg(8)->Arg(32)->Arg(64);

template <bool UseRef>
void rtn_clip_search(benchmark::State& state) {
  const auto x = gaussian();
  for (auto _ : state) {
    double total = 0.0;
    for (std::int64_t i = 0; i < values; i += 32)
      for (int c = 0; c < qroar::rtn_clip_grid_points; ++c) {
        const float clip = 1.0f - 0.5f * static_cast<float>(c) / (qroar::rtn_clip_grid_points - 1);
        total += UseRef ? k::rtn_group_ref(x.data() + i, nullptr, 32, 1, 3, true, false, clip)
                        : k::rtn_fake_quantize{}(arch{}, x.data() + i, nullptr, 32, 3, true, false, clip);
      }
    benchmark::DoNotOptimize(total);
  }
  counters(state, static_cast<double>(qroar::rtn_clip_grid_points) * static_cast<double>(x.size() * sizeof(float)));
}
void BM_RtnClipSearch(benchmark::State& s) { rtn_clip_search<false>(s); }
void BM_RtnClipSearchRef(benchmark::State& s) { rtn_clip_search<true>(s); }
BENCHMARK(BM_RtnClipSearch);
BENCHMARK(BM_RtnClipSearchRef);

template <bool UseRef>
void rtn_columns(benchmark::State& state) {
  const auto x0 = gaussian();
  auto x = x0;
  constexpr int rows = 64, cols = 4096;
  for (auto _ : state) {
    state.PauseTiming();
    x = x0;
    state.ResumeTiming();
    if constexpr (UseRef) {
      for (int c = 0; c < cols; ++c) (void)k::rtn_group_ref(x.data() + c, x.data() + c, rows, cols, 4, true, false);
    } else {
      k::rtn_fake_quantize_columns{}(arch{}, x.data(), rows, cols, cols, 4, true);
    }
    benchmark::ClobberMemory();
  }
  counters(state, 2.0 * static_cast<double>(x.size() * sizeof(float)));
}
void BM_RtnColumns(benchmark::State& s) { rtn_columns<false>(s); }
void BM_RtnColumnsRef(benchmark::State& s) { rtn_columns<true>(s); }
BENCHMARK(BM_RtnColumns);
BENCHMARK(BM_RtnColumnsRef);

}  // namespace

namespace {

// F16 both ways (F16C where the build has it) against the scalar conversions: BM_F16{To,From}Float[Ref].
template <bool UseRef>
void f16_from_float(benchmark::State& state) {
  const auto x = gaussian();
  std::vector<std::uint8_t> y(2 * x.size());
  for (auto _ : state) {
    if constexpr (UseRef) {
      for (std::size_t i = 0; i < x.size(); ++i) {
        const std::uint16_t h = qroar::detail::fp32_to_fp16(x[i]);
        std::memcpy(y.data() + 2 * i, &h, 2);
      }
    } else {
      k::quantize_f16{}(arch{}, x.data(), y.data(), values);
    }
    benchmark::ClobberMemory();
  }
  counters(state, 6.0 * static_cast<double>(x.size()));
}
template <bool UseRef>
void f16_to_float(benchmark::State& state) {
  const auto x = gaussian();
  std::vector<std::uint8_t> h(2 * x.size());
  k::quantize_f16{}(arch{}, x.data(), h.data(), values);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    if constexpr (UseRef) {
      for (std::size_t i = 0; i < y.size(); ++i) {
        std::uint16_t v;
        std::memcpy(&v, h.data() + 2 * i, 2);
        y[i] = qroar::detail::fp16_to_fp32(v);
      }
    } else {
      k::dequantize_f16{}(arch{}, h.data(), y.data(), values);
    }
    benchmark::ClobberMemory();
  }
  counters(state, 6.0 * static_cast<double>(x.size()));
}
void BM_F16FromFloat(benchmark::State& s) { f16_from_float<false>(s); }
void BM_F16FromFloatRef(benchmark::State& s) { f16_from_float<true>(s); }
void BM_F16ToFloat(benchmark::State& s) { f16_to_float<false>(s); }
void BM_F16ToFloatRef(benchmark::State& s) { f16_to_float<true>(s); }
BENCHMARK(BM_F16FromFloat);
BENCHMARK(BM_F16FromFloatRef);
BENCHMARK(BM_F16ToFloat);
BENCHMARK(BM_F16ToFloatRef);

}  // namespace
