// Exact identities of RoPE and its scaling schemes (docs/formulas.md §1-2): they hold for any correct
// implementation, so they test ours without trusting it.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include <qroar/rope.hpp>

namespace {

using qroar::pair_layout;
using qroar::rope_dims;
using qroar::rope_scaling;
using qroar::rope_type;

constexpr double eps64 = std::numeric_limits<double>::epsilon();
constexpr float eps32 = std::numeric_limits<float>::epsilon();

// A rotation of a float pair costs 2 products and a sum per component, and the table entries carry
// one float rounding each: a few ulp of the pair norm. Dot products over hd channels add sqrt(hd) ulp.
constexpr float rotation_rel_tol = 8 * eps32;

std::vector<rope_dims> all_geometries() {
  std::vector<rope_dims> out;
  for (auto layout : {pair_layout::interleaved, pair_layout::half_split}) {
    out.push_back({8, 0, 10000.0, layout});
    out.push_back({64, 0, 10000.0, layout});
    out.push_back({128, 0, 500000.0, layout});
    out.push_back({64, 32, 10000.0, layout});  // partial rotary
  }
  return out;
}

std::vector<rope_scaling> all_types_with_factor(double s, int l0, int pairs) {
  std::vector<rope_scaling> v = {rope_scaling::linear(s), rope_scaling::ntk(s), rope_scaling::dynamic(s, l0),
                                 rope_scaling::yarn(s, l0), rope_scaling::yarn_ggml(s, l0),
                                 rope_scaling::llama3(s, l0, 1.0, 4.0)};
  auto lr = rope_scaling::longrope(std::vector<double>(static_cast<std::size_t>(pairs), 1.0),
                                   std::vector<double>(static_cast<std::size_t>(pairs), 1.0), s, l0);
  v.push_back(lr);
  return v;
}

std::vector<float> random_vector(std::mt19937& rng, int n) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

std::vector<float> rotated(std::vector<float> x, const qroar::rope_table& t, Eigen::Index row) {
  qroar::rotate_head(x.data(), t, row);
  return x;
}

}  // namespace

TEST_CASE("factor 1 gives plain RoPE for every scheme") {
  for (const auto& dims : all_geometries()) {
    const auto plain = qroar::inverse_frequencies(rope_scaling::none(), dims);
    for (const auto& sc : all_types_with_factor(1.0, 256, dims.pairs())) {
      CAPTURE(qroar::to_string(sc.type));
      CAPTURE(dims.head_dim);
      // dynamic is plain RoPE only up to Lmax: beyond it HF's rule changes the base even for s = 1.
      const auto inv = qroar::inverse_frequencies(sc, dims, 256);
      for (std::size_t j = 0; j < inv.size(); ++j) CHECK(inv[j] == doctest::Approx(plain[j]).epsilon(4 * eps64));
      const double a = qroar::attention_factor(sc, dims, 256);
      CHECK(a == doctest::Approx(1.0).epsilon(4 * eps64));
    }
  }
  // dynamic at s = 1 beyond Lmax: b' = b * (T / Lmax)^(d/(d-2)) > b
  const rope_dims d64{64, 0, 10000.0, pair_layout::interleaved};
  const auto dyn = qroar::inverse_frequencies(rope_scaling::dynamic(1.0, 256), d64, 1024);
  const double base = 10000.0 * std::pow(4.0, 64.0 / 62.0);
  CHECK(dyn[5] == doctest::Approx(1.0 / std::pow(base, 10.0 / 64.0)).epsilon(16 * eps64));
}

