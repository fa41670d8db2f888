// attention_logits / causal_softmax / attention_weighted_sum against their scalar twins over awkward sizes, fused
// RoPE against qroar::rotate_head followed by plain logits, both pair layouts, partial rotary, attention factor.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <qroar/kernels/attention.hpp>

#include "kernels_testing.hpp"

namespace {

using qroar_kernels_test::aligned_floats;
using qroar_kernels_test::arch;
using qroar_kernels_test::eps;
using qroar_kernels_test::random_tensor;


// Error bound of a float dot product of length n (Higham, Accuracy and Stability, 3.1): gamma_n * sum |a_c b_c|,
// gamma_n ~ n * eps; +4 covers the rotation (two roundings per operand) and the scale.
constexpr float dot_bound_factor(int n) { return static_cast<float>(n + 4) * eps; }
// exp in float is accurate to a few ulp; the float sum of nk kept exps adds up to nk roundings.
constexpr float softmax_rel_tol(Eigen::Index nk) { return static_cast<float>(8 + nk) * eps; }

const std::vector<Eigen::Index> awkward = {1, 3, 7, 15, 17, 31, 33, 127, 129, 1023};


qroar::rope_table make_table(int hd, int rotary, qroar::pair_layout layout, Eigen::Index positions) {
  qroar::rope_dims d;
  d.head_dim = hd;
  d.rotary_dim = rotary;
  d.layout = layout;
  // YaRN x4 so that the attention factor (in the table) differs from 1
  return qroar::rope_table::for_positions(d, qroar::rope_scaling::yarn(4.0, 64), static_cast<int>(positions));
}

}  // namespace

TEST_CASE("attention_logits matches attention_logits_ref over awkward sizes") {
  std::mt19937 rng(1);
  for (int hd : {8, 64, 6}) {
    for (int rope_mode = 0; rope_mode < 3; ++rope_mode) {  // 0: none, 1: interleaved, 2: half-split partial
      for (Eigen::Index m : {Eigen::Index{1}, Eigen::Index{3}, Eigen::Index{17}, Eigen::Index{33}, Eigen::Index{64}}) {
        for (Eigen::Index nk : awkward) {
          CAPTURE(hd);
          CAPTURE(rope_mode);
          CAPTURE(m);
          CAPTURE(nk);
          const qroar::tensor q = random_tensor(m, hd + 3, rng), k = random_tensor(nk, hd + 5, rng);
          const auto layout = rope_mode == 2 ? qroar::pair_layout::half_split : qroar::pair_layout::interleaved;
          const int rotary = rope_mode == 2 ? hd - 2 : hd;
          const auto table = make_table(hd, rotary, layout, nk + m + 7);
          qroar::kernels::rope_rows rope;
          if (rope_mode > 0) rope = {&table, 7 + nk - 1, 3};
          const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
          const Eigen::Index ldt = qroar::kernels::padded_queries(m) + 5;
          aligned_floats s(static_cast<std::size_t>(nk * ldt)), r(s.size());
          aligned_floats work(qroar::kernels::attention_logits_workspace(m, hd));
          qroar::kernels::attention_logits{}(arch{}, q.data(), q.cols(), m, k.data(), k.cols(), nk, hd, scale, rope,
                                             s.data(), ldt, work.data());
          qroar::kernels::attention_logits_ref(q.data(), q.cols(), m, k.data(), k.cols(), nk, hd, scale, rope,
                                               r.data(), ldt, work.data());
          const double factor = rope_mode > 0 ? static_cast<double>(table.cos(0, 0)) : 1.0;  // cos(0) * a = a
          int bad = 0;
          for (Eigen::Index j = 0; j < nk; ++j)
            for (Eigen::Index i = 0; i < m; ++i) {
              // |rope(x)| = a |x|: the bound uses the norms of the inputs, not the rotation under test
              const double bound = dot_bound_factor(hd) * scale * factor * factor * q.row(i).head(hd).norm() *
                                   k.row(j).head(hd).norm();
              if (!(std::abs(s[static_cast<std::size_t>(j * ldt + i)] - r[static_cast<std::size_t>(j * ldt + i)]) <= bound))
                ++bad;
            }
          CHECK(bad == 0);
        }
      }
    }
  }
}

