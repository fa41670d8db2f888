// Row kernels against their scalar twins: BM_Rmsnorm / BM_RmsnormRef (dim 256), BM_Swiglu / BM_SwigluRef
// (1024 x 704, the FFN hidden state of gutenberg-3m at ctx 1024), BM_Logsumexp / BM_LogsumexpRef (vocab 2048).
// Counters: bytes read + written per second.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <qroar/kernels/logsumexp.hpp>
#include <qroar/kernels/norm.hpp>
#include <qroar/kernels/swiglu.hpp>

namespace {

using arch = xsimd::default_arch;

std::vector<float> random_row(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void bytes(benchmark::State& state, double per_iteration) {
  state.counters["bytes_per_second"] = benchmark::Counter(per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}

template <bool Ref>
void rmsnorm_bench(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = random_row(n, 1), g = random_row(n, 2);
  std::vector<float> y(n);
  for (auto _ : state) {
    if constexpr (Ref) qroar::kernels::rmsnorm_ref(x.data(), g.data(), n, 1e-5f, y.data());
    else qroar::kernels::rmsnorm{}(arch{}, x.data(), g.data(), n, 1e-5f, y.data());
    benchmark::ClobberMemory();
  }
  bytes(state, 12.0 * static_cast<double>(n));
}
void BM_Rmsnorm(benchmark::State& state) { rmsnorm_bench<false>(state); }
void BM_RmsnormRef(benchmark::State& state) { rmsnorm_bench<true>(state); }
BENCHMARK(BM_Rmsnorm)->Arg(256)->Arg(4096);
BENCHMARK(BM_RmsnormRef)->Arg(256)->Arg(4096);

template <bool Ref>
void swiglu_bench(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto a = random_row(n, 3), b = random_row(n, 4);
  std::vector<float> h(n);
  for (auto _ : state) {
    if constexpr (Ref) qroar::kernels::swiglu_ref(a.data(), b.data(), n, h.data());
    else qroar::kernels::swiglu{}(arch{}, a.data(), b.data(), n, h.data());
    benchmark::ClobberMemory();
  }
  bytes(state, 12.0 * static_cast<double>(n));
}
void BM_Swiglu(benchmark::State& state) { swiglu_bench<false>(state); }
void BM_SwigluRef(benchmark::State& state) { swiglu_bench<true>(state); }
BENCHMARK(BM_Swiglu)->Arg(704)->Arg(1024 * 704);
BENCHMARK(BM_SwigluRef)->Arg(704)->Arg(1024 * 704);

template <bool Ref>
void logsumexp_bench(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto x = random_row(n, 5);
  double r = 0.0;
  for (auto _ : state) {
    r += Ref ? qroar::kernels::logsumexp_ref(x.data(), n) : qroar::kernels::logsumexp{}(arch{}, x.data(), n);
    benchmark::ClobberMemory();
  }
  state.counters["result"] = r / static_cast<double>(state.iterations());
  bytes(state, 8.0 * static_cast<double>(n));
}
void BM_Logsumexp(benchmark::State& state) { logsumexp_bench<false>(state); }
void BM_LogsumexpRef(benchmark::State& state) { logsumexp_bench<true>(state); }
BENCHMARK(BM_Logsumexp)->Arg(2048);
BENCHMARK(BM_LogsumexpRef)->Arg(2048);

}  // namespace