TEST_CASE("linear scaling equals positions divided by the factor") {
  const rope_dims dims{64, 0, 10000.0, pair_layout::half_split};
  const int s = 4;
  const auto inv_lin = qroar::inverse_frequencies(rope_scaling::linear(s), dims);
  const auto inv = qroar::inverse_frequencies(rope_scaling::none(), dims);
  std::vector<int> pos_scaled, pos_plain;
  for (int m = 0; m < 300; m += 7) {
    pos_scaled.push_back(m * s);
    pos_plain.push_back(m);
  }
  const qroar::rope_table lin(dims, inv_lin, 1.0, pos_scaled), plain(dims, inv, 1.0, pos_plain);
  // Same angle up to the double rounding of theta/s (exact for s a power of two) -> identical floats.
  CHECK((lin.cos - plain.cos).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((lin.sin - plain.sin).cwiseAbs().maxCoeff() == 0.0f);
}

TEST_CASE("rotation preserves norms and q_m . k_n depends only on m - n") {
  std::mt19937 rng(7);
  for (const auto& dims : all_geometries()) {
    CAPTURE(dims.head_dim);
    CAPTURE(qroar::to_string(dims.layout));
    const auto inv = qroar::inverse_frequencies(rope_scaling::yarn(4.0, 256), dims);
    std::vector<int> positions(2000);
    for (int i = 0; i < 2000; ++i) positions[static_cast<std::size_t>(i)] = i;
    const qroar::rope_table t(dims, inv, 1.0, positions);
    const auto q = random_vector(rng, dims.head_dim), k = random_vector(rng, dims.head_dim);
    for (int m : {0, 1, 17, 999, 1999}) {
      const auto qm = rotated(q, t, m);
      CHECK(std::sqrt(dot(qm, qm)) == doctest::Approx(std::sqrt(dot(q, q))).epsilon(rotation_rel_tol));
    }
    const float scale = std::sqrt(dot(q, q) * dot(k, k));
    const float tol = rotation_rel_tol * std::sqrt(static_cast<float>(dims.head_dim)) * scale;
    for (int delta : {0, 3, 100, 700}) {
      const float ref = dot(rotated(q, t, delta), rotated(k, t, 0));
      for (int n : {1, 250, 1000, 1299}) CHECK(std::abs(dot(rotated(q, t, n + delta), rotated(k, t, n)) - ref) <= tol);
    }
    // non-rotary channels are untouched
    const auto q5 = rotated(q, t, 5);
    for (int c = dims.rotary(); c < dims.head_dim; ++c) CHECK(q5[static_cast<std::size_t>(c)] == q[static_cast<std::size_t>(c)]);
  }
}

TEST_CASE("interleaved and half-split layouts give identical logits after the row permutation") {
  std::mt19937 rng(11);
  for (int hd : {8, 64, 128}) {
    for (int rot : {hd, hd / 2}) {
      const rope_dims inter{hd, rot, 10000.0, pair_layout::interleaved};
      rope_dims half = inter;
      half.layout = pair_layout::half_split;
      const auto inv = qroar::inverse_frequencies(rope_scaling::ntk(4.0), inter);
      std::vector<int> positions = {0, 5, 300, 4095};
      const qroar::rope_table ti(inter, inv, 1.1, positions), th(half, inv, 1.1, positions);
      const auto q = random_vector(rng, hd), k = random_vector(rng, hd);
      std::vector<float> qh(q.size()), kh(k.size());
      for (int c = 0; c < hd; ++c) {
        const auto dst = static_cast<std::size_t>(qroar::interleaved_to_half_split_channel(c, rot));
        qh[dst] = q[static_cast<std::size_t>(c)];
        kh[dst] = k[static_cast<std::size_t>(c)];
      }
      for (Eigen::Index m = 0; m < 4; ++m)
        for (Eigen::Index n = 0; n <= m; ++n) {
          const auto qi = rotated(q, ti, m), ki = rotated(k, ti, n);
          const auto qhm = rotated(qh, th, m), khn = rotated(kh, th, n);
          // the same products (the compiler may fuse them into FMAs differently per loop): equal up to rounding
          for (int c = 0; c < hd; ++c)
            CHECK(qhm[static_cast<std::size_t>(qroar::interleaved_to_half_split_channel(c, rot))] ==
                  doctest::Approx(qi[static_cast<std::size_t>(c)]).epsilon(rotation_rel_tol).scale(1.0));
          CHECK(dot(qi, ki) == doctest::Approx(dot(qhm, khn)).epsilon(rotation_rel_tol * static_cast<float>(hd)));
        }
    }
  }
}

TEST_CASE("pair rows and GQA mapping") {
  const rope_dims inter{8, 0, 10000.0, pair_layout::interleaved};
  const rope_dims half{8, 0, 10000.0, pair_layout::half_split};
  CHECK(qroar::pair_rows(inter, 2, 3) == std::array<int, 2>{22, 23});
  CHECK(qroar::pair_rows(half, 2, 3) == std::array<int, 2>{19, 23});
  // docs/formulas.md §1.3 check (hd = 8): Meta rows 0..7 land at HF rows 0,4,1,5,2,6,3,7
  const int expected[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int c = 0; c < 8; ++c) CHECK(qroar::interleaved_to_half_split_channel(c, 8) == expected[c]);
  CHECK(qroar::kv_head_of(5, 8, 4) == 2);
  CHECK(qroar::kv_head_of(7, 8, 2) == 1);
  for (int c = 0; c < 8; ++c) {
    const int j = qroar::pair_of_channel(half, c);
    const auto ch = qroar::pair_channels(half, j);
    CHECK((ch[0] == c || ch[1] == c));
  }
  const rope_dims partial{64, 32, 10000.0, pair_layout::half_split};
  CHECK(qroar::pair_of_channel(partial, 40) == -1);
  CHECK(qroar::pair_channels(partial, 3) == std::array<int, 2>{3, 19});
}

TEST_CASE("derived scheme identities") {
  const rope_dims d{128, 0, 10000.0, pair_layout::half_split};
  const auto plain = qroar::inverse_frequencies(rope_scaling::none(), d);
  SUBCASE("ntk keeps pair 0 and turns the last pair into linear interpolation") {
    const auto ntk = qroar::inverse_frequencies(rope_scaling::ntk(8.0), d);
    CHECK(ntk[0] == plain[0]);
    CHECK(ntk[63] == doctest::Approx(plain[63] / 8.0).epsilon(64 * eps64));
  }
  // FORMULAS 2.10 in the name is docs/formulas.md §2.10.
  SUBCASE("yarn: correction ranges of FORMULAS 2.10") {
    struct row { int hd; int ctx; double base; int low; int high; };
    for (const auto& r : {row{128, 4096, 1e4, 20, 46}, row{128, 2048, 1e4, 16, 41}, row{64, 2048, 1e4, 8, 21},
                          row{128, 8192, 5e5, 18, 35}}) {
      const rope_dims dd{r.hd, 0, r.base, pair_layout::half_split};
      const auto p = qroar::inverse_frequencies(rope_scaling::none(), dd);
      const auto y = qroar::inverse_frequencies(rope_scaling::yarn(4.0, r.ctx), dd);
      for (int j = 0; j <= r.low; ++j) CHECK(y[static_cast<std::size_t>(j)] == p[static_cast<std::size_t>(j)]);
      for (int j = r.high; j < dd.pairs(); ++j)
        CHECK(y[static_cast<std::size_t>(j)] == doctest::Approx(p[static_cast<std::size_t>(j)] / 4.0).epsilon(4 * eps64));
      for (int j = r.low + 1; j < r.high; ++j) {
        const auto u = static_cast<std::size_t>(j);
        CHECK(y[u] < p[u]);
        CHECK(y[u] > p[u] / 4.0);
      }
    }
  }
  SUBCASE("yarn default attention factors 0.1 ln s + 1") {
    const double expected[] = {1.069315, 1.138629, 1.207944, 1.277259, 1.346574};
    double s = 2;
    for (double e : expected) {
      CHECK(qroar::attention_factor(rope_scaling::yarn(s, 4096), d) == doctest::Approx(e).epsilon(1e-6));
      s *= 2;
    }
  }
  SUBCASE("yarn-ggml with ext_factor 1 equals HF yarn with truncation; ext_factor 0 equals linear") {
    for (double s : {2.0, 4.0, 8.0}) {
      auto g = rope_scaling::yarn_ggml(s, 4096);
      const auto hf = qroar::inverse_frequencies(rope_scaling::yarn(s, 4096), d);
      const auto gg = qroar::inverse_frequencies(g, d);
      for (std::size_t j = 0; j < hf.size(); ++j) CHECK(gg[j] == doctest::Approx(hf[j]).epsilon(8 * eps64));
      CHECK(qroar::attention_factor(g, d) == doctest::Approx(qroar::attention_factor(rope_scaling::yarn(s, 4096), d)));
      g.ext_factor = 0.0;
      const auto lin = qroar::inverse_frequencies(rope_scaling::linear(s), d);
      const auto g0 = qroar::inverse_frequencies(g, d);
      for (std::size_t j = 0; j < lin.size(); ++j) CHECK(g0[j] == doctest::Approx(lin[j]).epsilon(4 * eps64));
      CHECK(qroar::attention_factor(g, d) == 1.0);
    }
  }
  SUBCASE("llama3 worked example: b 500000, d 128, L0 8192, factors 8/1/4") {
    const rope_dims d3{128, 0, 500000.0, pair_layout::half_split};
    const auto p = qroar::inverse_frequencies(rope_scaling::none(), d3);
    const auto l3 = qroar::inverse_frequencies(rope_scaling::llama3(8.0, 8192, 1.0, 4.0), d3);
    for (int j = 0; j <= 28; ++j) CHECK(l3[static_cast<std::size_t>(j)] == p[static_cast<std::size_t>(j)]);
    for (int j = 29; j <= 34; ++j) {
      const auto u = static_cast<std::size_t>(j);
      CHECK(l3[u] < p[u]);
      CHECK(l3[u] > p[u] / 8.0);
    }
    for (int j = 35; j < 64; ++j) CHECK(l3[static_cast<std::size_t>(j)] == p[static_cast<std::size_t>(j)] / 8.0);
  }
  SUBCASE("longrope picks the long factors beyond the original context") {
    std::vector<double> sf(64, 1.0), lf(64, 2.0);
    const auto sc = rope_scaling::longrope(sf, lf, 4.0, 4096);
    const auto short_inv = qroar::inverse_frequencies(sc, d, 4096);
    const auto long_inv = qroar::inverse_frequencies(sc, d, 4097);
    CHECK(short_inv[10] == plain[10]);
    CHECK(long_inv[10] == plain[10] / 2.0);
    CHECK(qroar::attention_factor(sc, d) == doctest::Approx(std::sqrt(1.0 + std::log(4.0) / std::log(4096.0))));
  }
}

TEST_CASE("invalid scaling parameters are rejected with invalid_argument") {
  const rope_dims d{64, 0, 10000.0, pair_layout::half_split};
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::linear(0.0), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::linear(-1.0), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::linear(std::nan("")), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::yarn(4.0, 0), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::llama3(8.0, 8192, 4.0, 1.0), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::longrope({1.0}, {1.0}, 2.0, 256), d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::none(), rope_dims{7, 0, 1e4, pair_layout::interleaved}),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::inverse_frequencies(rope_scaling::none(), rope_dims{8, 10, 1e4, pair_layout::interleaved}),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::rope_type_from_string("ntk-by-parts"), qroar::invalid_argument);
}

