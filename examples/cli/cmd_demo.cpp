// qroar demo: the whole Q-ROAR pipeline on the embedded default model (or the user's files): load, extend the
// context, quantize, diagnose, search, apply (write + re-load), evaluate before/after; prints a before/after table.
#include "cli_export.hpp"
#include "cli_report.hpp"

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <unistd.h>

#include <qroar/diag/diagnostics.hpp>
#include <qroar/search/search.hpp>

#ifndef QROAR_DEMO_SOURCE_DIR
#define QROAR_DEMO_SOURCE_DIR ""
#endif
#ifndef QROAR_DEMO_INSTALL_DIR
#define QROAR_DEMO_INSTALL_DIR ""
#endif

namespace {

// The demo's result beside its full-precision control, at the extended context (held-out perplexities): f full
// precision, fs full precision with the scales, q quantized, qr quantized with the scales.
//   quantized change  x = qr/q - 1;  control  c = fs/f - 1;  quantization-specific  x - c
//   gap  g = q - f;  recovered  (q - qr)/g;  quantization-specific part  (q - qr + c*q)/g: the reduction beyond the
//   c*q that the same relative change as the control's would give the quantized model
struct demo_control_numbers {
  double quantized_change, fp_change, specific_change, gap, recovered, recovered_specific;
};
demo_control_numbers demo_control(double f, double fs, double q, double qr) {
  demo_control_numbers n{};
  n.quantized_change = qr / q - 1.0;
  n.fp_change = fs / f - 1.0;
  n.specific_change = n.quantized_change - n.fp_change;
  n.gap = q - f;
  n.recovered = n.gap > 0 ? (q - qr) / n.gap : 0.0;
  n.recovered_specific = n.gap > 0 ? (q - qr + n.fp_change * q) / n.gap : 0.0;
  return n;
}

namespace fs = std::filesystem;

constexpr const char* demo_model_file = "gutenberg-3m-f16.gguf";
constexpr const char* demo_text_file = "gutenberg-3m-samples.txt";

struct demo_options {
  qroar_cli::model_options model;  // model_path / text_path / tokens_path / quant / bands / rope / threads / json / quiet
  std::string report, variant = "independent";
  int dev_windows = 2, validation_windows = 2, eval_windows = 0, grid_points = 9;
  double grid_min = 0.25, grid_max = 4.0;
};

// The embedded demo files: $QROAR_DEMO_DIR, else the installed copy, else the source tree's examples/demo.
std::string demo_dir() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("QROAR_DEMO_DIR")) candidates.emplace_back(env);
  candidates.emplace_back(QROAR_DEMO_INSTALL_DIR);
  candidates.emplace_back(QROAR_DEMO_SOURCE_DIR);
  for (const auto& c : candidates)
    if (!c.empty() && fs::exists(fs::path(c) / demo_model_file)) return c;
  throw qroar::io_error(std::string("the embedded demo model (") + demo_model_file +
                        ") was not found; set QROAR_DEMO_DIR or pass --model and --text");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int> slice(const std::vector<int>& s, std::size_t from, std::size_t to) {
  return {s.begin() + static_cast<long>(from), s.begin() + static_cast<long>(std::min(to, s.size()))};
}

