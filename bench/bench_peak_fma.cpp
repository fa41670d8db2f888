// The machine's FMA peak: independent chains of xsimd::fma on registers (no memory traffic), enough chains to
// cover FMA latency x FMA ports. FLOPs = 2 * lanes * chains * steps per iteration. With ->Threads(2) the counter
// is the sum over both threads (the whole-machine peak). docs/performance.md compares kernels with this figure.
#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

namespace {

using arch = xsimd::default_arch;
using batch = xsimd::batch<float, arch>;
constexpr int chains = 16;  // >= 4-cycle latency x 2 FMA pipes x 2 for slack
constexpr int steps = 1024;

volatile float sink;

void BM_PeakFma(benchmark::State& state) {
  volatile float seed_a = 1.0000001f, seed_b = 0.9999999f;
  const batch a(seed_a), b(seed_b);
  batch acc[chains];
  for (int c = 0; c < chains; ++c) acc[c] = batch(static_cast<float>(c));
  for (auto _ : state) {
    for (int s = 0; s < steps; ++s)
      for (int c = 0; c < chains; ++c) acc[c] = xsimd::fma(acc[c], a, b);
  }
  batch total(0.0f);
  for (int c = 0; c < chains; ++c) total += acc[c];
  sink = xsimd::hadd(total);
  state.counters["FLOPS"] = benchmark::Counter(2.0 * batch::size * chains * steps,
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.counters["lanes"] = static_cast<double>(batch::size);
}
BENCHMARK(BM_PeakFma);                               // one core, FLOPS per CPU second
BENCHMARK(BM_PeakFma)->Threads(2)->UseRealTime();  // both cores, wall clock (sensitive to other load)

}  // namespace
