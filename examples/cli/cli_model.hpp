// The model / text / rope option group shared by eval, quantize, diagnose, search, apply and generate.
#pragma once

#include "cli_common.hpp"
#include "progress.hpp"

#include <fstream>
#include <memory>
#include <sstream>

#include <qroar/io/load_model.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/rope_json.hpp>
#include <qroar/io/text.hpp>
#include <qroar/io/tokenizer.hpp>
#include <qroar/model/perplexity.hpp>

namespace qroar_cli {

struct model_options {
  std::string model_path;
  std::string text_path, tokens_path, tokenizer_path, rope_config;
  int ctx = 0, stride = 0, max_windows = 0, original_ctx = 0, threads = 0, bucket = 0;
  bool json = false, quiet = false;
  rope_options rope;
  CLI::Option* rope_type_opt = nullptr;

  void add_to(CLI::App& app, bool needs_text = true) {
    app.add_option("--model", model_path, "llama2.c .bin, .gguf, or Hugging Face folder")->required();
    if (needs_text) {
      auto* text = app.add_option("--text", text_path, "UTF-8 text file (tokenized with BOS first)")
                       ->check(CLI::ExistingFile);
      auto* toks = app.add_option("--tokens", tokens_path, "file of whitespace-separated token ids (used exactly)")
                       ->check(CLI::ExistingFile);
      text->excludes(toks);
      app.add_option("--ctx", ctx, "evaluation window length in tokens")->required()->check(CLI::Range(2, 1 << 24));
      app.add_option("--stride", stride, "window stride (default: ctx, non-overlapping)")->check(CLI::PositiveNumber);
      app.add_option("--max-windows", max_windows, "evaluate at most this many windows")->check(CLI::PositiveNumber);
      app.add_option("--bucket", bucket, "width of the per-position NLL buckets (default ctx/16)")
          ->check(CLI::PositiveNumber);
    }
    app.add_option("--tokenizer", tokenizer_path, "tokenizer (.model SentencePiece, llama2.c tokenizer.bin, .gguf)")
        ->check(CLI::ExistingFile);
    rope.add_to(app);
    rope_type_opt = app.get_option("--rope");
    app.add_option("--rope-config", rope_config, "config.json with rope_scaling / rope_parameters")
        ->check(CLI::ExistingFile)
        ->excludes(rope_type_opt);
    app.add_option("--original-ctx", original_ctx, "override the trained context length read from the model")
        ->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
    app.add_flag("--json", json, "print one JSON object on stdout");
    app.add_flag("--quiet,-q", quiet, "no progress bars");
  }

  qroar::llama_model load_model() const {
    auto m = qroar::load_model(model_path);
    if (original_ctx > 0) m.config.original_ctx = original_ctx;
    if (m.config.original_ctx <= 0)
      throw usage_error(model_path + ": the model file does not state its trained context; pass --original-ctx");
    return m;
  }

  // The scaling to evaluate with: --rope-config, else the --rope flags, else what the model file records.
  qroar::rope_scaling scaling(const qroar::llama_model& m) const {
    const int l0 = m.config.original_ctx;
    if (!rope_config.empty()) {
      std::ifstream in(rope_config);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw qroar::invalid_argument(rope_config + ": not valid JSON: " + e.what());
      }
      if (!j.contains("rope_scaling") && !j.contains("rope_parameters")) j = nlohmann::json{{"rope_scaling", j}};
      if (!j.contains("head_dim")) j["head_dim"] = m.config.head_size();
      if (!j.contains("max_position_embeddings")) j["max_position_embeddings"] = l0;
      auto s = qroar::parse_hf_rope(j, rope_config).scaling;
      if (s.original_ctx <= 0) s.original_ctx = l0;
      s.validate(m.config.rope_geometry());
      return s;
    }
    if (rope_type_opt && rope_type_opt->count() > 0) {
      auto s = rope.to_scaling(l0);
      s.validate(m.config.rope_geometry());
      return s;
    }
    auto s = m.config.rope;
    if (s.original_ctx <= 0) s.original_ctx = l0;
    return s;
  }

  std::vector<int> token_stream(const qroar::llama_model& m) const {
    if (!tokens_path.empty()) return qroar::read_token_ids(tokens_path, m.config.vocab_size);
    if (text_path.empty()) throw usage_error("one of --text or --tokens is required");
    const auto tok = qroar::load_tokenizer(tokenizer_path, model_path, m.config.vocab_size);
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw qroar::io_error(text_path + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return tok->encode(qroar::strip_gutenberg_boilerplate(ss.str()), true);
  }

  qroar::perplexity_options perplexity(const qroar::llama_model& m) const {
    qroar::perplexity_options o;
    o.ctx = ctx;
    o.stride = stride;
    o.max_windows = max_windows;
    o.bucket = bucket;
    o.threads = threads;
    o.scaling = scaling(m);
    return o;
  }
};

inline nlohmann::ordered_json perplexity_json(const qroar::perplexity_result& r) {
  nlohmann::ordered_json j;
  j["mean_nll"] = r.mean_nll;
  j["ppl"] = r.ppl;
  j["tokens_scored"] = r.tokens_scored;
  j["windows"] = r.windows;
  nlohmann::ordered_json pp = nlohmann::ordered_json::array();
  for (const auto& b : r.per_position) pp.push_back({b.start, b.end, b.mean_nll});
  j["per_position"] = pp;
  return j;
}

}  // namespace qroar_cli