int run_demo(demo_options& o) {
  auto& mo = o.model;
  const auto t_all = std::chrono::steady_clock::now();
  const bool talk = !mo.json && !mo.quiet;
  auto stage = [&](const std::string& s) {
    if (talk) fmt::print(stderr, "[{:5.1f}s] {}\n", seconds_since(t_all), s);
  };
  if (mo.model_path.empty() || (mo.text_path.empty() && mo.tokens_path.empty())) {
    const std::string dir = demo_dir();
    if (mo.model_path.empty()) mo.model_path = (fs::path(dir) / demo_model_file).string();
    if (mo.text_path.empty() && mo.tokens_path.empty()) mo.text_path = (fs::path(dir) / demo_text_file).string();
  }

  qroar_cli::declare_inputs(mo.input_paths());
  qroar_cli::prepare_report_folder(o.report);

  // 1. load
  stage("load " + mo.model_path);
  const auto fp = mo.load_model();
  const int l0 = fp.config.original_ctx;
  const int ctx = static_cast<int>(std::lround(l0 * mo.rope.factor));
  if (ctx <= l0) throw qroar_cli::usage_error("--factor must be > 1 (the demo extends the context)");
  const auto stream = mo.token_stream(fp);

  // 2. extend the context
  auto extended = mo.rope.to_scaling(l0);
  extended.validate(fp.config.rope_geometry());
  const std::size_t w = static_cast<std::size_t>(ctx);
  const std::size_t n_windows = stream.size() / w;
  const std::size_t held_first = static_cast<std::size_t>(o.dev_windows + o.validation_windows);
  if (n_windows < held_first + 1)
    throw qroar_cli::usage_error(fmt::format("the text has {} tokens: {} windows of {} are needed ({} dev, {} validation, "
                                             "at least 1 held out)", stream.size(), held_first + 1, ctx, o.dev_windows,
                                             o.validation_windows));
  std::vector<std::vector<int>> dev, validation;
  for (std::size_t k = 0; k < static_cast<std::size_t>(o.dev_windows); ++k) dev.push_back(slice(stream, k * w, (k + 1) * w));
  for (std::size_t k = static_cast<std::size_t>(o.dev_windows); k < held_first; ++k)
    validation.push_back(slice(stream, k * w, (k + 1) * w));
  std::size_t eval_end = n_windows;
  if (o.eval_windows > 0) eval_end = std::min(n_windows, held_first + static_cast<std::size_t>(o.eval_windows));
  const auto held_out = slice(stream, held_first * w, eval_end * w);  // evaluation: text the search never saw

  // 3. quantize
  const auto spec = mo.quant_spec();
  const auto bands = mo.band_partition(fp);
  stage(fmt::format("quantize '{}'", spec.text.empty() ? "none" : spec.text));
  auto quantized = fp;
  const auto hooks = mo.quantize(quantized, spec);
  const auto eq = qroar::is_row_scale_equivariant(spec, bands, fp.config.rope_geometry());

  // 4. diagnose (first dev window)
  stage("diagnose");
  const auto table = qroar::rope_table::for_positions(fp.config.rope_geometry(), extended, ctx);
  const auto inv = qroar::inverse_frequencies(extended, fp.config.rope_geometry(), ctx);
  qroar::diagnostics_options dopt;
  dopt.original_ctx = l0;
  dopt.threads = mo.threads;
  const auto cap_fp = qroar::capture_attention(fp, dev.front(), table, nullptr, mo.threads);
  const auto cap_q = qroar::capture_attention(quantized, dev.front(), table, &hooks, mo.threads);
  const auto d_q = qroar::compute_band_diagnostics(fp.config, cap_q, bands, inv, dopt);
  const auto err_q = qroar::compare_captures(fp.config, cap_fp, cap_q, dopt);

  // 5. search (dev windows; validation windows accept steps; short-context guard on their L0-token chunks)
  stage("search");
  qroar::search_options so;
  so.scaling = extended;
  so.quant = spec;
  so.bands = bands;
  so.variant = qroar::scale_variant_from_string(o.variant);
  so.grid_min = o.grid_min;
  so.grid_max = o.grid_max;
  so.grid_points = o.grid_points;
  so.threads = mo.threads;
  so.validation_windows = validation;
  qroar::short_context_windows(so, validation, l0);
  qroar::search_result sr;
  {
    qroar_cli::progress_bar bar("search", mo.quiet || mo.json);
    so.progress = [&](const qroar::search_progress& p) { bar.update(p.evaluations, p.planned); };
    sr = qroar::search_band_scales(fp, dev, so);
  }
  if (sr.skipped) throw std::runtime_error("the search was skipped: " + sr.message);

  // 6. apply: fold the scales, write the patched model (recording the extended RoPE), and re-load the written file
  stage("apply");
  // a private folder of an unpredictable name (mkdtemp, mode 0700): nothing planted in /tmp can redirect the write
  std::string tmpl = (fs::temp_directory_path() / "qroar-demo-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw qroar::io_error(tmpl + ": cannot create a private folder: " + std::strerror(errno));
  const fs::path tmp = tmpl;
  struct cleanup {
    fs::path p;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } tmp_guard{tmp};
  const std::string patched_path = (tmp / "patched.gguf").string();
  {
    auto scaled = fp;
    qroar::apply_band_scales(scaled, sr.scales);
    // GGUF records linear and YaRN scalings (llama.cpp keys); other schemes are applied at evaluation time
    if (extended.type == qroar::rope_type::linear || extended.type == qroar::rope_type::yarn_ggml) scaled.config.rope = extended;
    qroar::gguf_export_options g;
    g.storage = fp.source_format == "gguf" ? qroar::gguf_storage::like_source : qroar::gguf_storage::f32;
    qroar_cli::write_model(mo, scaled, patched_path, qroar_cli::output_format::gguf, g);
  }
  const std::uintmax_t patched_bytes = fs::file_size(patched_path);
  auto patched = qroar::load_model(patched_path);
  if (patched.config.original_ctx <= 0) patched.config.original_ctx = l0;
  const auto patched_hooks = mo.quantize(patched, spec);
  const auto cap_p = qroar::capture_attention(patched, dev.front(), table, &patched_hooks, mo.threads);
  const auto err_p = qroar::compare_captures(fp.config, cap_fp, cap_p, dopt);

  // 7. evaluate before / after on the held-out windows, and the full-precision control (the same scales on the
  // full-precision model)
  stage("evaluate");
  auto fp_scaled = fp;
  qroar::apply_band_scales(fp_scaled, sr.scales);
  struct row {
    std::string name;
    qroar::perplexity_result at_l0, at_ctx;
  };
  std::vector<row> rows;
  auto eval = [&](const qroar::llama_model& m, const qroar::forward_hooks* h, const qroar::rope_scaling& sc, int n) {
    qroar::perplexity_options p;
    p.ctx = n;
    p.threads = mo.threads;
    p.scaling = sc;
    p.hooks = h && h->any() ? h : nullptr;
    return qroar::evaluate_perplexity(m, held_out, p);
  };
  {
    // the bar on a terminal; a stage line per evaluation otherwise (a whole book takes minutes: --eval-windows)
    qroar_cli::progress_bar bar("evaluate", mo.quiet || mo.json);
    const bool lines = ::isatty(2) != 1;
    constexpr int evaluations = 10;  // five models, each at L0 and at ctx
    int done = 0;
    auto eval_step = [&](const char* name, const qroar::llama_model& m, const qroar::forward_hooks* h,
                         const qroar::rope_scaling& sc, int n) {
      if (lines)
        stage(fmt::format("evaluate {}/{}: {} at ctx {} ({} held-out tokens)", done + 1, evaluations, name, n,
                          held_out.size()));
      auto r = eval(m, h, sc, n);
      bar.update(++done, evaluations);
      return r;
    };
    bar.update(0, evaluations);
    const auto none = qroar::rope_scaling::none();
    struct variant_row {
      const char* name;
      const qroar::llama_model* model;
      const qroar::forward_hooks* hooks;
      const qroar::rope_scaling* scaling;
    };
    const variant_row variants[] = {{"full precision, no extension", &fp, nullptr, &none},
                                    {"full precision", &fp, nullptr, &extended},
                                    {"quantized", &quantized, &hooks, &extended},
                                    {"quantized + Q-ROAR", &patched, &patched_hooks, &extended},
                                    // the control: the same scales on the full-precision model, same interpolation
                                    {"full precision + scales", &fp_scaled, nullptr, &extended}};
    for (const auto& v : variants) {
      auto at_l0 = eval_step(v.name, *v.model, v.hooks, *v.scaling, l0);
      auto at_ctx = eval_step(v.name, *v.model, v.hooks, *v.scaling, ctx);
      rows.push_back({v.name, at_l0, at_ctx});
    }
  }
  const double total = seconds_since(t_all);
  const std::string rope_text = fmt::format("{} x{}", qroar::to_string(extended.type), extended.factor);

  nlohmann::ordered_json j;
  j["model"] = mo.model_path;
  j["text"] = mo.text_path.empty() ? mo.tokens_path : mo.text_path;
  j["original_ctx"] = l0;
  j["ctx"] = ctx;
  j["rope"] = {{"type", qroar::to_string(extended.type)}, {"factor", extended.factor}};
  j["quant"] = spec.text;
  j["bands"] = mo.bands;
  j["equivariance"] = {{"symmetric_is_noop", eq.symmetric_is_noop()}, {"summary", eq.summary()}};
  j["windows"] = {{"dev", dev.size()}, {"validation", validation.size()}, {"held_out_tokens", held_out.size()}};
  j["band_pressure"] = d_q.per_band(d_q.interpolation_pressure);
  j["band_tir_logit_p999"] = d_q.per_band(d_q.tir_logit_quantile);
  j["search"] = {{"variant", o.variant},
                 {"evaluations", sr.evaluations},
                 {"baseline_dev_nll", sr.baseline_objective},
                 {"final_dev_nll", sr.final_objective},
                 {"scales", qroar::band_scales_to_json(sr.scales, fp.config)}};
  j["patched_model_bytes"] = patched_bytes;
  {
    const auto c = demo_control(rows[1].at_ctx.ppl, rows[4].at_ctx.ppl, rows[2].at_ctx.ppl, rows[3].at_ctx.ppl);
    j["control"] = {{"quantized_ppl_change", c.quantized_change}, {"fp_ppl_change", c.fp_change},
                    {"quantization_specific_change", c.specific_change}, {"quantization_gap", c.gap},
                    {"gap_recovered", c.gap > 0 ? nlohmann::ordered_json(c.recovered) : nlohmann::ordered_json(nullptr)},
                    {"gap_recovered_quantization_specific",
                     c.gap > 0 ? nlohmann::ordered_json(c.recovered_specific) : nlohmann::ordered_json(nullptr)}};
  }
  nlohmann::ordered_json jt = nlohmann::ordered_json::array();
  for (const auto& r : rows)
    jt.push_back({{"model", r.name}, {"ppl_trained_ctx", r.at_l0.ppl}, {"ppl_extended_ctx", r.at_ctx.ppl},
                  {"tokens_trained_ctx", r.at_l0.tokens_scored}, {"tokens_extended_ctx", r.at_ctx.tokens_scored}});
  j["table"] = jt;
  j["seconds"] = total;

  if (!o.report.empty()) {
    std::vector<std::pair<std::string, qroar::perplexity_result>> pp;
    for (const auto& r : rows) pp.emplace_back(r.name, r.at_ctx);
    qroar_cli::write_plot(o.report, "perplexity_vs_position",
                          qroar_cli::perplexity_plot(pp,
                                                     fmt::format("Where does perplexity rise past L0, and does Q-ROAR lower it? "
                                                                 "ctx {} ({}, {})", ctx, rope_text, spec.text),
                                                     ctx, l0));
    qroar_cli::write_plot(o.report, "interpolation_pressure",
                          qroar_cli::band_heatmap(d_q, d_q.interpolation_pressure, bands,
                                                  "Which bands does the interpolation press? Interpolation Pressure (quantized)",
                                                  "logit Interpolation Pressure"));
    qroar_cli::write_plot(o.report, "tail_inflation_ratio",
                          qroar_cli::band_heatmap(d_q, d_q.tir_logit_quantile, bands,
                                                  "Where do band logit tails grow? Tail Inflation Ratio, p99.9 (quantized)",
                                                  "Tail Inflation Ratio (long / short)"));
    qroar_cli::write_plot(o.report, "logit_error_vs_distance",
                          qroar_cli::logit_error_plot({{"quantized", err_q}, {"quantized + Q-ROAR", err_p}},
                                                      "Does Q-ROAR lower the logit error at long distances? (layer mean)"));
    qroar_cli::write_plot(o.report, "scales_query", qroar_cli::scales_heatmap(sr.scales, false));
    qroar_cli::write_plot(o.report, "scales_key", qroar_cli::scales_heatmap(sr.scales, true));
    qroar_cli::write_plot(o.report, "search_trace", qroar_cli::search_trace_plot(sr, "dev_nll"));
    qroar_cli::write_report_json(o.report, j);
  }

  if (mo.json) {
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("qroar demo: {} ({} layers, head_dim {}, trained context {})\n", mo.model_path, fp.config.n_layers,
             fp.config.head_size(), l0);
  fmt::print("text {}: {} tokens; {} dev + {} validation windows of {}, {} held-out tokens evaluated\n",
             mo.text_path.empty() ? mo.tokens_path : mo.text_path, stream.size(), dev.size(), validation.size(), ctx,
             held_out.size());
  fmt::print("context {} -> {} with {}; quantization '{}'\n", l0, ctx, rope_text, spec.text.empty() ? "none" : spec.text);
  fmt::print("equivariance: {}\n\n", eq.summary());
  fmt::print("diagnosis (quantized, layer mean) {:>22}", "");
  for (std::size_t b = 0; b < bands.size(); ++b) fmt::print(" {:>9}", fmt::format("band {}", b));
  const auto ip = d_q.per_band(d_q.interpolation_pressure), tir = d_q.per_band(d_q.tir_logit_quantile);
  fmt::print("\n  {:<54}", "Interpolation Pressure");
  for (double v : ip) fmt::print(" {:>9.3g}", v);
  fmt::print("\n  {:<54}", "Tail Inflation Ratio (band logit p99.9)");
  for (double v : tir) fmt::print(" {:>9.3g}", v);
  fmt::print("\n\nsearch ({} scales, {} evaluations): dev NLL {:.4f} -> {:.4f}\n", o.variant, sr.evaluations,
             sr.baseline_objective, sr.final_objective);
  for (const bool key : {false, true}) {
    fmt::print("  {} factors per band", key ? "W_K" : "W_Q");
    for (std::size_t b = 0; b < bands.size(); ++b) {
      const auto i = sr.scales.index(0, static_cast<int>(b));
      fmt::print(" {:.3g}", key ? sr.scales.key[i] : sr.scales.query[i]);
    }
    fmt::print("\n");
  }
  fmt::print("applied: patched model written ({:.1f} MB) and re-loaded\n\n", static_cast<double>(patched_bytes) / 1e6);
  fmt::print("{:<30} {:>16} {:>16}\n", "perplexity (held out)", fmt::format("ctx {}", l0), fmt::format("ctx {}", ctx));
  for (const auto& r : rows) fmt::print("{:<30} {:>16.4f} {:>16.4f}\n", r.name, r.at_l0.ppl, r.at_ctx.ppl);
  const auto c = demo_control(rows[1].at_ctx.ppl, rows[4].at_ctx.ppl, rows[2].at_ctx.ppl, rows[3].at_ctx.ppl);
  fmt::print("\nQ-ROAR at ctx {}: quantized {:+.2f}%; the same scales on full precision {:+.2f}% (control); "
             "quantization-specific {:+.2f}%\n",
             ctx, 100.0 * c.quantized_change, 100.0 * c.fp_change, 100.0 * c.specific_change);
  if (c.gap > 0)
    fmt::print("quantization gap {:.4f}: recovers {:.0f}% of it, {:.0f}% quantization-specific (beyond the control)\n",
               c.gap, 100.0 * c.recovered, 100.0 * c.recovered_specific);
  fmt::print("total {:.1f} s\n", total);
  if (!o.report.empty()) fmt::print("report written to {}\n", o.report);
  return 0;
}

const qroar_cli::registrar register_demo{{"demo", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<demo_options>();
  o->model.quant = "kv:k3:token:g64:post-rope";
  o->model.rope.type = "ntk";
  o->model.rope.factor = 4.0;
  app.description("Run the whole Q-ROAR pipeline (load, extend, quantize, diagnose, search, apply, evaluate) on the "
                  "embedded gutenberg-3m model, or on --model/--text");
  app.footer(
      "The embedded model is examples/demo/gutenberg-3m-f16.gguf (trained context 256); its text is sampled from the\n"
      "model itself (examples/demo/README.md). Held-out windows are never seen by the search.\n"
      "Examples:\n"
      "  qroar demo\n"
      "  qroar demo --quant kv:k4:token:g64:post-rope --rope yarn --factor 4 --report demo-report\n"
      "  qroar demo --model my-model.gguf --text book.txt --json");
  auto& mo = o->model;
  app.add_option("--model", mo.model_path, "model (.gguf, llama2.c .bin, HF folder); default: the embedded model")
      ->check(qroar_cli::existing_path);
  auto* text = app.add_option("--text", mo.text_path, "UTF-8 text (default: the embedded samples)")->check(CLI::ExistingFile);
  app.add_option("--tokens", mo.tokens_path, "token-id file instead of --text")->check(CLI::ExistingFile)->excludes(text);
  app.add_option("--tokenizer", mo.tokenizer_path, "tokenizer (default: the model's)")->check(CLI::ExistingFile);
  app.add_option("--rope,--type", mo.rope.type, "RoPE scaling for the extension (default ntk)")
      ->check(CLI::IsMember({"linear", "ntk", "yarn", "yarn-ggml"}));
  app.add_option("--factor", mo.rope.factor, "extension factor: ctx = factor x trained context (default 4)")
      ->check(qroar_cli::finite_positive);
  app.add_option("--quant", mo.quant, "quantization spec (default kv:k3:token:g64:post-rope)");
  app.add_option("--bands", mo.bands, "band partition (default equal:4)");
  app.add_option("--variant", o->variant, "search variant: independent (default), symmetric or query_only")
      ->check(CLI::IsMember({"symmetric", "query_only", "independent"}));
  app.add_option("--grid-min", o->grid_min, "smallest scale factor (default 0.25)")->check(qroar_cli::finite_positive);
  app.add_option("--grid-max", o->grid_max, "largest scale factor (default 4)")->check(qroar_cli::finite_positive);
  app.add_option("--grid-points", o->grid_points, "grid points (default 9)")->check(CLI::Range(1, 1000));
  app.add_option("--dev-windows", o->dev_windows, "dev windows (default 2)")->check(CLI::Range(1, 1000));
  app.add_option("--validation-windows", o->validation_windows, "validation windows (default 2)")->check(CLI::Range(1, 1000));
  app.add_option("--eval-windows", o->eval_windows, "held-out windows evaluated (default: all the rest)")
      ->check(CLI::PositiveNumber);
  app.add_option("--original-ctx", mo.original_ctx, "override the trained context read from the model")
      ->check(CLI::PositiveNumber);
  app.add_option("--calib", mo.calib_path, "GPTQ calibration data")->check(CLI::ExistingFile);
  app.add_option("--threads", mo.threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--report", o->report, "write JSON, CSV and SVG plots into this directory");
  app.add_flag("--json", mo.json, "print one JSON object on stdout");
  app.add_flag("--quiet,-q", mo.quiet, "no progress output");
  run = [o] { return run_demo(*o); };
}}};

}  // namespace
