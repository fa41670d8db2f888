// Denormals (issue 21, item 10): every compute thread runs with flush-to-zero / denormals-are-zero
// (qroar/detail/denormals.hpp), so denormal weights cost no microcode assists and act exactly as zeros. The timing
// (gutenberg-3m with denormal weights) is measured by hand in docs/performance.md; here: the mode is set in the
// pool's helpers and in the opening thread for the computation, restored after, and a model with denormal
// weights evaluates bit for bit like the same model flushed to zero up front.
#include <doctest/doctest.h>

#include <qroar/detail/denormals.hpp>
#include <qroar/detail/parallel.hpp>
#include <qroar/model/perplexity.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "../io/model_io_testing.hpp"

namespace {

// A product with a denormal input: 0 under DAZ, the denormal itself otherwise.
float denormal_times_one() {
  volatile float tiny = std::numeric_limits<float>::denorm_min() * 1024.0f;
  volatile float one = 1.0f;
  return tiny * one;
}

template <class Fn>
void for_each_weight(qroar::llama_model& m, Fn&& fn) {
  for (auto& l : m.layers)
    for (auto* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) fn(*t);
}

}  // namespace

TEST_CASE("denormals: flushed in every task of a computation, restored in the caller after it") {
  REQUIRE_FALSE(qroar::detail::denormals_flushed());  // the test process starts in the IEEE default mode
  REQUIRE(denormal_times_one() != 0.0f);
  for (const int threads : {1, 2, 4}) {
    CAPTURE(threads);
    std::vector<int> flushed(64, 0);
    std::vector<float> products(64, 1.0f);
    qroar::detail::parallel_for(64, threads, [&](int i) {
      flushed[static_cast<std::size_t>(i)] = qroar::detail::denormals_flushed() ? 1 : 0;
      products[static_cast<std::size_t>(i)] = denormal_times_one();
    });
    for (std::size_t i = 0; i < flushed.size(); ++i) {
      CHECK(flushed[i] == 1);
      CHECK(products[i] == 0.0f);
    }
    CHECK_FALSE(qroar::detail::denormals_flushed());  // the caller's own mode is back
    CHECK(denormal_times_one() != 0.0f);
  }
}

TEST_CASE("denormals: a model with denormal weights evaluates exactly like the model flushed up front") {
  // W_O and W_2 scaled into the denormal range (2^-140), the rest normal
  qroar::llama_model den = qroar_io_test::tiny_model(true, 7);
  den.config.original_ctx = 32;
  for (auto& l : den.layers) {
    l.wo *= std::ldexp(1.0f, -140);
    l.w2 *= std::ldexp(1.0f, -140);
  }
  qroar::llama_model flushed = den;
  int denormal_count = 0;
  for_each_weight(flushed, [&](qroar::tensor& t) {
    for (Eigen::Index i = 0; i < t.size(); ++i)
      if (std::fpclassify(t.data()[i]) == FP_SUBNORMAL) t.data()[i] = 0.0f, ++denormal_count;
  });
  REQUIRE(denormal_count > 0);
  std::vector<int> stream;
  for (int i = 0; i < 64; ++i) stream.push_back((i * 7 + 3) % den.config.vocab_size);
  qroar::perplexity_options o;
  o.ctx = 32;
  o.threads = 2;
  const auto a = qroar::evaluate_perplexity(den, stream, o);
  const auto b = qroar::evaluate_perplexity(flushed, stream, o);
  CHECK(a.windows == 2);
  CHECK(a.mean_nll == b.mean_nll);  // bit for bit: a denormal weight reads as 0
  REQUIRE(a.per_position.size() == b.per_position.size());
  for (std::size_t k = 0; k < a.per_position.size(); ++k) CHECK(a.per_position[k].mean_nll == b.per_position[k].mean_nll);
  CHECK_FALSE(qroar::detail::denormals_flushed());
}