TEST_CASE("fused RoPE equals rotate_head then plain logits, both layouts") {
  std::mt19937 rng(2);
  const int hd = 64;
  for (auto layout : {qroar::pair_layout::interleaved, qroar::pair_layout::half_split}) {
    CAPTURE(qroar::to_string(layout));
    const Eigen::Index m = 33, nk = 129;
    const auto table = make_table(hd, hd, layout, 300);
    qroar::tensor q = random_tensor(m, hd, rng), k = random_tensor(nk, hd, rng);
    const qroar::tensor q0 = q, k0 = k;
    for (Eigen::Index i = 0; i < m; ++i) qroar::rotate_head(q.row(i).data(), table, 200 + i);
    for (Eigen::Index j = 0; j < nk; ++j) qroar::rotate_head(k.row(j).data(), table, 50 + j);
    const Eigen::Index ldt = qroar::kernels::padded_queries(m);
    aligned_floats fused(static_cast<std::size_t>(nk * ldt)), plain(fused.size());
    aligned_floats work(qroar::kernels::attention_logits_workspace(m, hd));
    const qroar::kernels::rope_rows rope{&table, 200, 50};
    qroar::kernels::attention_logits{}(arch{}, q0.data(), hd, m, k0.data(), hd, nk, hd, 0.125f, rope, fused.data(), ldt,
                                       work.data());
    qroar::kernels::attention_logits{}(arch{}, q.data(), hd, m, k.data(), hd, nk, hd, 0.125f, {}, plain.data(), ldt,
                                       work.data());
    const double a = table.cos(0, 0);
    int bad = 0;
    for (Eigen::Index j = 0; j < nk; ++j)
      for (Eigen::Index i = 0; i < m; ++i) {
        const double bound = 2 * dot_bound_factor(hd) * 0.125 * a * a * q0.row(i).norm() * k0.row(j).norm();
        if (!(std::abs(fused[static_cast<std::size_t>(j * ldt + i)] - plain[static_cast<std::size_t>(j * ldt + i)]) <= bound))
          ++bad;
      }
    CHECK(bad == 0);
  }
}

TEST_CASE("causal_softmax matches causal_softmax_ref; masked entries are zero") {
  std::mt19937 rng(3);
  for (Eigen::Index m : {Eigen::Index{1}, Eigen::Index{7}, Eigen::Index{31}, Eigen::Index{33}, Eigen::Index{64}}) {
    for (Eigen::Index visible : awkward) {
      const Eigen::Index nk = visible + m - 1;
      CAPTURE(m);
      CAPTURE(visible);
      const Eigen::Index ldt = qroar::kernels::padded_queries(m);
      const qroar::tensor logits = random_tensor(nk, ldt, rng) * 4.0f;
      aligned_floats s(logits.data(), logits.data() + logits.size()), r = s;
      aligned_floats inv(static_cast<std::size_t>(ldt)), inv_ref(inv.size());
      qroar::kernels::causal_softmax{}(arch{}, s.data(), ldt, nk, m, visible, inv.data());
      qroar::kernels::causal_softmax_ref(r.data(), ldt, nk, m, visible, inv_ref.data());
      int bad = 0, leaked = 0;
      for (Eigen::Index i = 0; i < m; ++i)
        for (Eigen::Index j = 0; j < nk; ++j) {
          const auto at = static_cast<std::size_t>(j * ldt + i);
          const float p = s[at] * inv[static_cast<std::size_t>(i)], pr = r[at] * inv_ref[static_cast<std::size_t>(i)];
          if (j >= visible + i) leaked += s[at] != 0.0f;
          if (!(std::abs(p - pr) <= softmax_rel_tol(nk) * pr + std::numeric_limits<float>::denorm_min())) ++bad;
        }
      CHECK(bad == 0);
      CHECK(leaked == 0);
    }
  }
}

