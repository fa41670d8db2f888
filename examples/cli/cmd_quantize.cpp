// qroar quantize: write a quantized model (a real ggml-quantized GGUF, or RTN/GPTQ weights dequantized to f32).
#include "cli_export.hpp"

#include <iostream>

namespace {

struct quantize_options {
  std::string out, format;
};

int run_quantize(const qroar_cli::model_options& o, const quantize_options& q) {
  o.check_flags("quantize", /*calib_probe=*/true);
  const auto spec = o.quant_spec();
  if (!spec.quantizes_weights())
    throw qroar_cli::usage_error("--quant must quantize the weights (rtn:..., gptq:... or ggml:<type>), got '" + o.quant + "'");
  const bool ggml = spec.weights.method == qroar::weight_method::ggml;
  const auto format = qroar_cli::choose_output_format(q.out, q.format);
  qroar_cli::check_model_output(o, q.out, format);
  if (ggml && format != qroar_cli::output_format::gguf)
    throw qroar_cli::usage_error("a ggml spec writes a quantized GGUF: name the output *.gguf (or pass --format gguf)");
  if (spec.weights.method == qroar::weight_method::gptq && o.calib_path.empty())
    throw qroar_cli::usage_error("GPTQ (--quant gptq:...) needs --calib FILE (token ids or text)");
  auto model = o.load_model();
  // --rope/--factor/... or --rope-config: recorded in the output like `qroar apply` does (a llama2.c file cannot
  // hold one: unsupported, exit 1)
  const bool record = o.given("--rope") || !o.rope_config.empty();
  if (record) model.config.rope = o.scaling(model);

  // The equivariance report of the spec, analytic and probed, on the unquantized weights (as `eval --quant` does).
  const auto bands = o.band_partition(model);
  const auto report = qroar::is_row_scale_equivariant(spec, bands, model.config.rope_geometry());
  std::vector<int> sample;
  if (!o.calib_path.empty()) {
    const auto ids = o.read_stream(o.calib_path, model, 128);  // the probe takes the first 128 tokens
    sample.assign(ids.begin(), ids.begin() + static_cast<long>(std::min<std::size_t>(ids.size(), 128)));
  }
  const auto probe = qroar::probe_row_scale_equivariance(model, spec, bands, sample);
  const auto fallbacks = qroar_cli::report_ggml_fallbacks(model, spec);

  std::string note;
  if (ggml) {
    // Quantized straight from the float weights with ggml's reference quantizers: the file dequantizes to exactly
    // what `eval --quant ggml:<type>` simulates.
    qroar::gguf_export_options g;
    g.storage = qroar::gguf_storage::quantized;
    g.quant_type = spec.weights.ggml;
    if (spec.weights.llamacpp_recipe) {  // llama.cpp's per-tensor types for that file type, embeddings included
      g.storage = qroar::gguf_storage::llamacpp_recipe;
      g.recipe = *spec.weights.llamacpp_recipe;
    }
    note = qroar_cli::write_model(o, model, q.out, format, g);
  } else {
    o.quantize(model, spec);  // the same RTN / GPTQ path as `eval --quant`
    note = qroar_cli::write_model(o, model, q.out, format, {});
  }
  std::string runtime;
  if (spec.kv.enabled() || spec.activations.enabled())
    runtime = "the kv/act parts of the spec are not stored in weights: pass them to eval --quant";
  std::map<std::string, int> counts;
  if (format == qroar_cli::output_format::gguf) counts = qroar_cli::gguf_type_counts(q.out);

  if (o.json) {
    nlohmann::ordered_json j;
    j["output"] = q.out;
    j["format"] = qroar_cli::to_string(format);
    j["quant"] = spec.text;
    if (spec.weights.llamacpp_recipe) j["llamacpp_file_type"] = qroar::to_string(*spec.weights.llamacpp_recipe);
    j["weights"] = ggml ? "ggml blocks" : "dequantized f32";
    if (format == qroar_cli::output_format::gguf) j["tensor_types"] = counts;
    j["equivariance"] = qroar_cli::equivariance_report_json(report, probe);
    j["bands"] = o.bands;
    if (record)
      j["rope"] = {{"type", qroar::to_string(model.config.rope.type)}, {"factor", model.config.rope.factor},
                   {"original_ctx", model.config.rope.original_ctx}};
    if (!fallbacks.empty()) j["type_fallbacks"] = fallbacks;
    if (!note.empty()) j["note"] = note;
    if (!runtime.empty()) j["runtime_parts"] = runtime;
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("{} ({}) quantized with {} -> {} ({}{})\n", o.model_path, model.source_format, spec.text, q.out,
             qroar_cli::to_string(format), ggml ? ", ggml blocks" : ", dequantized f32 weights");
  if (format == qroar_cli::output_format::gguf) fmt::print("  tensors: {}\n", qroar_cli::type_counts_text(counts));
  if (record) fmt::print("  RoPE recorded: {} x{}\n", qroar::to_string(model.config.rope.type), model.config.rope.factor);
  fmt::print("  equivariance: {}\n", report.summary());
  fmt::print("  probe (bands {}): weights change {:.3g}, kv change {:.3g}, fp16 residual {:.3g}\n", o.bands,
             probe.weights_change, probe.kv_change, probe.weights_fp16_residual);
  if (!runtime.empty()) fmt::print("  note: {}\n", runtime);
  if (!note.empty()) fmt::print(stderr, "qroar: note: {}\n", note);
  return 0;
}

const qroar_cli::registrar register_quantize{{"quantize", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<qroar_cli::model_options>();
  auto q = std::make_shared<quantize_options>();
  app.description("Write a quantized model: ggml specs a real quantized GGUF, rtn/gptq specs dequantized weights");
  app.footer(
      "Output format: *.gguf -> GGUF, *.bin -> llama2.c, a folder or any other name -> Hugging Face (or --format).\n"
      "ggml:<type> writes ggml blocks (GGUF only); rtn/gptq write the dequantized f32 weights. Re-reading the output\n"
      "with `qroar eval` gives exactly what `qroar eval --quant SPEC` simulates. --rope/--factor/... or --rope-config\n"
      "are recorded in the output (GGUF, Hugging Face; a llama2.c file cannot hold a scaling).\n"
      "Examples:\n"
      "llama.cpp's file types: ggml:q4_K_M (q4_K_S, q5_K_M, q5_K_S), or --recipe llama.cpp with a single type, choose\n"
      "per tensor the types llama.cpp's quantizer chooses (embeddings, output, attn_v, ffn_down, fallbacks).\n"
      "  qroar quantize --model stories260K.bin --quant ggml:q4_0 -o stories260K-q4_0.gguf\n"
      "  qroar quantize --model gutenberg-3m/model-f32.gguf --quant ggml:q4_K_M -o g3m-Q4_K_M.gguf\n"
      "  qroar quantize --model gutenberg-3m/hf --quant rtn:w4:g32:sym -o g3m-rtn4\n"
      "  qroar quantize --model model.bin --quant gptq:w4:g128 --calib tokens.txt --calib-ctx 256 -o model-gptq.bin");
  o->add_to(app, false);
  app.get_option("--quant")->required();
  app.add_option("-o,--output", q->out, "output path (.gguf, .bin, or a folder)")->required();
  app.add_option("--format", q->format, "output format: hf, gguf or llama2c (default: from the output name)")
      ->check(CLI::IsMember({"hf", "gguf", "llama2c"}));
  run = [o, q] { return run_quantize(*o, *q); };
}}};

}  // namespace
