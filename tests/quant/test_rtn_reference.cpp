// RTN W4 g32 against ../shared/reference/stories260K_forward.json (independent numpy: every linear weight,
// symmetric, levels -8..7, scale max|w|/7 per group of 32 input columns).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <numeric>

#include <qroar/io/llama2c.hpp>
#include <qroar/model/forward.hpp>
#include <qroar/quant/weights.hpp>

#include "shared_data.hpp"

namespace {
constexpr double reference_mean_nll_rel_tol = 1e-4;  // stated by the reference
constexpr double reference_logit_abs_tol = 1e-3;
}  // namespace

TEST_CASE("rtn:w4:g32:sym reproduces the reference quantized forward passes") {
  const auto ref_path = qroar_test::shared_file("reference/stories260K_forward.json");
  if (ref_path.empty()) return;
  std::ifstream in(ref_path);
  const auto doc = nlohmann::json::parse(in);
  auto model = qroar::load_llama2c(qroar_test::shared_file("data/models/stories260K/stories260K.bin").string());
  const auto spec = qroar::parse_quant_spec("rtn:w4:g32:sym");
  qroar::quantize_weights(model, spec.weights);
  int checked = 0;
  for (const auto& c : doc.at("cases")) {
    if (c.at("weights").get<std::string>() != "rtn_w4g32") continue;
    CAPTURE(c.at("name").get<std::string>());
    qroar::rope_scaling sc;
    sc.type = qroar::rope_type_from_string(c.at("rope_type").get<std::string>());
    sc.factor = c.at("factor").get<double>();
    sc.original_ctx = c.at("original_max_position_embeddings").get<int>();
    const auto tokens = c.at("token_ids").get<std::vector<int>>();
    const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), sc, static_cast<int>(tokens.size()));
    const auto nll = qroar::window_nll(model, tokens, table);
    const double mean = std::accumulate(nll.begin(), nll.end(), 0.0) / static_cast<double>(nll.size());
    CHECK(mean == doctest::Approx(c.at("expected_mean_nll").get<double>()).epsilon(reference_mean_nll_rel_tol));
    const auto logits = qroar::forward_logits(model, std::vector<int>(tokens.begin(), tokens.begin() + 4), table);
    const auto expected = c.at("expected_logits_first4_positions_first16").get<std::vector<std::vector<double>>>();
    for (int t = 0; t < 4; ++t)
      for (int v = 0; v < 16; ++v)
        CHECK(std::abs(logits(t, v) - expected[static_cast<std::size_t>(t)][static_cast<std::size_t>(v)]) <=
              reference_logit_abs_tol);
    ++checked;
  }
  CHECK(checked == 2);
}