TEST_CASE("causal_softmax: equal logits give uniform weights; +-0 and large magnitudes") {
  const Eigen::Index m = 17, visible = 5, nk = visible + m - 1, ldt = qroar::kernels::padded_queries(m);
  aligned_floats s(static_cast<std::size_t>(nk * ldt), -0.0f), inv(static_cast<std::size_t>(ldt));
  for (std::size_t i = 0; i < s.size(); i += 2) s[i] = 0.0f;
  qroar::kernels::causal_softmax{}(arch{}, s.data(), ldt, nk, m, visible, inv.data());
  for (Eigen::Index i = 0; i < m; ++i) CHECK(inv[static_cast<std::size_t>(i)] == doctest::Approx(1.0 / static_cast<double>(visible + i)));
  // logits far from 0 (a shift does not change a softmax); exp never overflows
  aligned_floats big(static_cast<std::size_t>(nk * ldt), 3.0e4f);
  big[0] = 3.0e4f + 1.0f;
  qroar::kernels::causal_softmax{}(arch{}, big.data(), ldt, nk, m, visible, inv.data());
  CHECK(std::isfinite(inv[0]));
  CHECK(big[0] * inv[0] == doctest::Approx(std::exp(1.0) / (std::exp(1.0) + static_cast<double>(visible - 1))));
}

TEST_CASE("attention_weighted_sum matches attention_weighted_sum_ref over awkward sizes") {
  std::mt19937 rng(4);
  std::uniform_real_distribution<float> ud(0.0f, 1.0f);
  for (int hd : {8, 64, 6, 15}) {
    for (Eigen::Index m : {Eigen::Index{1}, Eigen::Index{3}, Eigen::Index{33}, Eigen::Index{64}}) {
      for (Eigen::Index nk : awkward) {
        CAPTURE(hd);
        CAPTURE(m);
        CAPTURE(nk);
        const Eigen::Index ldt = qroar::kernels::padded_queries(m);
        aligned_floats p(static_cast<std::size_t>(nk * ldt)), inv(static_cast<std::size_t>(ldt));
        for (auto& x : p) x = ud(rng);
        for (auto& x : inv) x = 1.0f / (1.0f + ud(rng) * static_cast<float>(nk));
        const qroar::tensor v = random_tensor(nk, hd + 1, rng);
        qroar::tensor out(m, hd), ref(m, hd);
        aligned_floats work(qroar::kernels::attention_weighted_sum_workspace(m, hd));
        qroar::kernels::attention_weighted_sum{}(arch{}, p.data(), ldt, nk, m, v.data(), v.cols(), hd, inv.data(),
                                                 out.data(), hd, work.data());
        qroar::kernels::attention_weighted_sum_ref(p.data(), ldt, nk, m, v.data(), v.cols(), hd, inv.data(), ref.data(),
                                                   hd);
        int bad = 0;
        for (Eigen::Index i = 0; i < m; ++i)
          for (int c = 0; c < hd; ++c) {
            double mag = 0.0;
            for (Eigen::Index j = 0; j < nk; ++j)
              mag += std::abs(static_cast<double>(p[static_cast<std::size_t>(j * ldt + i)]) * v(j, c));
            const double bound = 2 * static_cast<double>(nk + 2) * eps * inv[static_cast<std::size_t>(i)] * mag;
            if (!(std::abs(out(i, c) - ref(i, c)) <= bound)) ++bad;
          }
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("attention with all-zero queries averages the visible values") {
  const int hd = 64;
  const Eigen::Index m = 7, visible = 3, nk = visible + m - 1, ldt = qroar::kernels::padded_queries(m);
  qroar::tensor q = qroar::tensor::Zero(m, hd), kv(nk, hd);
  for (Eigen::Index j = 0; j < nk; ++j) kv.row(j).setConstant(static_cast<float>(j));
  aligned_floats s(static_cast<std::size_t>(nk * ldt)), inv(static_cast<std::size_t>(ldt));
  aligned_floats w1(qroar::kernels::attention_logits_workspace(m, hd)), w2(qroar::kernels::attention_weighted_sum_workspace(m, hd));
  qroar::tensor out(m, hd);
  qroar::kernels::attention_logits{}(arch{}, q.data(), hd, m, kv.data(), hd, nk, hd, 0.125f, {}, s.data(), ldt, w1.data());
  qroar::kernels::causal_softmax{}(arch{}, s.data(), ldt, nk, m, visible, inv.data());
  qroar::kernels::attention_weighted_sum{}(arch{}, s.data(), ldt, nk, m, kv.data(), hd, hd, inv.data(), out.data(), hd,
                                           w2.data());
  for (Eigen::Index i = 0; i < m; ++i) {
    const double mean = static_cast<double>(visible + i - 1) / 2.0;  // mean of 0 .. visible + i - 1
    CHECK(out(i, 0) == doctest::Approx(mean).epsilon(softmax_rel_tol(nk)));
    CHECK(out(i, hd - 1) == out(i, 0));
  }
}
