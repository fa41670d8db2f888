// qroar diagnose: Interpolation Pressure, Tail Inflation Ratios, logit error against distance, attention-output
// error and the equivariance report, for the full-precision and the quantized model under a RoPE interpolation.
#include "cli_model.hpp"
#include "cli_report.hpp"

#include <iostream>

#include <qroar/diag/diagnostics.hpp>

namespace {

struct diagnose_options {
  qroar_cli::model_options model;
  int query_samples = 64;
  double quantile = 0.999, epsilon = 0.05;
  bool loss_pressure = false;
  std::string report;
  CLI::Option* epsilon_opt = nullptr;
};

nlohmann::ordered_json matrix_json(const qroar::band_diagnostics& d, const std::vector<double>& v) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int l = 0; l < d.n_layers; ++l) {
    nlohmann::ordered_json row = nlohmann::ordered_json::array();
    for (int b = 0; b < d.n_bands; ++b) {
      const double x = d.at(v, l, b);
      row.push_back(std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr));
    }
    rows.push_back(row);
  }
  return rows;
}

nlohmann::ordered_json diagnostics_json(const qroar::band_diagnostics& d) {
  return {{"interpolation_pressure", matrix_json(d, d.interpolation_pressure)},
          {"tir_q_p999", matrix_json(d, d.tir_q_quantile)},
          {"tir_q_max", matrix_json(d, d.tir_q_max)},
          {"tir_k_p999", matrix_json(d, d.tir_k_quantile)},
          {"tir_k_max", matrix_json(d, d.tir_k_max)},
          {"tir_logit_p999", matrix_json(d, d.tir_logit_quantile)},
          {"tir_logit_max", matrix_json(d, d.tir_logit_max)}};
}

