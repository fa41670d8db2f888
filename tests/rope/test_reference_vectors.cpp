// Every case of ../shared/reference/rope_vectors.json (independent float64 transcription of HF
// modeling_rope_utils) is reproduced by qroar::inverse_frequencies and qroar::attention_factor.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

#include <qroar/io/rope_json.hpp>
#include <qroar/rope.hpp>

#include "shared_data.hpp"

namespace {

// Both sides are computed in float64 from the same closed forms; the only differences are the order of
// operations in pow/log (a few ulp each, amplified by at most the exponent size ~ d): 1e-12 relative
// is the reference's own stated float64 tolerance.
constexpr double reference_rel_tol_f64 = 1e-12;

qroar::rope_scaling scaling_from_case(const nlohmann::json& c) {
  qroar::rope_scaling sc;
  sc.type = qroar::rope_type_from_string(c.at("rope_type").get<std::string>());
  sc.original_ctx = c.at("original_max_position_embeddings").get<int>();
  sc.max_position_embeddings = sc.original_ctx;  // the reference uses Lmax = L0 for dynamic (see its `about`)
  if (c.contains("factor")) sc.factor = c["factor"].get<double>();
  if (c.contains("beta_fast")) sc.beta_fast = c["beta_fast"].get<double>();
  if (c.contains("beta_slow")) sc.beta_slow = c["beta_slow"].get<double>();
  if (c.contains("truncate")) sc.truncate = c["truncate"].get<bool>();
  if (c.contains("attention_factor")) sc.attention_factor = c["attention_factor"].get<double>();
  if (c.contains("mscale")) sc.mscale = c["mscale"].get<double>();
  if (c.contains("mscale_all_dim")) sc.mscale_all_dim = c["mscale_all_dim"].get<double>();
  if (c.contains("low_freq_factor")) sc.low_freq_factor = c["low_freq_factor"].get<double>();
  if (c.contains("high_freq_factor")) sc.high_freq_factor = c["high_freq_factor"].get<double>();
  if (c.contains("short_factor")) sc.short_factor = c["short_factor"].get<std::vector<double>>();
  if (c.contains("long_factor")) sc.long_factor = c["long_factor"].get<std::vector<double>>();
  return sc;
}

}  // namespace

TEST_CASE("rope_vectors.json: inverse frequencies and attention factors of every case") {
  const auto path = qroar_test::shared_file("reference/rope_vectors.json");
  if (path.empty()) return;
  std::ifstream in(path);
  const auto doc = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& c : doc.at("cases")) {
    const std::string name = c.at("name").get<std::string>();
    CAPTURE(name);
    const qroar::rope_dims dims{c.at("head_dim").get<int>(), 0, c.at("rope_theta").get<double>(),
                                qroar::pair_layout::half_split};
    const auto sc = scaling_from_case(c);
    const int seq_len = c.contains("seq_len") ? c["seq_len"].get<int>() : 0;
    const auto inv = qroar::inverse_frequencies(sc, dims, seq_len);
    const auto expected = c.at("expected_inv_freq").get<std::vector<double>>();
    REQUIRE(inv.size() == expected.size());
    for (std::size_t j = 0; j < inv.size(); ++j) {
      CAPTURE(j);
      CHECK(inv[j] == doctest::Approx(expected[j]).epsilon(reference_rel_tol_f64));
    }
    CHECK(qroar::attention_factor(sc, dims, seq_len) ==
          doctest::Approx(c.at("expected_attention_factor").get<double>()).epsilon(reference_rel_tol_f64));
    ++checked;
  }
  CHECK(checked == 92);
}

TEST_CASE("parse_hf_rope reads rope_scaling and rope_parameters objects") {
  SUBCASE("yarn with explicit original context") {
    const auto cfg = nlohmann::json::parse(R"({"hidden_size": 256, "num_attention_heads": 4, "rope_theta": 10000,
      "max_position_embeddings": 1024,
      "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256, "beta_fast": 0}})");
    const auto s = qroar::parse_hf_rope(cfg);
    CHECK(s.dims.head_dim == 64);
    CHECK(s.dims.layout == qroar::pair_layout::half_split);
    CHECK(s.scaling.type == qroar::rope_type::yarn);
    CHECK(s.scaling.factor == 4.0);
    CHECK(s.scaling.original_ctx == 256);
    CHECK(s.scaling.beta_fast == 32.0);  // `or` semantics: 0 means the default
    CHECK(s.original_ctx == 256);
  }
  SUBCASE("yarn without factor: Lmax / L0") {
    const auto cfg = nlohmann::json::parse(R"({"head_dim": 128, "max_position_embeddings": 32768,
      "rope_parameters": {"rope_type": "yarn", "rope_theta": 500000, "original_max_position_embeddings": 4096}})");
    const auto s = qroar::parse_hf_rope(cfg);
    CHECK(s.scaling.factor == 8.0);
    CHECK(s.dims.base == 500000.0);
  }
  SUBCASE("llama3") {
    const auto cfg = nlohmann::json::parse(R"({"head_dim": 128, "rope_theta": 500000, "max_position_embeddings": 131072,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}})");
    const auto s = qroar::parse_hf_rope(cfg);
    CHECK(s.scaling.type == qroar::rope_type::llama3);
    CHECK(s.original_ctx == 8192);
  }
  SUBCASE("longrope with top-level original context (Phi-3): factor = Lmax / L0") {
    nlohmann::json cfg = {{"head_dim", 8}, {"max_position_embeddings", 2048}, {"original_max_position_embeddings", 512},
                          {"rope_scaling", {{"type", "longrope"}, {"short_factor", {1, 1, 1, 1}},
                                            {"long_factor", {2, 2, 2, 2}}}}};
    const auto s = qroar::parse_hf_rope(cfg);
    CHECK(s.scaling.factor == 4.0);
    CHECK(s.scaling.original_ctx == 512);
  }
  SUBCASE("errors name the problem") {
    const auto bad_type = nlohmann::json::parse(R"({"head_dim": 8, "rope_scaling": {"type": "bogus", "factor": 2}})");
    CHECK_THROWS_AS(qroar::parse_hf_rope(bad_type), qroar::invalid_argument);
    const auto bad_factor = nlohmann::json::parse(R"({"head_dim": 8, "rope_scaling": {"type": "linear", "factor": -2}})");
    CHECK_THROWS_AS(qroar::parse_hf_rope(bad_factor), qroar::invalid_argument);
    const auto short_list = nlohmann::json::parse(R"({"head_dim": 8, "max_position_embeddings": 64,
      "rope_scaling": {"type": "longrope", "factor": 2, "original_max_position_embeddings": 32,
      "short_factor": [1,1], "long_factor": [1,1,1,1]}})");
    CHECK_THROWS_AS(qroar::parse_hf_rope(short_list), qroar::invalid_argument);
  }
}