TEST_CASE("band partitions cover every pair exactly once") {
  for (const auto& dims : all_geometries()) {
    const auto inv = qroar::inverse_frequencies(rope_scaling::none(), dims);
    std::vector<qroar::band_partition> parts;
    for (int ctx : {16, 256, 4096, 1 << 20}) parts.push_back(qroar::bands_by_wavelength(inv, ctx));
    for (int n = 1; n <= dims.pairs(); n += (n < 5 ? 1 : 7)) parts.push_back(qroar::bands_equal(n, inv, 256));
    parts.push_back(qroar::bands_from_spec("edges:0,1,3", inv, 256));
    for (const auto& p : parts) {
      std::vector<int> seen(static_cast<std::size_t>(dims.pairs()), 0);
      for (const auto& b : p.bands)
        for (int j = b.first_pair; j <= b.last_pair; ++j) ++seen[static_cast<std::size_t>(j)];
      for (int c : seen) CHECK(c == 1);
      for (int j = 0; j < dims.pairs(); ++j) CHECK(p.bands[static_cast<std::size_t>(p.band_of(j))].contains(j));
      for (const auto& b : p.bands) CHECK(b.min_wavelength <= b.max_wavelength);
    }
  }
}

TEST_CASE("bands by wavelength follow the YaRN rotation thresholds") {
  // stories260K: hd 8, L0 512: rotations r_j = 512 * 10000^(-j/4) / 2pi = 81.5, 8.15, 0.815, 0.0815
  const rope_dims d8{8, 0, 10000.0, pair_layout::interleaved};
  const auto p8 = qroar::bands_by_wavelength(qroar::inverse_frequencies(rope_scaling::none(), d8), 512);
  REQUIRE(p8.size() == 3);
  CHECK(p8[0].name == "high");
  CHECK(p8[0].last_pair == 0);
  CHECK(p8[1].name == "transition");
  CHECK(p8[1].first_pair == 1);
  CHECK(p8[1].last_pair == 1);
  CHECK(p8[2].first_pair == 2);
  CHECK(p8[2].last_pair == 3);
  CHECK(p8[0].max_rotations == doctest::Approx(512.0 / (2 * M_PI)));
  // d = 128, b = 1e4, L0 = 4096 (docs/formulas.md §2.10 and §6.4 A): 0-20 / 21-45 / 46-63
  const rope_dims d128{128, 0, 10000.0, pair_layout::half_split};
  const auto p = qroar::bands_by_wavelength(qroar::inverse_frequencies(rope_scaling::none(), d128), 4096);
  REQUIRE(p.size() == 3);
  CHECK(p[0].last_pair == 20);
  CHECK(p[1].last_pair == 45);
  CHECK(p[2].first_pair == 46);
  SUBCASE("bad specs") {
    const auto inv = qroar::inverse_frequencies(rope_scaling::none(), d8);
    CHECK_THROWS_AS(qroar::bands_from_spec("equal:5", inv, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(qroar::bands_from_spec("equal:x", inv, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(qroar::bands_from_spec("edges:1,2", inv, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(qroar::bands_from_spec("edges:0,2,2", inv, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(qroar::bands_from_spec("edges:0,9", inv, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(qroar::bands_from_spec("octaves", inv, 512), qroar::invalid_argument);
  }
}
