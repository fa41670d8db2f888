// Linear layers of gutenberg-3m at ctx 1024 (rows 1024; in 256 -> out 256/128/704/2048, in 704 -> out 256):
//  BM_GemmNt       kernels::pack_weights + kernels::gemm_nt (packing timed, as in the forward pass)
//  BM_EigenGemm    Eigen: out.noalias() = x * w.transpose()
// Single thread. FLOPs = 2 * rows * out * in.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <qroar/kernels/gemm.hpp>

namespace {

using arch = xsimd::default_arch;

qroar::tensor random_tensor(Eigen::Index rows, Eigen::Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  qroar::tensor t(rows, cols);
  for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = nd(rng);
  return t;
}

void flops(benchmark::State& state) {
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(state.range(0) * state.range(1) * state.range(2)),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

// Args: rows, out, in
void BM_GemmNt(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), out_f = state.range(1), in = state.range(2);
  const qroar::tensor x = random_tensor(rows, in, 1), w = random_tensor(out_f, in, 2);
  constexpr Eigen::Index P = qroar::kernels::gemm_panel_width<arch>();
  std::vector<float, xsimd::aligned_allocator<float, 64>> packed(qroar::kernels::packed_weights_size(out_f, in, P));
  qroar::tensor out(rows, out_f);
  const Eigen::Index panels = (out_f + P - 1) / P;
  for (auto _ : state) {
    qroar::kernels::pack_weights{}(arch{}, w.data(), in, out_f, in, 0, panels, packed.data());
    qroar::kernels::gemm_nt{}(arch{}, x.data(), in, rows, packed.data(), out_f, in, 0, panels, out.data(), out_f);
    benchmark::ClobberMemory();
  }
  flops(state);
}

void BM_EigenGemm(benchmark::State& state) {
  const Eigen::Index rows = state.range(0), out_f = state.range(1), in = state.range(2);
  const qroar::tensor x = random_tensor(rows, in, 1), w = random_tensor(out_f, in, 2);
  qroar::tensor out(rows, out_f);
  for (auto _ : state) {
    out.noalias() = x * w.transpose();
    benchmark::ClobberMemory();
  }
  flops(state);
}

#define QROAR_GEMM_SHAPES Args({1024, 256, 256})->Args({1024, 128, 256})->Args({1024, 704, 256})->Args({1024, 256, 704})->Args({1024, 2048, 256})
BENCHMARK(BM_GemmNt)->QROAR_GEMM_SHAPES;
BENCHMARK(BM_EigenGemm)->QROAR_GEMM_SHAPES;
#undef QROAR_GEMM_SHAPES

}  // namespace
