// qroar search: find per-band W_Q/W_K scales for a quantized model under a RoPE interpolation; writes the
// band-scales JSON.
#include "cli_model.hpp"
#include "cli_report.hpp"

#include <chrono>
#include <iostream>

#include <unistd.h>

#include <qroar/search/scales_json.hpp>
#include <qroar/search/search.hpp>
#include <qroar/search/search_windows.hpp>

namespace {

struct search_command_options {
  qroar_cli::model_options model;
  std::vector<std::string> dev, validation;
  int dev_windows = 2, validation_windows = 4;
  std::string validation_rule = "each_window";
  double validation_noise_z = 0.0;
  std::string variant = "auto", granularity = "global", order = "pressure", objective = "dev_nll", grid_strategy = "exhaustive", output,
              report;
  double grid_min = 0.5, grid_max = 2.0, guard = 0.005, min_improvement = 1e-4, holdout = 1.0 / 3.0;
  int grid_points = 9, passes = 1, refine = 0, guard_chunks = 0;
  bool no_guard = false, force = false;
  CLI::Option *guard_opt = nullptr, *guard_chunks_opt = nullptr;
};

// The token stream of each file, in order: at most `needed` tokens of each (0: all), so that a huge file costs only
// the text its windows need.
std::vector<std::vector<int>> documents_from(const qroar_cli::model_options& mo, const std::vector<std::string>& files,
                                             const qroar::llama_model& m, std::uint64_t needed) {
  std::vector<std::vector<int>> out;
  for (const auto& f : files) out.push_back(mo.read_stream(f, m, needed));
  return out;
}

nlohmann::ordered_json result_json(const qroar::search_result& r, const qroar::llama_model& m,
                                   const search_command_options& o, const qroar::rope_scaling& sc,
                                   const qroar::search_windows& windows, double secs) {
  nlohmann::ordered_json j;
  j["skipped"] = r.skipped;
  j["message"] = r.message;
  j["equivariance"] = {{"symmetric_is_noop", r.equivariance.symmetric_is_noop()}, {"summary", r.equivariance.summary()}};
  j["variant"] = qroar::to_string(r.variant);  // the variant searched (auto: the one kept)
  j["variant_requested"] = o.variant;
  j["variant_reason"] = r.variant_reason;
  auto& trials = j["variants"] = nlohmann::ordered_json::array();  // auto: every variant searched
  auto num0 = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  for (const auto& t : r.variants)
    trials.push_back({{"variant", qroar::to_string(t.variant)}, {"final_objective", num0(t.final_objective)},
                      {"final_validation_nll", num0(t.final_validation)}, {"evaluations", t.evaluations},
                      {"chosen", t.chosen}});
  j["windows"] = {{"dev", windows.dev.size()}, {"validation", windows.validation.size()},
                  {"validation_source", !o.validation.empty() ? "files" : windows.held_out ? "held_out" : "none"},
                  {"note", windows.note}};
  j["granularity"] = o.granularity;
  j["objective"] = o.objective;
  j["grid_strategy"] = o.grid_strategy;
  j["refine"] = o.refine;
  j["grid"] = r.grid;
  j["band_pressure"] = r.band_pressure;
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr); };
  j["baseline_objective"] = r.skipped ? nlohmann::ordered_json(nullptr) : num(r.baseline_objective);
  j["final_objective"] = r.skipped ? nlohmann::ordered_json(nullptr) : num(r.final_objective);
  j["validation_rule"] = windows.validation.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.validation_rule);
  j["validation_noise_z"] = windows.validation.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.validation_noise_z);
  j["baseline_validation_nll"] = num(r.baseline_validation);
  j["final_validation_nll"] = num(r.final_validation);
  j["baseline_short_nll"] = num(r.baseline_short);
  j["final_short_nll"] = num(r.final_short);
  // the full-precision control: the same scales on the full-precision model under the same interpolation
  if (r.control.measured()) {
    const auto& c = r.control;
    j["control"] = {{"windows", c.windows},
                    {"quantized_baseline_nll", num(c.quantized_baseline)},
                    {"quantized_final_nll", num(c.quantized_final)},
                    {"fp_baseline_nll", num(c.fp_baseline)},
                    {"fp_final_nll", num(c.fp_final)},
                    {"quantized_ppl_change", num(c.quantized_change())},
                    {"fp_ppl_change", num(c.fp_change())},
                    {"quantization_specific_change", num(c.quantization_specific_change())}};
  } else {
    j["control"] = nullptr;
  }
  j["evaluations"] = r.evaluations;
  j["seconds"] = secs;
  auto& steps = j["steps"] = nlohmann::ordered_json::array();  // every candidate tried, in order
  for (const auto& s : r.steps)
    steps.push_back({{"pass", s.pass}, {"unit", s.unit}, {"band", s.band}, {"which", std::string(1, s.which)},
                     {"factor", s.factor}, {"objective", num(s.objective)}, {"accepted", s.accepted}, {"note", s.note}});
  j["rope"] = {{"type", qroar::to_string(sc.type)}, {"factor", sc.factor}, {"original_ctx", sc.original_ctx}};
  j["quant"] = o.model.quant;
  j["scales"] = qroar::band_scales_to_json(r.scales, m.config);
  return j;
}

