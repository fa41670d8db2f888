// rmsnorm, swiglu and logsumexp against their scalar twins over awkward sizes; zeros, signed zeros, inf and NaN.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <qroar/kernels/logsumexp.hpp>
#include <qroar/kernels/norm.hpp>
#include <qroar/kernels/swiglu.hpp>

#include "kernels_testing.hpp"

namespace {

using qroar_kernels_test::aligned_floats;
using qroar_kernels_test::arch;
using qroar_kernels_test::eps;
using qroar_kernels_test::random_tensor;

constexpr float inf = std::numeric_limits<float>::infinity();
const std::vector<std::size_t> awkward_lengths = {1, 3, 7, 15, 17, 31, 33, 127, 129, 1023};

// rmsnorm: the SIMD sum of squares in float lanes differs from the double sum by <= n eps relative; the inverse
// square root halves that; the product x * inv * g adds two roundings.
constexpr float rmsnorm_rel_tol(std::size_t n) { return (static_cast<float>(n) / 2 + 4) * eps; }
// swiglu: xsimd::exp vs std::exp (a few ulp), then a division and a product.
constexpr float swiglu_rel_tol = 8 * eps;
// logsumexp: float exps (a few ulp) and float partial sums of up to 1024 / lanes terms, relative to the result.
constexpr double logsumexp_abs_tol(std::size_t n) { return (8.0 + static_cast<double>(n)) * eps; }

std::vector<float> random_row(std::size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

}  // namespace

TEST_CASE("rmsnorm matches rmsnorm_ref over awkward sizes") {
  std::mt19937 rng(5);
  for (std::size_t n : awkward_lengths) {
    CAPTURE(n);
    const auto x = random_row(n, rng), g = random_row(n, rng);
    std::vector<float> y(n), r(n);
    qroar::kernels::rmsnorm{}(arch{}, x.data(), g.data(), n, 1e-5f, y.data());
    qroar::kernels::rmsnorm_ref(x.data(), g.data(), n, 1e-5f, r.data());
    for (std::size_t i = 0; i < n; ++i) CHECK(std::abs(y[i] - r[i]) <= rmsnorm_rel_tol(n) * std::abs(r[i]));
    // in place
    std::vector<float> z = x;
    qroar::kernels::rmsnorm{}(arch{}, z.data(), g.data(), n, 1e-5f, z.data());
    CHECK(z == y);
  }
}

TEST_CASE("rmsnorm: all-zero and signed-zero rows stay zero; NaN and inf propagate") {
  for (std::size_t n : {std::size_t{17}, std::size_t{64}}) {
    std::vector<float> x(n, 0.0f), g(n, 1.0f), y(n, 1.0f);
    for (std::size_t i = 0; i < n; i += 2) x[i] = -0.0f;
    qroar::kernels::rmsnorm{}(arch{}, x.data(), g.data(), n, 1e-5f, y.data());
    for (float v : y) CHECK(v == 0.0f);
    x[n - 1] = std::numeric_limits<float>::quiet_NaN();
    qroar::kernels::rmsnorm{}(arch{}, x.data(), g.data(), n, 1e-5f, y.data());
    CHECK(std::isnan(y[0]));
    x[n - 1] = inf;
    qroar::kernels::rmsnorm{}(arch{}, x.data(), g.data(), n, 1e-5f, y.data());
    CHECK(std::isnan(y[n - 1]));  // inf / inf
    CHECK(y[0] == 0.0f);          // 0 * (1 / inf)
  }
}

TEST_CASE("swiglu matches swiglu_ref over awkward sizes and special values") {
  std::mt19937 rng(6);
  for (std::size_t n : awkward_lengths) {
    CAPTURE(n);
    auto a = random_row(n, rng, 4.0f);
    const auto b = random_row(n, rng);
    if (n >= 7) {
      a[0] = 0.0f;
      a[1] = -0.0f;
      a[2] = inf;
      a[3] = -inf;
      a[4] = 100.0f;
      a[5] = -100.0f;
    }
    std::vector<float> h(n), r(n);
    qroar::kernels::swiglu{}(arch{}, a.data(), b.data(), n, h.data());
    qroar::kernels::swiglu_ref(a.data(), b.data(), n, r.data());
    for (std::size_t i = 0; i < n; ++i) {
      CAPTURE(i);
      if (std::isnan(r[i])) {
        CHECK(std::isnan(h[i]));
      } else if (std::isinf(r[i])) {
        CHECK(h[i] == r[i]);
      } else {
        CHECK(std::abs(h[i] - r[i]) <= swiglu_rel_tol * std::abs(r[i]));
      }
    }
  }
}

TEST_CASE("logsumexp matches logsumexp_ref over awkward sizes") {
  std::mt19937 rng(7);
  for (std::size_t n : awkward_lengths) {
    CAPTURE(n);
    const auto x = random_row(n, rng, 5.0f);
    const double got = qroar::kernels::logsumexp{}(arch{}, x.data(), n);
    const double want = qroar::kernels::logsumexp_ref(x.data(), n);
    CHECK(std::abs(got - want) <= logsumexp_abs_tol(n) * std::max(1.0, std::abs(want)));
  }
  // all equal: log n + x
  std::vector<float> same(129, -7.0f);
  CHECK(qroar::kernels::logsumexp{}(arch{}, same.data(), same.size()) ==
        doctest::Approx(std::log(129.0) - 7.0).epsilon(logsumexp_abs_tol(129)));
  // one +inf dominates
  same[64] = inf;
  CHECK(std::isnan(qroar::kernels::logsumexp{}(arch{}, same.data(), same.size())) ==
        std::isnan(qroar::kernels::logsumexp_ref(same.data(), same.size())));
}
