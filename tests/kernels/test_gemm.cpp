// gemm_nt (packed w) against gemm_nt_ref over awkward sizes; splitting rows and panels never changes a result.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <qroar/kernels/gemm.hpp>

#include "kernels_testing.hpp"

namespace {

using qroar_kernels_test::aligned_floats;
using qroar_kernels_test::arch;
using qroar_kernels_test::eps;
using qroar_kernels_test::random_tensor;

// Float dot product of length n: |error| <= gamma_n sum |x_c w_c|, gamma_n ~ n eps (Higham 3.1); both sides round.
constexpr double gemm_bound_factor(Eigen::Index n) { return 2.0 * static_cast<double>(n + 1) * eps; }


}  // namespace

TEST_CASE("gemm_nt matches gemm_nt_ref over awkward sizes") {
  std::mt19937 rng(8);
  constexpr Eigen::Index P = qroar::kernels::gemm_panel_width<arch>();
  const std::vector<Eigen::Index> sizes = {1, 3, 7, 15, 17, 31, 33, 127, 129};
  for (Eigen::Index rows : sizes)
    for (Eigen::Index features : sizes)
      for (Eigen::Index in : {Eigen::Index{1}, Eigen::Index{17}, Eigen::Index{64}, Eigen::Index{129}, Eigen::Index{1023}}) {
        if (rows * features * in > 4'000'000) continue;
        CAPTURE(rows);
        CAPTURE(features);
        CAPTURE(in);
        const qroar::tensor x = random_tensor(rows, in + 2, rng), w = random_tensor(features, in + 1, rng);
        aligned_floats packed(qroar::kernels::packed_weights_size(features, in, P));
        const Eigen::Index panels = (features + P - 1) / P;
        qroar::kernels::pack_weights{}(arch{}, w.data(), w.cols(), features, in, 0, panels, packed.data());
        qroar::tensor out(rows, features + 3), ref(rows, features + 3);
        out.setConstant(-7.0f);
        qroar::kernels::gemm_nt{}(arch{}, x.data(), x.cols(), rows, packed.data(), features, in, 0, panels, out.data(),
                                  out.cols());
        qroar::kernels::gemm_nt_ref(x.data(), x.cols(), rows, w.data(), w.cols(), features, in, ref.data(), ref.cols());
        int bad = 0;
        for (Eigen::Index i = 0; i < rows; ++i) {
          for (Eigen::Index f = 0; f < features; ++f) {
            const double mag = (x.row(i).head(in).cwiseAbs().cwiseProduct(w.row(f).head(in).cwiseAbs())).sum();
            if (!(std::abs(out(i, f) - ref(i, f)) <= gemm_bound_factor(in) * mag)) ++bad;
          }
          for (Eigen::Index f = features; f < features + 3; ++f) bad += out(i, f) != -7.0f;  // nothing written past
        }
        CHECK(bad == 0);
        // the same elements from a split into row blocks and single panels are bitwise equal
        qroar::tensor split(rows, features + 3);
        for (Eigen::Index r0 = 0; r0 < rows; r0 += 5)
          for (Eigen::Index p = 0; p < panels; ++p)
            qroar::kernels::gemm_nt{}(arch{}, x.data() + r0 * x.cols(), x.cols(), std::min<Eigen::Index>(5, rows - r0),
                                      packed.data(), features, in, p, p + 1, split.data() + r0 * split.cols(),
                                      split.cols());
        CHECK(split.leftCols(features) == out.leftCols(features));
      }
}

TEST_CASE("gemm_nt: zero rows give zeros; inf and NaN propagate like the reference") {
  constexpr Eigen::Index P = qroar::kernels::gemm_panel_width<arch>();
  const Eigen::Index rows = 3, features = 5, in = 7;
  qroar::tensor x = qroar::tensor::Zero(rows, in), w = qroar::tensor::Ones(features, in);
  x(0, 0) = -0.0f;
  x(1, 2) = std::numeric_limits<float>::infinity();
  x(2, 3) = std::numeric_limits<float>::quiet_NaN();
  aligned_floats packed(qroar::kernels::packed_weights_size(features, in, P));
  qroar::kernels::pack_weights{}(arch{}, w.data(), in, features, in, 0, 1, packed.data());
  qroar::tensor out(rows, features);
  qroar::kernels::gemm_nt{}(arch{}, x.data(), in, rows, packed.data(), features, in, 0, 1, out.data(), features);
  for (Eigen::Index f = 0; f < features; ++f) {
    CHECK(out(0, f) == 0.0f);
    CHECK(std::isinf(out(1, f)));
    CHECK(std::isnan(out(2, f)));
  }
}