int run_search(const search_command_options& o) {
  o.model.check_flags("search");
  o.model.refuse("search", {"--calib", "--calib-ctx", "--calib-windows"},
                 "GPTQ in the search calibrates on the dev windows cut to the trained context");
  if (o.no_guard && (o.guard_opt->count() > 0 || o.guard_chunks_opt->count() > 0))
    throw qroar_cli::usage_error(std::string(o.guard_opt->count() > 0 ? "--guard" : "--guard-chunks") +
                                 " conflicts with --no-guard (the guard is off: drop one of them)");
  qroar_cli::declare_inputs(o.model.input_paths());
  qroar_cli::declare_inputs(o.dev);
  qroar_cli::declare_inputs(o.validation);
  if (!o.output.empty()) qroar_cli::check_output_file(o.output);  // before the work, not after it
  qroar_cli::prepare_report_folder(o.report);
  auto files = o.dev;
  files.insert(files.end(), o.validation.begin(), o.validation.end());
  o.model.open_tokenizer_for(files);
  const auto model = o.model.load_model();
  qroar::search_options so;
  so.scaling = o.model.scaling(model);
  so.quant = o.model.quant_spec();
  so.bands = o.model.band_partition(model);
  if (o.variant != "auto") so.variant = qroar::scale_variant_from_string(o.variant);
  so.granularity = qroar::scale_granularity_from_string(o.granularity);
  so.grid_min = o.grid_min;
  so.grid_max = o.grid_max;
  so.grid_points = o.grid_points;
  so.passes = o.passes;
  so.order = o.order == "natural" ? qroar::band_order::natural : qroar::band_order::pressure;
  if (o.order != "natural" && o.order != "pressure") throw qroar_cli::usage_error("--order must be pressure or natural");
  if (o.objective == "dev_nll") so.objective = qroar::search_objective::dev_nll;
  else if (o.objective == "layer_local") so.objective = qroar::search_objective::layer_local;
  else if (o.objective == "kl_fp") so.objective = qroar::search_objective::kl_fp;
  else throw qroar_cli::usage_error("--objective must be dev_nll, kl_fp or layer_local");
  so.strategy = o.grid_strategy == "coarse_to_fine" ? qroar::grid_strategy::coarse_to_fine : qroar::grid_strategy::exhaustive;
  so.refine = o.refine;
  so.short_guard = o.no_guard ? -1.0 : o.guard;
  so.min_improvement = o.min_improvement;
  so.force_futile = o.force;
  so.threads = o.model.threads;
  const int ctx = o.model.ctx, l0 = model.config.original_ctx;
  if (ctx <= l0 && !o.model.quiet)
    fmt::print(stderr,
               "warning: --ctx {} is not beyond the trained context {} the model file records; Q-ROAR targets contexts "
               "past it (pass --original-ctx when the file's context length is not the trained one)\n",
               ctx, l0);
  // dev and validation windows; without --validation the last third of each long enough dev document is held out
  // (qroar::cut_search_windows). The short-context guard runs on every L0-token chunk of the validation windows
  // (text the search does not fit), else of the dev windows, grouped by the window they come from.
  qroar::search_windows_options wo;
  wo.ctx = ctx;
  wo.max_dev_windows = o.dev_windows;
  wo.max_validation_windows = o.validation_windows;
  wo.holdout_fraction = o.holdout;
  qroar_cli::check_window_fits(model.config, ctx, "--ctx");
  // Tokens read per file: a dev file gives at most --dev-windows windows and a validation file --validation-windows.
  // Without --validation the hold-out is the last fraction of what is read of each dev file, which is then up to
  // (dev + validation windows) / (1 - holdout) windows long: the whole file when it is shorter.
  const auto len = static_cast<std::uint64_t>(ctx);
  const auto dev_windows = static_cast<std::uint64_t>(o.dev_windows), validation_windows = static_cast<std::uint64_t>(o.validation_windows);
  const std::uint64_t dev_needed =
      !o.validation.empty() || o.holdout <= 0.0
          ? dev_windows * len
          : static_cast<std::uint64_t>(std::ceil(static_cast<double>((dev_windows + validation_windows) * len) / (1.0 - o.holdout)));
  const auto windows = qroar::cut_search_windows(documents_from(o.model, o.dev, model, dev_needed),
                                                 documents_from(o.model, o.validation, model, validation_windows * len), wo);
  const auto& dev = windows.dev;
  if (dev.empty()) throw qroar_cli::usage_error("the dev files hold fewer tokens than one window of --ctx " + std::to_string(ctx));
  if (!o.validation.empty() && windows.validation.empty())
    throw qroar_cli::usage_error("the validation files hold fewer tokens than one window");
  so.validation = o.validation_rule == "pooled" ? qroar::validation_rule::pooled : qroar::validation_rule::each_window;
  so.validation_noise_z = o.validation_noise_z;
  if (o.validation_noise_z > 0.0 && o.validation_rule == "pooled")
    throw qroar_cli::usage_error("--validation-noise-z applies to --validation-rule each_window, not pooled");
  qroar::use_search_windows(so, windows, l0, o.guard_chunks);
  if (!windows.note.empty() && !o.model.quiet) fmt::print(stderr, "{}\n", windows.note);
  const auto spec_hooks_probe = qroar::is_row_scale_equivariant(so.quant, so.bands, model.config.rope_geometry());
  // before a long search, on stderr; not when stdout (which prints it with the result) is the terminal too
  if (!o.model.quiet && !o.model.json && ::isatty(1) == 0)
    fmt::print(stderr, "equivariance: {}\n", spec_hooks_probe.summary());
  const auto fallbacks = qroar_cli::report_ggml_fallbacks(model, so.quant);
  qroar_cli::progress_bar bar("search (candidates)", o.model.quiet || o.model.json);
  so.progress = [&](const qroar::search_progress& p) { bar.update(p.evaluations, p.planned); };
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = qroar::search_band_scales(model, dev, so);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // candidates tried: of every variant auto searched (the steps kept are the chosen variant's)
  long long candidates = static_cast<long long>(r.steps.size());
  if (!r.variants.empty()) {
    candidates = 0;
    for (const auto& t : r.variants) candidates += t.candidates;
  }
  bar.update(candidates, candidates);  // `planned` is an upper bound (coarse_to_fine): end at what ran
  bar.finish();
  // A skipped search still writes its (identity) scales, so that a scripted search -> apply pipeline keeps working;
  // the provenance says why nothing was searched.
  if (!o.output.empty()) {
    nlohmann::ordered_json prov = {{"tool", std::string("qroar ") + qroar::version_string},
                                   {"model", o.model.model_path},
                                   {"rope", {{"type", qroar::to_string(so.scaling.type)}, {"factor", so.scaling.factor},
                                             {"original_ctx", so.scaling.original_ctx}}},
                                   {"quant", o.model.quant},
                                   {"ctx", ctx},
                                   {"objective", o.objective},
                                   {"variant", qroar::to_string(r.variant)},
                                   {"variant_reason", r.variant_reason},
                                   {"baseline_objective", r.baseline_objective},
                                   {"final_objective", r.final_objective}};
    if (r.skipped) {  // nothing was evaluated: no objective to report
      prov["baseline_objective"] = nullptr;
      prov["final_objective"] = nullptr;
      prov["skipped"] = r.message;
    }
    try {
      qroar_cli::check_output_file(o.output);
      qroar::write_band_scales(o.output, r.scales, model.config, prov);
    } catch (const std::exception& e) {  // the search is done: its result goes to stdout rather than being lost
      std::cout << qroar_cli::json_text(qroar::band_scales_to_json(r.scales, model.config, prov), 2) << "\n";
      std::cout.flush();
      fmt::print(stderr, "qroar: error: {} (the scales are printed on stdout instead)\n", e.what());
      return qroar_cli::exit_failure;
    }
  }
  if (!o.report.empty() && !r.skipped) {  // --report DIR: the chosen scales and the search result
    qroar_cli::write_plot(o.report, "scales_query", qroar_cli::scales_heatmap(r.scales, false));
    qroar_cli::write_plot(o.report, "scales_key", qroar_cli::scales_heatmap(r.scales, true));
    qroar_cli::write_plot(o.report, "search_trace", qroar_cli::search_trace_plot(r, o.objective));
    qroar_cli::write_report_json(o.report, result_json(r, model, o, so.scaling, windows, secs));
  }
  if (o.model.json) {
    auto j = result_json(r, model, o, so.scaling, windows, secs);
    if (!fallbacks.empty()) j["type_fallbacks"] = fallbacks;
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("Q-ROAR search: {} scales, {} granularity, {} bands, objective {}, {} grid points in [{}, {}]\n",
             qroar::to_string(r.variant),
             o.granularity, so.bands.size(), o.objective, r.grid.size(), o.grid_min, o.grid_max);
  fmt::print("RoPE {} x{} at ctx {}, quantization '{}'\n", qroar::to_string(so.scaling.type), so.scaling.factor, ctx,
             o.model.quant.empty() ? "none" : o.model.quant);
  fmt::print("equivariance: {}\n", r.equivariance.summary());
  fmt::print("{}\n", r.variant_reason);
  for (const auto& t : r.variants)
    fmt::print("  {:<12} dev {:.6f}, validation NLL {}{}\n", qroar::to_string(t.variant), t.final_objective,
               std::isfinite(t.final_validation) ? fmt::format("{:.6f}", t.final_validation) : std::string("-"),
               t.chosen ? "  <- kept" : "");
  if (r.skipped) {
    fmt::print("{}\n(use --variant query_only or independent, or --force to run it anyway)\n", r.message);
    if (!o.output.empty()) fmt::print("wrote identity scales to {}\n", o.output);
    return 0;
  }
  fmt::print("dev {}: {:.6f} -> {:.6f} ({:+.2f}%)\n", o.objective, r.baseline_objective, r.final_objective,
             100.0 * (r.final_objective / r.baseline_objective - 1.0));
  if (std::isfinite(r.baseline_validation))
    fmt::print("validation ppl: {:.4f} -> {:.4f} ({:+.2f}%)\n", std::exp(r.baseline_validation),
               std::exp(r.final_validation), 100.0 * (std::exp(r.final_validation - r.baseline_validation) - 1.0));
  if (std::isfinite(r.baseline_short))
    fmt::print("short-context ppl (ctx {}): {:.4f} -> {:.4f} ({:+.2f}%)\n", l0, std::exp(r.baseline_short),
               std::exp(r.final_short), 100.0 * (std::exp(r.final_short - r.baseline_short) - 1.0));
  if (r.control.measured()) {
    // the quantized model's change beside the full-precision control (same scales, same interpolation, same
    // windows) and their difference: the part of the gain that repairs quantization
    const auto& c = r.control;
    auto pct = [](double v) { return std::isfinite(v) ? fmt::format("{:+.2f}%", 100.0 * v) : std::string("n/a"); };
    fmt::print("on the {} windows: quantized ppl {}, full-precision ppl {} (control), quantization-specific {}\n",
               c.windows, pct(c.quantized_change()), pct(c.fp_change()), pct(c.quantization_specific_change()));
  }
  fmt::print("{} candidates ({} evaluations of the objective with the baseline) in {:.1f} s\n\n{:>6} {:>12}", candidates,
             r.evaluations, secs, "unit", "");
  for (std::size_t b = 0; b < so.bands.size(); ++b) fmt::print(" {:>11}", fmt::format("band {} q/k", b));
  fmt::print("\n");
  for (int u = 0; u < r.scales.units(); ++u) {
    fmt::print("{:>6} {:>12}", u, "");
    for (std::size_t b = 0; b < so.bands.size(); ++b)
      fmt::print(" {:>5.3f}/{:<5.3f}", r.scales.query[r.scales.index(u, static_cast<int>(b))],
                 r.scales.key[r.scales.index(u, static_cast<int>(b))]);
    fmt::print("\n");
  }
  if (!o.output.empty()) fmt::print("\nwrote {}\n", o.output);
  return 0;
}

const qroar_cli::registrar register_search{{"search", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<search_command_options>();
  app.description("Search per-band W_Q/W_K scales (Q-ROAR) for a quantized model under a RoPE interpolation");
  app.footer(
      "Examples:\n"
      "  qroar search --model stories260K.bin --dev dev.txt --validation val.txt --ctx 2048 --rope yarn --factor 4 \\\n"
      "      --quant kv:k4:token:g8:post-rope --grid-min 0.25 --grid-max 4 -o scales.json\n"
      "  qroar search --model gutenberg-3m/model.bin --dev a.txt --dev b.txt --ctx 1024 --rope ntk --factor 4 \\\n"
      "      --quant rtn:w3:g32 --variant query_only --granularity per_layer -o scales.json");
  o->model.add_to(app, /*needs_text=*/false);
  app.add_option("--ctx", o->model.ctx, "dev window length (longer than the trained context)")->required()
      ->check(CLI::Range(2, 1 << 24));
  app.add_option("--dev", o->dev, "dev text or token-id files (repeat for several documents)")->required()
      ->check(CLI::ExistingFile);
  app.add_option("--dev-windows", o->dev_windows, "dev windows in all (spread over the files)")->check(CLI::PositiveNumber);
  app.add_option("--validation", o->validation,
                 "held-out files for accepting a step and for the short-context guard (default: the last third of "
                 "each dev file long enough to give a window)")
      ->check(CLI::ExistingFile);
  app.add_option("--holdout", o->holdout,
                 "without --validation: the fraction of each dev file held out for validation and the guard (0 keeps "
                 "every dev token for the search; default 1/3)")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--validation-windows", o->validation_windows, "validation windows in all")->check(CLI::PositiveNumber);
  app.add_option("--validation-rule", o->validation_rule,
                 "each_window (default): a step must not raise any validation window's NLL; pooled: only their mean")
      ->check(CLI::IsMember({"each_window", "pooled"}));
  app.add_option("--validation-noise-z", o->validation_noise_z,
                 "each_window: a window's NLL may rise by this many block standard errors of its per-token change "
                 "(0: not at all; the pooled mean never may)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--variant", o->variant,
                 "auto (default: the variants that can act under --quant, the best on validation kept), symmetric "
                 "(W_Q*g, W_K/g), query_only or independent")
      ->check(CLI::IsMember({"auto", "symmetric", "query_only", "independent"}));
  app.add_option("--granularity", o->granularity, "global, per_layer or per_layer_kv_head")
      ->check(CLI::IsMember({"global", "per_layer", "per_layer_kv_head"}));
  app.add_option("--grid-min", o->grid_min, "smallest factor")->check(qroar_cli::finite_positive);
  app.add_option("--grid-max", o->grid_max, "largest factor")->check(qroar_cli::finite_positive);
  app.add_option("--grid-points", o->grid_points, "log-spaced grid points (1 is always included)")->check(CLI::Range(1, 1000));
  app.add_option("--order", o->order, "band order: pressure (descending Interpolation Pressure) or natural");
  app.add_option("--passes", o->passes, "coordinate-descent passes")->check(CLI::Range(1, 100));
  app.add_option("--objective", o->objective, "dev_nll (end-to-end NLL; also retunes the interpolation), kl_fp (end-to-end KL divergence from the full-precision model: quantization only) or layer_local (attention-output error against the full-precision model)");
  app.add_option("--grid-strategy", o->grid_strategy,
                 "exhaustive (every grid point per band) or coarse_to_fine (every second point, then the best's "
                 "neighbours)")
      ->check(CLI::IsMember({"exhaustive", "coarse_to_fine"}));
  app.add_option("--refine", o->refine,
                 "bisection steps in log scale around each band's best factor after the grid (each halves the step; "
                 "2 more evaluations per band per step)")
      ->check(CLI::Range(0, 20));
  o->guard_opt = app.add_option("--guard", o->guard, "max relative short-context perplexity increase (default 0.005)")
      ->check(qroar_cli::finite_non_negative);
  app.add_flag("--no-guard", o->no_guard, "disable the short-context guard");
  o->guard_chunks_opt = app.add_option("--guard-chunks", o->guard_chunks,
                 "L0-token chunks of each validation window in the guard set, evenly spaced (0: all, the default; 1: "
                 "the first only, cheapest)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--min-improvement", o->min_improvement, "relative dev improvement a step needs")
      ->check(qroar_cli::finite_non_negative);
  app.add_flag("--force", o->force, "run the symmetric search even when the equivariance check says it is a no-op");
  app.add_option("-o,--output", o->output, "write the band scales JSON here");
  app.add_option("--report", o->report, "write JSON, CSV and SVG plots (chosen scales, search trace) into this directory");
  run = [o] { return run_search(*o); };
}}};

}  // namespace