int run_diagnose(const diagnose_options& o) {
  o.model.check_flags("diagnose");
  o.model.refuse("diagnose", {"--bucket"},
                 "diagnose buckets the logit error by distance in powers of two (--bucket is eval's perplexity bucket)");
  if (o.epsilon_opt->count() > 0 && !o.loss_pressure)
    throw qroar_cli::usage_error("--epsilon needs --loss-pressure (it is the phase perturbation of the loss-based pressure)");
  qroar_cli::declare_inputs(o.model.input_paths());
  qroar_cli::prepare_report_folder(o.report);
  const auto fp = o.model.load_model();
  const auto scaling = o.model.scaling(fp);
  const auto stream = o.model.token_stream(fp, /*prefix_only=*/true, /*stride=*/o.model.ctx);  // its windows only
  const int ctx = o.model.ctx, l0 = fp.config.original_ctx;
  if (ctx <= l0) throw qroar_cli::usage_error("--ctx must exceed the trained context (" + std::to_string(l0) + ") to compare long with short");
  if (static_cast<int>(stream.size()) < ctx) throw qroar_cli::usage_error("the text has fewer tokens than --ctx");
  std::vector<std::vector<int>> windows;
  const int max_windows = o.model.max_windows > 0 ? o.model.max_windows : 1;
  const auto step = static_cast<std::size_t>(o.model.stride > 0 ? o.model.stride : ctx);  // --stride, default ctx
  for (std::size_t s = 0; s + static_cast<std::size_t>(ctx) <= stream.size() && static_cast<int>(windows.size()) < max_windows;
       s += step)
    windows.emplace_back(stream.begin() + static_cast<long>(s), stream.begin() + static_cast<long>(s) + ctx);
  const auto spec = o.model.quant_spec();
  const auto bands = o.model.band_partition(fp);
  auto quantized = fp;
  const auto hooks = o.model.quantize(quantized, spec);
  const auto table = qroar::rope_table::for_positions(fp.config.rope_geometry(), scaling, ctx);
  const auto inv = qroar::inverse_frequencies(scaling, fp.config.rope_geometry(), ctx);
  qroar::diagnostics_options dopt;
  dopt.original_ctx = l0;
  dopt.query_samples = o.query_samples;
  dopt.quantile = o.quantile;
  dopt.threads = o.model.threads;
  // first window: band diagnostics and error profiles
  const auto cap_fp = qroar::capture_attention(fp, windows.front(), table, nullptr, o.model.threads);
  const auto cap_q = qroar::capture_attention(quantized, windows.front(), table, &hooks, o.model.threads);
  const auto d_fp = qroar::compute_band_diagnostics(fp.config, cap_fp, bands, inv, dopt);
  const auto d_q = qroar::compute_band_diagnostics(fp.config, cap_q, bands, inv, dopt);
  const auto err = qroar::compare_captures(fp.config, cap_fp, cap_q, dopt);
  const auto eq = qroar::is_row_scale_equivariant(spec, bands, fp.config.rope_geometry());
  std::vector<double> loss_ip;
  if (o.loss_pressure)
    loss_ip = qroar::loss_interpolation_pressure(quantized, windows, scaling, bands, &hooks, o.epsilon, o.model.threads);
  if (!o.report.empty()) {  // --report DIR: heatmaps, logit error against distance, JSON
    const std::string q = spec.text.empty() ? "none" : spec.text;
    // each pair (full precision, quantized) on one colour range, so that equal colours are equal values
    const auto ip_range = qroar_cli::colour_range_of({&d_fp.interpolation_pressure, &d_q.interpolation_pressure});
    const auto tir_range = qroar_cli::colour_range_of({&d_fp.tir_logit_quantile, &d_q.tir_logit_quantile});
    qroar_cli::write_plot(o.report, "interpolation_pressure_fp", qroar_cli::band_heatmap(d_fp, d_fp.interpolation_pressure, bands,
        "Which bands does the interpolation press? Interpolation Pressure (full precision)", "logit Interpolation Pressure", ip_range));
    qroar_cli::write_plot(o.report, "interpolation_pressure_quantized", qroar_cli::band_heatmap(d_q, d_q.interpolation_pressure, bands,
        "Which bands does the interpolation press? Interpolation Pressure (" + q + ")", "logit Interpolation Pressure", ip_range));
    qroar_cli::write_plot(o.report, "tail_inflation_ratio_fp", qroar_cli::band_heatmap(d_fp, d_fp.tir_logit_quantile, bands,
        "Where do band logit tails grow? Tail Inflation Ratio, p99.9 (full precision)", "Tail Inflation Ratio (long / short)", tir_range));
    qroar_cli::write_plot(o.report, "tail_inflation_ratio_quantized", qroar_cli::band_heatmap(d_q, d_q.tir_logit_quantile, bands,
        "Where do band logit tails grow? Tail Inflation Ratio, p99.9 (" + q + ")", "Tail Inflation Ratio (long / short)", tir_range));
    qroar_cli::write_plot(o.report, "logit_error_vs_distance", qroar_cli::logit_error_plot({{"", err}},
        "How does the quantized logit error grow with distance? (" + q + ")", /*per_layer=*/true));
    qroar_cli::write_report_json(o.report, {{"ctx", ctx}, {"original_ctx", l0}, {"quant", q},
                                            {"full_precision", diagnostics_json(d_fp)}, {"quantized", diagnostics_json(d_q)},
                                            {"attention_output_error", err.attention_error}});
  }
  if (o.model.json) {
    nlohmann::ordered_json j;
    j["ctx"] = ctx;
    j["original_ctx"] = l0;
    j["windows"] = windows.size();  // with --loss-pressure; the band diagnostics and error profiles use the first
    j["rope"] = {{"type", qroar::to_string(scaling.type)}, {"factor", scaling.factor}};
    j["quant"] = spec.text.empty() ? "none" : spec.text;
    nlohmann::ordered_json jb = nlohmann::ordered_json::array();
    for (const auto& b : bands.bands)
      jb.push_back({{"first_pair", b.first_pair}, {"last_pair", b.last_pair}, {"min_wavelength", b.min_wavelength},
                    {"max_wavelength", b.max_wavelength}});
    j["bands"] = jb;
    j["full_precision"] = diagnostics_json(d_fp);
    j["quantized"] = diagnostics_json(d_q);
    if (!loss_ip.empty()) j["loss_interpolation_pressure"] = loss_ip;
    nlohmann::ordered_json le = nlohmann::ordered_json::array();
    const auto nbk = err.bucket_start.size();
    for (int l = 0; l < err.n_layers; ++l) {
      nlohmann::ordered_json row = nlohmann::ordered_json::array();
      for (std::size_t k = 0; k < nbk; ++k) {
        const double v = err.logit_rms[static_cast<std::size_t>(l) * nbk + k];
        row.push_back(std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr));
      }
      le.push_back(row);
    }
    j["logit_error"] = {{"distance_bucket_start", err.bucket_start}, {"rms", le}};
    j["attention_output_error"] = err.attention_error;
    j["equivariance"] = {{"symmetric_is_noop", eq.symmetric_is_noop()}, {"summary", eq.summary()}};
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("diagnose {}: RoPE {} x{}, ctx {} (trained {}), quantization '{}', {} bands\n", o.model.model_path,
             qroar::to_string(scaling.type), scaling.factor, ctx, l0, spec.text.empty() ? "none" : spec.text, bands.size());
  fmt::print("equivariance: {}\n\n", eq.summary());
  auto table_of = [&](const char* title, const qroar::band_diagnostics& a, const qroar::band_diagnostics& b,
                      const std::vector<double> qroar::band_diagnostics::*field) {
    fmt::print("{} (layer average; full precision / quantized)\n{:>6}", title, "band");
    for (std::size_t k = 0; k < bands.size(); ++k) fmt::print(" {:>17}", fmt::format("{} [{}-{}]", k, bands[k].first_pair, bands[k].last_pair));
    fmt::print("\n{:>6}", "");
    const auto pa = a.per_band(a.*field), pb = b.per_band(b.*field);
    for (std::size_t k = 0; k < bands.size(); ++k) fmt::print(" {:>8.3g}/{:<8.3g}", pa[k], pb[k]);
    fmt::print("\n\n");
  };
  table_of("Interpolation Pressure", d_fp, d_q, &qroar::band_diagnostics::interpolation_pressure);
  table_of("Tail Inflation Ratio, |q| pairs p99.9", d_fp, d_q, &qroar::band_diagnostics::tir_q_quantile);
  table_of("Tail Inflation Ratio, |k| pairs p99.9", d_fp, d_q, &qroar::band_diagnostics::tir_k_quantile);
  table_of("Tail Inflation Ratio, band logit p99.9", d_fp, d_q, &qroar::band_diagnostics::tir_logit_quantile);
  table_of("Tail Inflation Ratio, band logit max", d_fp, d_q, &qroar::band_diagnostics::tir_logit_max);
  if (!loss_ip.empty()) {
    fmt::print("loss-based Interpolation Pressure (dNLL/deps, eps {}):", o.epsilon);
    for (double v : loss_ip) fmt::print(" {:.4g}", v);
    fmt::print("\n\n");
  }
  fmt::print("logit error (RMS, quantized - full precision) by distance\n{:>6}", "layer");
  const auto nbk = err.bucket_start.size();
  for (std::size_t k = 0; k < nbk; ++k) fmt::print(" {:>7}", fmt::format(">={}", err.bucket_start[k]));
  fmt::print(" {:>9}\n", "att.err");
  for (int l = 0; l < err.n_layers; ++l) {
    fmt::print("{:>6}", l);
    for (std::size_t k = 0; k < nbk; ++k) fmt::print(" {:>7.3g}", err.logit_rms[static_cast<std::size_t>(l) * nbk + k]);
    fmt::print(" {:>9.3g}\n", err.attention_error[static_cast<std::size_t>(l)]);
  }
  return 0;
}

const qroar_cli::registrar register_diagnose{{"diagnose", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<diagnose_options>();
  app.description("Q-ROAR diagnostics: Interpolation Pressure, Tail Inflation Ratios, logit and attention error");
  app.footer(
      "Example:\n"
      "  qroar diagnose --model stories260K.bin --tokens dev.txt --ctx 2048 --rope yarn --factor 4 \\\n"
      "      --quant kv:k4:token:g8:post-rope --bands equal:4 --json");
  o->model.add_to(app);
  app.add_option("--query-samples", o->query_samples, "query positions sampled per window")->check(CLI::Range(1, 1 << 20));
  app.add_option("--quantile", o->quantile, "TIR quantile (default 0.999)")->check(CLI::Range(0.5, 1.0));
  app.add_flag("--loss-pressure", o->loss_pressure, "also compute the loss-based Interpolation Pressure (bands+1 evaluations)");
  o->epsilon_opt = app.add_option("--epsilon", o->epsilon, "phase perturbation of the loss-based pressure")->check(qroar_cli::finite_positive);
  app.add_option("--report", o->report, "write JSON, CSV and SVG plots (heatmaps, logit error) into this directory");
  run = [o] { return run_diagnose(*o); };
}}};

}  // namespace
