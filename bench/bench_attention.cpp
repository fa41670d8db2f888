// Attention kernels of one head (hd 64) for a block of m = 64 queries against nk keys:
//  BM_AttentionLogits          fused RoPE (both operands rotated inside), key-major logits
//  BM_AttentionLogitsRotated   q and k already rotated (what the forward pass calls)
//  BM_RotateThenEigenGemm      the unfused baseline: rotate_head on copies of q and k, then s = q k^T (Eigen)
//  BM_CausalSoftmax, BM_AttentionWeightedSum
// FLOPs count 2 * m * nk * hd per product (the real m, not the padded lanes). Inputs are made outside the loop.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <qroar/kernels/attention.hpp>

namespace {

using arch = xsimd::default_arch;
using aligned_floats = std::vector<float, xsimd::aligned_allocator<float, 64>>;
constexpr int hd = 64;

struct inputs {
  qroar::tensor q, k, v;
  qroar::rope_table table;
  inputs(Eigen::Index m, Eigen::Index nk, qroar::pair_layout layout) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto fill = [&](qroar::tensor& t, Eigen::Index r) {
      t.resize(r, hd);
      for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = nd(rng);
    };
    fill(q, m);
    fill(k, nk);
    fill(v, nk);
    qroar::rope_dims d;
    d.head_dim = hd;
    d.layout = layout;
    table = qroar::rope_table::for_positions(d, qroar::rope_scaling::yarn(4.0, 256), static_cast<int>(nk + m));
  }
};

void set_flops(benchmark::State& state, Eigen::Index m, Eigen::Index nk) {
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(m * nk * hd),
                                               benchmark::Counter::kIsIterationInvariantRate);
}

// Args: m, nk, layout (0 interleaved, 1 half-split)
void BM_AttentionLogits(benchmark::State& state) {
  const Eigen::Index m = state.range(0), nk = state.range(1);
  const inputs in(m, nk, state.range(2) ? qroar::pair_layout::half_split : qroar::pair_layout::interleaved);
  const Eigen::Index ldt = qroar::kernels::padded_queries(m);
  aligned_floats s(static_cast<std::size_t>(nk * ldt)), work(qroar::kernels::attention_logits_workspace(m, hd));
  const qroar::kernels::rope_rows rope{&in.table, nk, 0};
  for (auto _ : state) {
    qroar::kernels::attention_logits{}(arch{}, in.q.data(), hd, m, in.k.data(), hd, nk, hd, 0.125f, rope, s.data(), ldt,
                                       work.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, m, nk);
}
BENCHMARK(BM_AttentionLogits)->ArgsProduct({{64}, {256, 1024, 4096}, {0, 1}});

void BM_AttentionLogitsRotated(benchmark::State& state) {
  const Eigen::Index m = state.range(0), nk = state.range(1);
  const inputs in(m, nk, qroar::pair_layout::interleaved);
  const Eigen::Index ldt = qroar::kernels::padded_queries(m);
  aligned_floats s(static_cast<std::size_t>(nk * ldt)), work(qroar::kernels::attention_logits_workspace(m, hd));
  for (auto _ : state) {
    qroar::kernels::attention_logits{}(arch{}, in.q.data(), hd, m, in.k.data(), hd, nk, hd, 0.125f, {}, s.data(), ldt,
                                       work.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, m, nk);
}
BENCHMARK(BM_AttentionLogitsRotated)->ArgsProduct({{64}, {256, 1024, 4096}});

// The unfused baseline: rotate copies (rotate_head), scale q, then one Eigen GEMM into s (m, nk).
void BM_RotateThenEigenGemm(benchmark::State& state) {
  const Eigen::Index m = state.range(0), nk = state.range(1);
  const inputs in(m, nk, state.range(2) ? qroar::pair_layout::half_split : qroar::pair_layout::interleaved);
  qroar::tensor q(m, hd), k(nk, hd), s(m, nk);
  for (auto _ : state) {
    q = in.q;
    k = in.k;
    for (Eigen::Index i = 0; i < m; ++i) qroar::rotate_head(q.row(i).data(), in.table, nk + i);
    for (Eigen::Index j = 0; j < nk; ++j) qroar::rotate_head(k.row(j).data(), in.table, j);
    q *= 0.125f;
    s.noalias() = q * k.transpose();
    benchmark::ClobberMemory();
  }
  set_flops(state, m, nk);
}
BENCHMARK(BM_RotateThenEigenGemm)->ArgsProduct({{64}, {256, 1024, 4096}, {0, 1}});

// Args: m, visible (nk = visible + m - 1). Bytes: logits read twice and written once.
void BM_CausalSoftmax(benchmark::State& state) {
  const Eigen::Index m = state.range(0), visible = state.range(1), nk = visible + m - 1;
  const Eigen::Index ldt = qroar::kernels::padded_queries(m);
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  aligned_floats logits(static_cast<std::size_t>(nk * ldt)), s(logits.size()), inv(static_cast<std::size_t>(ldt));
  for (auto& x : logits) x = nd(rng);
  for (auto _ : state) {
    state.PauseTiming();
    s = logits;
    state.ResumeTiming();
    qroar::kernels::causal_softmax{}(arch{}, s.data(), ldt, nk, m, visible, inv.data());
    benchmark::ClobberMemory();
  }
  state.counters["bytes_per_second"] = benchmark::Counter(12.0 * static_cast<double>(nk * ldt),
                                                          benchmark::Counter::kIsIterationInvariantRate);
  state.counters["exps_per_second"] = benchmark::Counter(static_cast<double>(nk * ldt),
                                                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CausalSoftmax)->ArgsProduct({{64}, {1024, 4096}});

void BM_AttentionWeightedSum(benchmark::State& state) {
  const Eigen::Index m = state.range(0), nk = state.range(1);
  const inputs in(m, nk, qroar::pair_layout::interleaved);
  const Eigen::Index ldt = qroar::kernels::padded_queries(m);
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  aligned_floats p(static_cast<std::size_t>(nk * ldt)), inv(static_cast<std::size_t>(ldt), 1.0f / static_cast<float>(nk));
  aligned_floats work(qroar::kernels::attention_weighted_sum_workspace(m, hd));
  for (auto& x : p) x = ud(rng);
  qroar::tensor out(m, hd);
  for (auto _ : state) {
    qroar::kernels::attention_weighted_sum{}(arch{}, p.data(), ldt, nk, m, in.v.data(), hd, hd, inv.data(), out.data(),
                                             hd, work.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, m, nk);
}
BENCHMARK(BM_AttentionWeightedSum)->ArgsProduct({{64}, {256, 1024, 4096}});

}  // namespace
