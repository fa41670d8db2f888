// qroar eval: perplexity of a model over a text or token stream, with any RoPE scaling.
#include "cli_model.hpp"
#include "cli_report.hpp"

#include <chrono>
#include <iostream>
#include <optional>

namespace {

nlohmann::ordered_json equivariance_json(const qroar::equivariance_report& r, const qroar::equivariance_probe* p) {
  nlohmann::ordered_json j = {{"symmetric_is_noop", r.symmetric_is_noop()},
                              {"weights", {{"equivariant", r.weights}, {"reason", r.weights_reason}}},
                              {"kv", {{"equivariant", r.kv}, {"reason", r.kv_reason}}},
                              {"activations", {{"equivariant", r.activations}, {"reason", r.activations_reason}}},
                              {"summary", r.summary()}};
  if (p)
    j["probe"] = {{"weights_change", p->weights_change},
                  {"kv_change", p->kv_change},
                  {"weights_fp16_residual", p->weights_fp16_residual},
                  {"weights_equivariant", p->weights_equivariant()},
                  {"kv_equivariant", p->kv_equivariant()}};
  return j;
}

int run_eval(const qroar_cli::model_options& o, const std::string& report_dir) {
  o.check_flags("eval");
  qroar_cli::declare_inputs(o.input_paths());
  qroar_cli::prepare_report_folder(report_dir);
  auto model = o.load_model();
  // --max-windows: only the text those windows need, tokenized at once; else the whole file pulled piece by piece
  // (memory: one piece, whatever the file's size)
  const bool streamed = o.max_windows == 0;
  const auto stream = streamed ? std::vector<int>{} : o.token_stream(model, /*prefix_only=*/true);
  const qroar::token_pull pull = streamed ? o.token_pull(model) : qroar::token_pull{};
  auto popt = o.perplexity(model);
  const auto spec = o.quant_spec();
  const auto bands = o.band_partition(model);
  const auto report = qroar::is_row_scale_equivariant(spec, bands, model.config.rope_geometry());
  const auto fallbacks = qroar_cli::report_ggml_fallbacks(model, spec);
  std::optional<qroar::equivariance_probe> probe;
  if (spec.quantizes_weights() || spec.kv.enabled() || spec.activations.enabled()) {
    std::vector<int> leading;  // the first tokens (a pull of their own when streamed)
    if (streamed) {
      auto head = o.token_pull(model);
      while (leading.size() < 128 && head(leading)) {
      }
    }
    const std::vector<int>& from = streamed ? leading : stream;
    const std::vector<int> sample(from.begin(), from.begin() + std::min<std::size_t>(from.size(), 128));
    probe = qroar::probe_row_scale_equivariance(model, spec, bands, sample);
  }
  const qroar::forward_hooks hooks = o.quantize(model, spec);
  if (hooks.any()) popt.hooks = &hooks;
  qroar_cli::progress_bar bar("eval", o.quiet || o.json);
  popt.progress = [&](int done, int total) { bar.update(done, total); };
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = streamed ? qroar::evaluate_perplexity_stream(model, pull, popt) : qroar::evaluate_perplexity(model, stream, popt);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bar.finish();
  const double tps = secs > 0 ? static_cast<double>(r.windows) * o.ctx / secs : 0.0;
  if (!report_dir.empty()) {  // --report DIR: perplexity against position
    const std::string name = (spec.text.empty() ? std::string("full precision") : spec.text) +
                             (o.scales_path.empty() ? "" : " + Q-ROAR scales");
    qroar_cli::write_plot(report_dir, "perplexity_vs_position",
                          qroar_cli::perplexity_plot({{name, r}},
                                                     fmt::format("Does perplexity rise past the trained context? ctx {} ({} x{})", o.ctx,
                                                                 qroar::to_string(popt.scaling.type), popt.scaling.factor),
                                                     o.ctx, model.config.original_ctx));
    auto j = qroar_cli::perplexity_json(r);
    j["ctx"] = o.ctx;
    j["quant"] = spec.text.empty() ? "none" : spec.text;
    j["scales"] = o.scales_path;
    qroar_cli::write_report_json(report_dir, j);
  }
  if (o.json) {
    auto j = qroar_cli::perplexity_json(r);
    j["ctx"] = o.ctx;
    j["quant"] = spec.text.empty() ? "none" : spec.text;
    if (probe) j["equivariance"] = equivariance_json(report, &*probe);
    j["rope"] = qroar::to_string(popt.scaling.type);
    j["factor"] = popt.scaling.factor;
    j["original_ctx"] = model.config.original_ctx;
    j["seconds"] = secs;
    j["tokens_per_second"] = tps;
    if (!fallbacks.empty()) j["type_fallbacks"] = fallbacks;
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("model {} ({}), trained context {}, RoPE {} x{}\n", o.model_path, model.source_format,
             model.config.original_ctx, qroar::to_string(popt.scaling.type), popt.scaling.factor);
  if (!spec.text.empty()) {
    fmt::print("quantization {}\n  {}\n", spec.text, report.summary());
    if (probe)
      fmt::print("  probe (bands {}): weights change {:.3g}, kv change {:.3g}, fp16 residual {:.3g}\n", o.bands,
                 probe->weights_change, probe->kv_change, probe->weights_fp16_residual);
  }
  fmt::print("ctx {}: {} windows, {} tokens scored\n", o.ctx, r.windows, r.tokens_scored);
  fmt::print("mean NLL {:.6f}  perplexity {:.4f}\n", r.mean_nll, r.ppl);
  fmt::print("{:.0f} tokens/s ({:.2f} s)\n\n{:>8} {:>8} {:>10}\n", tps, secs, "from", "to", "mean NLL");
  for (const auto& b : r.per_position) fmt::print("{:>8} {:>8} {:>10.4f}\n", b.start, b.end, b.mean_nll);
  return 0;
}

const qroar_cli::registrar register_eval{{"eval", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<qroar_cli::model_options>();
  app.description("Perplexity of a model over a text or token stream, with any RoPE scaling");
  app.footer(
      "Examples:\n"
      "  qroar eval --model stories260K.bin --tokens windows.txt --ctx 512 --json\n"
      "  qroar eval --model gutenberg-3m/model-f32.gguf --text book.txt --ctx 1024 --rope yarn --factor 4\n"
      "  qroar eval --model hf-folder --text report.txt --ctx 4096 --rope-config scaled-config.json");
  o->add_to(app);
  auto report = std::make_shared<std::string>();
  app.add_option("--report", *report, "write JSON, CSV and an SVG plot (perplexity against position) into this directory");
  run = [o, report] { return run_eval(*o, *report); };
}}};

}  // namespace
