// qroar apply: fold band scales into W_Q / W_K and write the model (or patch a quantized GGUF's block scales).
#include "cli_export.hpp"

#include <iostream>

#include <qroar/search/band_scales.hpp>
#include <qroar/search/patch_gguf.hpp>
#include <qroar/search/scales_json.hpp>

namespace {

struct apply_options {
  std::string out, format, out_type;
  bool patch = false, refuse_subnormal = false;
};

nlohmann::ordered_json scales_json(const qroar::band_scales& s, const std::string& path) {
  return {{"file", path},
          {"variant", qroar::to_string(s.variant)},
          {"granularity", qroar::to_string(s.granularity)},
          {"bands", s.bands.size()}};
}

nlohmann::ordered_json rope_json(const qroar::rope_scaling& r, int original_ctx) {
  return {{"type", qroar::to_string(r.type)}, {"factor", r.factor},
          {"original_ctx", r.original_ctx > 0 ? r.original_ctx : original_ctx}};
}

// The trained context a band-scales file's provenance records (`qroar search` writes provenance.rope.original_ctx),
// 0 when it records none. The file itself is validated by read_band_scales.
int provenance_original_ctx(const std::string& path) {
  try {
    const auto j = nlohmann::json::parse(qroar::read_regular_file(path, qroar::max_json_bytes, "band-scales JSON"));
    const auto& v = j.at("provenance").at("rope").at("original_ctx");
    return v.is_number_integer() && v.get<long long>() > 0 && v.get<long long>() <= (1 << 24) ? v.get<int>() : 0;
  } catch (const nlohmann::json::exception&) {
    return 0;
  }
}

int run_apply(const qroar_cli::model_options& options, const apply_options& a) {
  // the scales' trained context is the default --original-ctx (warned about when the model file says otherwise)
  qroar_cli::model_options o = options;
  o.provenance_ctx = provenance_original_ctx(o.scales_path);
  o.check_flags("apply");
  o.refuse("apply", {"--quant", "--recipe"},
           "apply folds the scales and keeps the weights' types (quantize with `qroar quantize`, or pass a "
           "quantized GGUF as --model)");
  o.refuse("apply", {"--bands"}, "the scales file states its bands");
  if (a.refuse_subnormal && !a.patch)
    throw qroar_cli::usage_error("--refuse-subnormal needs --patch (a fold re-quantizes: no fp16 block scale is multiplied)");
  const auto format = qroar_cli::choose_output_format(a.out, a.format);
  qroar_cli::check_model_output(o, a.out, format);
  const bool record = (o.rope_type_opt && o.rope_type_opt->count() > 0) || !o.rope_config.empty();
  if (a.patch) {
    // Post-quantization: multiply the stored fp16 block scales, codes untouched (docs/formulas.md §5.3 item 2).
    if (qroar::detect_model_format(o.model_path) != qroar::model_format::gguf)
      throw qroar_cli::usage_error("--patch needs a GGUF input (" + o.model_path + " is not one)");
    if (format != qroar_cli::output_format::gguf)
      throw qroar_cli::usage_error("--patch writes a GGUF: name the output *.gguf (or pass --format gguf)");
    if (!a.out_type.empty()) throw qroar_cli::usage_error("--patch keeps every tensor's type: drop --out-type");
    const auto file = qroar::gguf_file::open(o.model_path);
    qroar::gguf_load_options lo;
    lo.original_ctx = o.effective_original_ctx(qroar::llama_config_from_gguf(file, {}).original_ctx);
    qroar::llama_model shell;  // config only: the scales are validated against it, the rope options read it
    shell.config = qroar::llama_config_from_gguf(file, lo);
    const auto s = qroar::read_band_scales(o.scales_path, shell.config);
    qroar::gguf_patch_options po;
    po.refuse_subnormal = a.refuse_subnormal;
    if (record) {
      po.record_scaling = o.scaling(shell);
      po.original_ctx = shell.config.original_ctx;
    }
    qroar_cli::check_output_file(a.out);  // again: the destination may have changed
    const auto report = qroar::patch_gguf_band_scales(file, s, a.out, po);
    const auto counts = qroar_cli::gguf_type_counts(a.out);
    if (o.json) {
      nlohmann::ordered_json j;
      j["output"] = a.out;
      j["format"] = "gguf";
      j["method"] = "patch";
      j["scales"] = scales_json(s, o.scales_path);
      if (record) j["rope"] = rope_json(*po.record_scaling, shell.config.original_ctx);
      j["tensor_types"] = counts;
      j["patch"] = {{"tensors", report.tensors},
                    {"rows", report.rows},
                    {"scales", report.scales},
                    {"values", report.values},
                    {"subnormal_scales", report.subnormal_scales},
                    {"max_scale_rounding", report.max_scale_rounding},
                    {"warnings", report.warnings}};
      std::cout << qroar_cli::json_text(j) << "\n";
      return 0;
    }
    fmt::print("{} patched with {} ({} {}, {} bands) -> {}\n", o.model_path, o.scales_path, qroar::to_string(s.variant),
               qroar::to_string(s.granularity), s.bands.size(), a.out);
    fmt::print("  {} tensors, {} rows: {} fp16 block scales and {} values multiplied; max scale rounding {:.3g} "
               "(bound {:.3g})\n",
               report.tensors, report.rows, report.scales, report.values, report.max_scale_rounding,
               qroar::patch_gguf_scale_tolerance);
    fmt::print("  tensors: {}\n", qroar_cli::type_counts_text(counts));
    if (report.subnormal_scales > 0)
      fmt::print(stderr, "qroar: warning: {} scales became fp16 subnormals (first: {})\n", report.subnormal_scales,
                 report.warnings.front());
    return 0;
  }

  // Fold into the float weights (model_options::load_model applies --scales), then write (GGUF: the input's tensor
  // types, re-quantizing W_Q / W_K).
  auto model = o.load_model();
  const auto s = qroar::read_band_scales(o.scales_path, model.config);
  if (record) model.config.rope = o.scaling(model);
  qroar::gguf_export_options g;
  if (!a.out_type.empty()) {
    if (format != qroar_cli::output_format::gguf) throw qroar_cli::usage_error("--out-type applies to GGUF output");
    const auto t = qroar::ggml_type_from_string(a.out_type);
    g.storage = t == qroar::ggml_type::f32    ? qroar::gguf_storage::f32
                : t == qroar::ggml_type::f16  ? qroar::gguf_storage::f16
                : t == qroar::ggml_type::bf16 ? qroar::gguf_storage::bf16
                                              : qroar::gguf_storage::quantized;
    g.quant_type = t;
  } else {
    g.storage = qroar::gguf_storage::like_source;  // f32 when the input is not a GGUF
  }
  const std::string note = qroar_cli::write_model(o, model, a.out, format, g);
  std::map<std::string, int> counts;
  if (format == qroar_cli::output_format::gguf) counts = qroar_cli::gguf_type_counts(a.out);
  if (o.json) {
    nlohmann::ordered_json j;
    j["output"] = a.out;
    j["format"] = qroar_cli::to_string(format);
    j["method"] = "fold";
    j["scales"] = scales_json(s, o.scales_path);
    j["rope"] = rope_json(model.config.rope, model.config.original_ctx);
    if (format == qroar_cli::output_format::gguf) j["tensor_types"] = counts;
    if (!note.empty()) j["note"] = note;
    std::cout << qroar_cli::json_text(j) << "\n";
    return 0;
  }
  fmt::print("{} ({}) with {} ({} {}, {} bands) folded into W_Q / W_K -> {} ({})\n", o.model_path, model.source_format,
             o.scales_path, qroar::to_string(s.variant), qroar::to_string(s.granularity), s.bands.size(), a.out,
             qroar_cli::to_string(format));
  fmt::print("  RoPE recorded: {} x{}\n", qroar::to_string(model.config.rope.type), model.config.rope.factor);
  if (format == qroar_cli::output_format::gguf) fmt::print("  tensors: {}\n", qroar_cli::type_counts_text(counts));
  if (!note.empty()) fmt::print(stderr, "qroar: note: {}\n", note);
  return 0;
}

const qroar_cli::registrar register_apply{{"apply", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<qroar_cli::model_options>();
  auto a = std::make_shared<apply_options>();
  app.description("Fold band scales into W_Q / W_K and write the model, recording a RoPE scaling");
  app.footer(
      "Output format: *.gguf -> GGUF, *.bin -> llama2.c, a folder or any other name -> Hugging Face (or --format).\n"
      "GGUF output keeps the input GGUF's tensor types (W_Q / W_K are re-quantized from the scaled weights) unless\n"
      "--out-type is given; --patch instead multiplies the stored fp16 block scales of a GGUF input (no\n"
      "re-quantization; exact for factors 2^k). --rope/--factor/... or --rope-config are recorded in the output.\n"
      "Examples:\n"
      "  qroar apply --model stories260K.bin --scales scales.json -o scaled.gguf --rope yarn-ggml --factor 4\n"
      "  qroar apply --model gutenberg-3m-q4_K.gguf --scales scales.json -o patched.gguf --patch\n"
      "  qroar apply --model gutenberg-3m/hf --scales scales.json -o scaled-hf --rope yarn --factor 4");
  o->add_to(app, false);
  app.get_option("--scales")->required();  // the shared option group's --scales (folded by load_model)
  app.add_option("-o,--output", a->out, "output path (.gguf, .bin, or a folder)")->required();
  app.add_option("--format", a->format, "output format: hf, gguf or llama2c (default: from the output name)")
      ->check(CLI::IsMember({"hf", "gguf", "llama2c"}));
  app.add_flag("--patch", a->patch, "GGUF input: multiply stored block scales instead of re-quantizing");
  app.add_flag("--refuse-subnormal", a->refuse_subnormal, "--patch: fail when a scale would become an fp16 subnormal");
  app.get_option("--original-ctx")->description(
      "trained context recorded in the output (default: the scales file's provenance, else the model file's)");
  app.add_option("--out-type", a->out_type, "GGUF output storage: f32, f16, bf16 or a ggml type (default: the input's)");
  run = [o, a] { return run_apply(*o, *a); };
}}};

}  // namespace
