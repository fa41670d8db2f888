// Band scales: symmetric scaling leaves full-precision logits unchanged in both pair layouts and with GQA; the
// query-only variant is a per-band temperature; the JSON file round-trips and is validated.
#include <doctest/doctest.h>

#include <random>

#include <qroar/io/llama2c.hpp>
#include <qroar/model/forward.hpp>
#include <qroar/model/qk_layout.hpp>
#include <qroar/search/scales_json.hpp>

#include "shared_data.hpp"

namespace {

qroar::band_scales random_scales(const qroar::llama_model& m, qroar::scale_variant v, qroar::scale_granularity g,
                                 unsigned seed) {
  const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), m.config.rope_geometry());
  qroar::band_scales s(qroar::bands_equal(std::min(4, static_cast<int>(inv.size())), inv, m.config.original_ctx), v, g,
                       m.config.n_layers, m.config.n_kv_heads);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (int unit = 0; unit < s.units(); ++unit)
    for (int b = 0; b < static_cast<int>(s.bands.size()); ++b) s.set(unit, b, std::exp2(u(rng)), std::exp2(u(rng)));
  return s;
}

}  // namespace

TEST_CASE("symmetric band scales leave full-precision logits unchanged (both layouts, GQA, all granularities)") {
  const auto path = qroar_test::shared_file("data/models/gutenberg-3m/model.bin");
  if (path.empty()) return;
  const auto base = qroar::load_llama2c(path.string());
  const std::vector<int> tokens = {1, 50, 300, 7, 999, 1500, 42, 42, 8, 2000, 17, 3};
  for (auto layout : {qroar::pair_layout::interleaved, qroar::pair_layout::half_split}) {
    auto model = base;
    qroar::convert_pair_layout(model, layout);
    const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), qroar::rope_scaling::yarn(4.0, 256), 12);
    const auto reference = qroar::forward_logits(model, tokens, table);
    for (auto g : {qroar::scale_granularity::global, qroar::scale_granularity::per_layer,
                   qroar::scale_granularity::per_layer_kv_head}) {
      CAPTURE(qroar::to_string(g));
      CAPTURE(qroar::to_string(layout));
      auto scaled = model;
      qroar::apply_band_scales(scaled, random_scales(model, qroar::scale_variant::symmetric, g, 5));
      const auto logits = qroar::forward_logits(scaled, tokens, table);
      // q.k of each pair is multiplied by g * (1/g): exact up to the float rounding of the scaled rows (a few ulp of
      // each product), far below the logit tolerance of the reference tests.
      const float tol = 1e-4f * (1.0f + reference.cwiseAbs().maxCoeff());
      CHECK((logits - reference).cwiseAbs().maxCoeff() <= tol);
      // the weights really changed
      CHECK((scaled.layers[0].wq - model.layers[0].wq).cwiseAbs().maxCoeff() > 1e-3f);
    }
  }
}

TEST_CASE("query-only scales multiply each band's logit contribution by its factor") {
  const auto path = qroar_test::shared_file("data/models/gutenberg-3m/model.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  auto s = random_scales(model, qroar::scale_variant::query_only, qroar::scale_granularity::global, 9);
  // the same factor on every band: all logits scale by g, which a 1/g on W_K undoes exactly
  for (int b = 0; b < 4; ++b) s.set(0, b, 1.5);
  auto scaled = model;
  qroar::apply_band_scales(scaled, s);
  qroar::band_scales undo(s.bands, qroar::scale_variant::independent, qroar::scale_granularity::global, 4, 2);
  for (int b = 0; b < 4; ++b) undo.set(0, b, 1.0, 1.0 / 1.5);
  qroar::apply_band_scales(scaled, undo);
  const std::vector<int> tokens = {1, 10, 20, 30, 40};
  const auto table = qroar::rope_table::for_positions(model.config.rope_geometry(), qroar::rope_scaling::none(), 5);
  const auto a = qroar::forward_logits(model, tokens, table), b = qroar::forward_logits(scaled, tokens, table);
  CHECK((a - b).cwiseAbs().maxCoeff() <= 1e-4f * (1.0f + a.cwiseAbs().maxCoeff()));
  // different factors per band change the function
  auto tempered = model;
  qroar::apply_band_scales(tempered, random_scales(model, qroar::scale_variant::query_only, qroar::scale_granularity::global, 9));
  CHECK((qroar::forward_logits(tempered, tokens, table) - a).cwiseAbs().maxCoeff() > 1e-3f);
}

TEST_CASE("band-scales JSON round-trips and rejects files for other models") {
  const auto path = qroar_test::shared_file("data/models/gutenberg-3m/model.bin");
  if (path.empty()) return;
  const auto model = qroar::load_llama2c(path.string());
  for (auto v : {qroar::scale_variant::symmetric, qroar::scale_variant::query_only, qroar::scale_variant::independent})
    for (auto g : {qroar::scale_granularity::global, qroar::scale_granularity::per_layer,
                   qroar::scale_granularity::per_layer_kv_head}) {
      const auto s = random_scales(model, v, g, 3);
      const auto j = nlohmann::json::parse(qroar::band_scales_to_json(s, model.config).dump());
      const auto back = qroar::band_scales_from_json(j, model.config, "scales.json");
      CHECK(back.query == s.query);
      CHECK(back.key == s.key);
      CHECK(back.variant == s.variant);
      CHECK(back.granularity == s.granularity);
      CHECK(back.bands.size() == s.bands.size());
    }
  const auto good = qroar::band_scales_to_json(
      random_scales(model, qroar::scale_variant::symmetric, qroar::scale_granularity::per_layer, 1), model.config);
  auto other = model.config;
  other.n_layers = 5;
  CHECK_THROWS_AS(qroar::band_scales_from_json(nlohmann::json::parse(good.dump()), other, "s.json"), qroar::invalid_argument);
  auto broken = nlohmann::json::parse(good.dump());
  broken["units"][0]["query"][1] = -1.0;
  CHECK_THROWS_AS(qroar::band_scales_from_json(broken, model.config, "s.json"), qroar::invalid_argument);
  broken = nlohmann::json::parse(good.dump());
  broken["bands"][1]["first_pair"] = 9;
  CHECK_THROWS_AS(qroar::band_scales_from_json(broken, model.config, "s.json"), qroar::invalid_argument);
  broken = nlohmann::json::parse(good.dump());
  broken.erase("units");
  CHECK_THROWS_AS(qroar::band_scales_from_json(broken, model.config, "s.json"), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::band_scales_from_json(nlohmann::json::array(), model.config, "s.json"), qroar::invalid_argument);
}
