// End-to-end perplexity evaluation (the work of `qroar eval`): gutenberg-3m, held-out Frankenstein token ids,
// non-overlapping windows of ctx tokens. Counter tokens_per_second = windows * ctx / wall time.
// Run: ./build/bench/bench_eval --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <qroar/io/llama2c.hpp>
#include <qroar/model/perplexity.hpp>

namespace {

const std::string shared_dir = QROAR_SHARED_DIR;

const qroar::llama_model& model() {
  static const qroar::llama_model m = qroar::load_llama2c(shared_dir + "/data/models/gutenberg-3m/model.bin");
  return m;
}

const std::vector<int>& stream() {
  static const std::vector<int> s = [] {
    std::ifstream in(shared_dir + "/reference/windows/g3m_frankenstein_16k.txt");
    return std::vector<int>(std::istream_iterator<int>(in), std::istream_iterator<int>());
  }();
  return s;
}

// Args: ctx, threads.
void BM_Eval(benchmark::State& state) {
  const auto& m = model();
  const auto& s = stream();
  qroar::perplexity_options o;
  o.ctx = static_cast<int>(state.range(0));
  o.threads = static_cast<int>(state.range(1));
  double mean_nll = 0.0;
  long long tokens = 0;
  for (auto _ : state) {
    const auto r = qroar::evaluate_perplexity(m, s, o);
    mean_nll = r.mean_nll;
    tokens += static_cast<long long>(r.windows) * o.ctx;
  }
  state.counters["tokens_per_second"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["mean_nll"] = mean_nll;
}
BENCHMARK(BM_Eval)->Args({1024, 2})->Args({4096, 2})->Args({1024, 1})->Unit(benchmark::kMillisecond)->UseRealTime()
    ->MinTime(2.0);

}  // namespace
