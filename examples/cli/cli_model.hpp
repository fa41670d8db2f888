// The model / text / rope option group shared by eval, quantize, diagnose, search, apply and generate.
#pragma once

#include "cli_common.hpp"
#include "cli_outputs.hpp"
#include "progress.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include <unistd.h>

#include <qroar/io/load_model.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/read_file.hpp>
#include <qroar/io/text_tokens.hpp>
#include <qroar/io/rope_json.hpp>
#include <qroar/io/text.hpp>
#include <qroar/io/tokenizer.hpp>
#include <qroar/model/perplexity.hpp>
#include <qroar/quant/equivariance.hpp>
#include <qroar/quant/gptq.hpp>
#include <qroar/quant/kv_cache.hpp>
#include <qroar/quant/weights.hpp>
#include <qroar/search/scales_json.hpp>

namespace qroar_cli {

// Refuses a window length before anything is allocated for it: outside [2, max_context_tokens], or when one window
// (window_memory_bytes) would need more than the machine's physical memory (invalid_argument, exit 2).
inline void check_window_fits(const qroar::llama_config& c, long long ctx, const char* what) {
  qroar::check_context_length(ctx, what);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;
  const auto physical = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
  const std::uint64_t need = qroar::window_memory_bytes(c, static_cast<std::uint64_t>(ctx));
  if (need > physical)
    throw qroar::invalid_argument(std::string(what) + " " + std::to_string(ctx) + ": one window needs about " +
                                  std::to_string(need >> 20) + " MiB, more than the machine's " +
                                  std::to_string(physical >> 20) + " MiB of memory");
}

// True when `path` parses, to its last byte, as a llama2.c tokenizer.bin: int32 max_token_length, then per token a
// finite float score, an int32 length in [0, max_token_length] and that many bytes (at least 2 tokens).
inline bool is_llama2c_tokenizer_file(const std::string& path, int* tokens = nullptr) {
  const qroar::mapped_file file(path);
  const auto* p = reinterpret_cast<const unsigned char*>(file.data());
  const std::uint64_t size = file.size();
  auto i32 = [&](std::uint64_t at) {
    std::int32_t v;
    std::memcpy(&v, p + at, 4);
    return v;
  };
  if (size < 4) return false;
  const std::int32_t max_len = i32(0);
  if (max_len <= 0 || max_len > 4096) return false;
  std::uint64_t at = 4;
  int n = 0;
  while (at < size) {
    if (size - at < 8) return false;
    float score;
    std::memcpy(&score, p + at, 4);
    const std::int32_t len = i32(at + 4);
    if (!std::isfinite(score) || len < 0 || len > max_len || size - at - 8 < static_cast<std::uint64_t>(len)) return false;
    at += 8 + static_cast<std::uint64_t>(len);
    ++n;
  }
  if (tokens) *tokens = n;
  return n >= 2;
}

struct model_options {
  std::string model_path;
  std::string text_path, tokens_path, tokenizer_path, rope_config;
  std::string quant, recipe, calib_path, bands = "equal:4", scales_path;
  int calib_ctx = 0, calib_windows = 4;
  int ctx = 0, stride = 0, max_windows = 0, original_ctx = 0, threads = 0, bucket = 0;
  // apply: the trained context the scales file's provenance records (0: none), the default for --original-ctx
  int provenance_ctx = 0;
  bool json = false, quiet = false;
  rope_options rope;
  CLI::Option* rope_type_opt = nullptr;
  mutable std::shared_ptr<qroar::tokenizer> tokenizer_;
  CLI::App* app_ = nullptr;

  void add_to(CLI::App& app, bool needs_text = true) {
    app_ = &app;
    app.add_option("--model", model_path, "llama2.c .bin, .gguf, or Hugging Face folder")->required()->check(existing_path);
    if (needs_text) {
      auto* text = app.add_option("--text", text_path, "UTF-8 text file (Gutenberg header/footer dropped; tokenized with the tokenizer's BOS)")
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
    app.add_option("--tokenizer", tokenizer_path, "tokenizer: tokenizer.json, SentencePiece .model, GGUF or llama2.c tokenizer.bin (recognised by content), or a folder with one")
        ->check(CLI::ExistingPath);
    rope.add_to(app);
    rope_type_opt = app.get_option("--rope");
    app.add_option("--rope-config", rope_config, "config.json with rope_scaling / rope_parameters")
        ->check(CLI::ExistingFile)
        ->excludes(rope_type_opt);
    app.add_option("--quant", quant, "simulated quantization spec, e.g. rtn:w4:g32:sym, ggml:q4_0, "
                   "kv:k4:token:g8:post-rope, or parts joined with '+' (docs/quantization.md)");
    app.add_option("--recipe", recipe,
                   "llama.cpp: a ggml spec as llama.cpp's file type of that name (ggml:q4_0 -> its Q4_0 file: token_embd, "
                   "output, attn_v, ffn_down and fallbacks as llama.cpp's quantizer chooses); ggml:q4_K_M etc. imply it")
        ->check(CLI::IsMember({"llama.cpp"}));
    app.add_option("--scales", scales_path, "band-scales JSON (from qroar search) folded into W_Q/W_K before quantizing")
        ->check(CLI::ExistingFile);
    app.add_option("--calib", calib_path, "GPTQ calibration data: token-id file or text")->check(CLI::ExistingFile);
    app.add_option("--calib-ctx", calib_ctx, "GPTQ calibration window length (default: trained context)")
        ->check(CLI::PositiveNumber);
    app.add_option("--calib-windows", calib_windows, "GPTQ calibration windows")->check(CLI::PositiveNumber);
    app.add_option("--bands", bands, "band partition: by-wavelength, equal:N or edges:a,b,... (default equal:4)");
    app.add_option("--original-ctx", original_ctx, "override the trained context length read from the model")
        ->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
    app.add_flag("--json", json, "print one JSON object on stdout");
    app.add_flag("--quiet,-q", quiet, "no progress bars");
  }

  // True when `flag` (a name of this option group) was given on the command line.
  bool given(const std::string& flag) const {
    const auto* op = app_ ? app_->get_option_no_throw(flag) : nullptr;
    return op != nullptr && op->count() > 0;
  }

  // Flags of the group that `command` would not read: each one given is a usage error naming it and `why`.
  void refuse(const std::string& command, const std::vector<std::string>& flags, const std::string& why) const {
    for (const auto& f : flags)
      if (given(f)) throw usage_error(f + " has no effect on `qroar " + command + "`: " + why);
  }

  // The checks every command runs first: RoPE parameter flags that would be ignored (rope_options::
  // check_parameters), and the GPTQ calibration flags without a GPTQ spec (`calib_probe`: quantize also reads
  // --calib for the equivariance probe's tokens).
  void check_flags(const std::string& command, bool calib_probe = false) const {
    rope.check_parameters(!rope_config.empty());
    if (!calib_probe && parse_quant_text_is_gptq() == false)
      refuse(command, {"--calib", "--calib-ctx", "--calib-windows"},
             "the calibration flags are read by GPTQ only (--quant gptq:...)");
    if (calib_probe && parse_quant_text_is_gptq() == false)
      refuse(command, {"--calib-ctx", "--calib-windows"}, "the calibration windows are read by GPTQ only (--quant gptq:...)");
  }
  bool parse_quant_text_is_gptq() const {
    return !quant.empty() && qroar::parse_quant_spec(quant).weights.method == qroar::weight_method::gptq;
  }

  // Every input path of the option group (empty ones included; declare_inputs skips them).
  std::vector<std::string> input_paths() const {
    return {model_path, text_path, tokens_path, tokenizer_path, rope_config, calib_path, scales_path};
  }

  // The tokenizer of --tokenizer or of the model, opened once. `rows` > 0: checked against the model's embedding
  // rows (check_tokenizer_fits).
  const qroar::tokenizer& tokenizer(int rows = 0) const {
    if (!tokenizer_) tokenizer_ = qroar::load_tokenizer(tokenizer_path, model_path, rows);
    if (rows > 0) qroar::check_tokenizer_fits(*tokenizer_, rows, tokenizer_name(), model_path);
    return *tokenizer_;
  }
  std::string tokenizer_name() const { return tokenizer_path.empty() ? "of " + model_path : tokenizer_path; }

  // True when `path` is a token-id file: every byte a digit or whitespace (not only the first 64: a text may start
  // with "1984 1985").
  // Read in 1 MiB blocks (a text usually ends the scan at its first block).
  static bool is_token_id_file(const std::string& path) {
    const qroar::detail::pread_file file(path);  // regular files only (a device, FIFO or a link to one: io_error)
    if (file.size() > qroar::max_text_bytes)
      throw qroar::io_error(path + ": " + std::to_string(file.size()) + " bytes, more than the " +
                            std::to_string(qroar::max_text_bytes) + "-byte limit for a text or token-id file");
    if (file.size() == 0) return false;
    for (std::uint64_t at = 0; at < file.size(); at += std::uint64_t{1} << 20) {  // 1 MiB blocks, never mapped whole
      const std::string b = file.read(at, std::min(file.size(), at + (std::uint64_t{1} << 20)));
      if (!std::all_of(b.begin(), b.end(), [](char ch) {
            return (ch >= '0' && ch <= '9') || ch == ' ' || (ch >= '\t' && ch <= '\r');
          }))
        return false;
    }
    return true;
  }

  // Opens the tokenizer now when one of `files` is text, so that a missing or broken tokenizer is reported before
  // the weights load.
  void open_tokenizer_for(const std::vector<std::string>& files) const {
    for (const auto& f : files)
      if (!is_token_id_file(f)) {
        (void)tokenizer();
        return;
      }
  }

  // The model's embedding rows from its metadata alone (config.json, GGUF keys and tensor shapes, llama2.c
  // header), without loading weights; 0 when they cannot be read that way (load_model then reports why).
  int embedding_rows() const {
    try {
      switch (qroar::detect_model_format(model_path)) {
        case qroar::model_format::hf_folder: {
          namespace fs = std::filesystem;
          const fs::path p(model_path);
          const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
          const std::string cfg = (dir / "config.json").string();
          const auto config = nlohmann::json::parse(qroar::read_regular_file(cfg, qroar::max_json_bytes, "config.json"));
          return qroar::parse_hf_llama_config(config, cfg).vocab_size;
        }
        case qroar::model_format::gguf:
          return qroar::llama_config_from_gguf(qroar::gguf_file::open(model_path)).vocab_size;
        case qroar::model_format::llama2c:
        case qroar::model_format::unknown:
          return 0;  // load_tokenizer reads a llama2.c header's vocabulary size itself
      }
    } catch (const qroar::error&) {
    } catch (const nlohmann::json::exception&) {
    }
    return 0;
  }

  // Loads the model, applies --original-ctx and folds --scales into W_Q/W_K. With --text (or a text --calib), the
  // tokenizer is opened first and checked against the embedding rows the metadata states: a missing, broken or
  // foreign tokenizer is reported before the weights load.
  qroar::llama_model load_model() const {
    if (qroar::detect_model_format(model_path) == qroar::model_format::llama2c) {
      int tokens = 0;
      if (is_llama2c_tokenizer_file(model_path, &tokens))
        throw qroar::format_error(model_path, "", 0, "not a model: a llama2.c tokenizer file (" + std::to_string(tokens) +
                                                         " tokens); pass it as --tokenizer, and the checkpoint as --model");
    }
    if (!text_path.empty() && tokens_path.empty()) (void)tokenizer(embedding_rows());
    if (!calib_path.empty()) open_tokenizer_for({calib_path});
    auto m = qroar::load_model(model_path);
    m.config.original_ctx = effective_original_ctx(m.config.original_ctx);
    if (m.config.original_ctx <= 0)
      throw usage_error(model_path + ": the model file does not state its trained context; pass --original-ctx");
    if (!scales_path.empty()) qroar::apply_band_scales(m, qroar::read_band_scales(scales_path, m.config));
    return m;
  }

  // The trained context to use for a model file that states `file_ctx`: --original-ctx, else the scales
  // provenance's (apply), else the file's. A provenance that disagrees with the choice is warned about on stderr.
  int effective_original_ctx(int file_ctx) const {
    if (original_ctx > 0) {
      if (provenance_ctx > 0 && provenance_ctx != original_ctx)
        fmt::print(stderr, "qroar: warning: --original-ctx {} differs from the trained context {} the scales file {} "
                   "was searched with\n", original_ctx, provenance_ctx, scales_path);
      return original_ctx;
    }
    if (provenance_ctx > 0) {
      if (file_ctx != provenance_ctx)
        fmt::print(stderr, "qroar: warning: {} states a trained context of {}, the scales file {} was searched with "
                   "{}: using {} (pass --original-ctx to choose)\n", model_path, file_ctx, scales_path, provenance_ctx,
                   provenance_ctx);
      return provenance_ctx;
    }
    return file_ctx;
  }

  // The scaling to evaluate with: --rope-config, else the --rope flags, else what the model file records.
  qroar::rope_scaling scaling(const qroar::llama_model& m) const {
    const int l0 = m.config.original_ctx;
    if (!rope_config.empty()) {
      const std::string text = qroar::read_regular_file(rope_config, qroar::max_json_bytes, "RoPE config JSON");
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(text);
      } catch (const nlohmann::json::exception& e) {
        throw qroar::invalid_argument(rope_config + ": not valid JSON: " + e.what());
      }
      // a config.json (rope_scaling / rope_parameters, null meaning plain RoPE), or a bare rope_scaling object that
      // names its type; anything else ({}, a misspelt key, "yarn", [1,2,3], null, 42) says nothing and is refused
      if (!j.is_object())
        throw qroar::invalid_argument(rope_config + ": --rope-config needs a JSON object (a config.json or a rope_scaling "
                                      "object), got " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!j.contains("rope_scaling") && !j.contains("rope_parameters")) {
        if (!j.contains("rope_type") && !j.contains("type"))
          throw qroar::invalid_argument(rope_config + ": no RoPE settings: neither 'rope_scaling' nor 'rope_parameters' "
                                        "(a config.json) nor 'rope_type' / 'type' (a rope_scaling object)");
        j = nlohmann::json{{"rope_scaling", j}};
      }
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

  // The --tokens ids, or the --text tokens. With `prefix_only` and --max-windows, only the tokens those windows
  // need are tokenized (encode_text_file): a huge text costs what its first windows cost. `window_stride` > 0
  // overrides --stride (diagnose: non-overlapping windows, one when --max-windows is not given).
  std::vector<int> token_stream(const qroar::llama_model& m, bool prefix_only = false, int window_stride = 0) const {
    if (ctx > 0) check_window_fits(m.config, ctx, "--ctx");  // before any text is read for it
    std::uint64_t needed = 0;
    const int windows = max_windows > 0 ? max_windows : window_stride > 0 ? 1 : 0;
    const int step = window_stride > 0 ? window_stride : stride > 0 ? stride : ctx;
    if (prefix_only && windows > 0 && ctx > 0)
      needed = static_cast<std::uint64_t>(windows - 1) * static_cast<std::uint64_t>(step) + static_cast<std::uint64_t>(ctx);
    if (!tokens_path.empty()) return read_ids(tokens_path, m.config.vocab_size, needed);
    if (text_path.empty()) throw usage_error("one of --text or --tokens is required");
    require_text_file(text_path);
    const auto& tok = tokenizer(m.config.vocab_size);
    auto ids = qroar::encode_text_file(text_path, tok, needed);
    qroar::check_tokenizer_fits(tok, m.config.vocab_size, tokenizer_name(), model_path, &ids);
    return ids;
  }

  qroar::quant_spec quant_spec() const {
    auto spec = qroar::parse_quant_spec(quant);
    if (recipe == "llama.cpp") {
      if (spec.weights.method != qroar::weight_method::ggml)
        throw usage_error("--recipe llama.cpp needs a ggml weight spec (ggml:q4_0, ggml:q6_K, ...), got '" + quant + "'");
      if (!spec.weights.llamacpp_recipe) spec.weights.llamacpp_recipe = qroar::llama_file_type_of(spec.weights.ggml);
    }
    return spec;
  }

  // Band partition of the model's pairs (capped at one band per pair for equal:N).
  qroar::band_partition band_partition(const qroar::llama_model& m) const {
    const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), m.config.rope_geometry());
    std::string spec = bands;
    if (spec.rfind("equal:", 0) == 0) {
      const int n = std::atoi(spec.c_str() + 6);
      if (n > static_cast<int>(inv.size())) spec = "equal:" + std::to_string(inv.size());
    }
    return qroar::bands_from_spec(spec, inv, m.config.original_ctx);
  }

  // The ids of a token-id file, only its first `needed` ones when `needed` > 0 (token_id_stream: the rest of the
  // file is not read), else all of them.
  static std::vector<int> read_ids(const std::string& path, int vocab_size, std::uint64_t needed) {
    if (needed == 0) return qroar::read_token_ids(path, vocab_size);
    qroar::token_id_stream s(path, vocab_size);
    std::vector<int> ids;
    while (ids.size() < needed && s(ids)) {
    }
    if (ids.size() > needed) ids.resize(static_cast<std::size_t>(needed));
    return ids;
  }

  // The --tokens ids or the --text tokens pulled piece by piece (evaluate_perplexity_stream): memory stays at one
  // piece of the file and its tokens, whatever the file's size (text_token_stream, token_id_stream). Each text
  // token is checked against the model's embedding rows as check_tokenizer_fits does.
  qroar::token_pull token_pull(const qroar::llama_model& m) const {
    if (ctx > 0) check_window_fits(m.config, ctx, "--ctx");  // before any text is read for it
    const int rows = m.config.vocab_size;
    if (!tokens_path.empty()) {
      auto s = std::make_shared<qroar::token_id_stream>(tokens_path, rows);
      return [s](std::vector<int>& out) { return (*s)(out); };
    }
    if (text_path.empty()) throw usage_error("one of --text or --tokens is required");
    require_text_file(text_path);
    const auto& tok = tokenizer(rows);
    auto s = std::make_shared<qroar::text_token_stream>(text_path, tok);
    auto count = std::make_shared<long long>(0);
    const std::string sizes = "the tokenizer " + tokenizer_name() + " has " + std::to_string(tok.vocab_size()) +
                              " tokens, the model " + model_path + " " + std::to_string(rows) + " embedding rows";
    return [s, count, rows, sizes](std::vector<int>& out) {
      const std::size_t before = out.size();
      const bool more = (*s)(out);
      for (std::size_t i = before; i < out.size(); ++i, ++*count)
        if (out[i] < 0 || out[i] >= rows)
          throw qroar::invalid_argument("tokenizer and model do not belong together: token " + std::to_string(*count) +
                                        " is id " + std::to_string(out[i]) + ", beyond the embedding rows; " + sizes);
      return more;
    };
  }

  // A token-id file when every byte is a digit or whitespace (not only the first 64: a text may start with
  // "1984 1985"), else a text. With `needed` > 0 a text is tokenized only as far as its first `needed` tokens
  // (encode_text_file): --dev, --validation and --calib cost what their windows need, not what the file holds.
  std::vector<int> read_stream(const std::string& path, const qroar::llama_model& m, std::uint64_t needed = 0) const {
    const bool ids = is_token_id_file(path);
    if (ids) return read_ids(path, m.config.vocab_size, needed);
    require_text_file(path);  // not text (NUL bytes, mostly control bytes or invalid UTF-8): refused
    const auto& tok = tokenizer(m.config.vocab_size);
    auto stream = qroar::encode_text_file(path, tok, needed);
    qroar::check_tokenizer_fits(tok, m.config.vocab_size, tokenizer_name(), model_path, &stream);
    return stream;
  }

  // Applies the weight part of --quant to `m` in place (GPTQ calibrates on --calib) and returns the forward hooks
  // of its KV/activation parts.
  qroar::forward_hooks quantize(qroar::llama_model& m, const qroar::quant_spec& spec) const {
    if (spec.weights.method == qroar::weight_method::gptq) {
      if (calib_path.empty()) throw usage_error("GPTQ (--quant gptq:...) needs --calib FILE (token ids or text)");
      const int len = calib_ctx > 0 ? calib_ctx : m.config.original_ctx;
      check_window_fits(m.config, len, "--calib-ctx");
      const auto ids = read_stream(calib_path, m, static_cast<std::uint64_t>(calib_windows) * static_cast<std::uint64_t>(len));
      std::vector<std::vector<int>> windows;
      for (std::size_t s = 0; s + static_cast<std::size_t>(len) <= ids.size() && static_cast<int>(windows.size()) < calib_windows;
           s += static_cast<std::size_t>(len))
        windows.emplace_back(ids.begin() + static_cast<long>(s), ids.begin() + static_cast<long>(s) + len);
      if (windows.empty()) throw usage_error(calib_path + ": fewer calibration tokens than one window of " + std::to_string(len));
      progress_bar bar("gptq", quiet || json);
      qroar::gptq_quantize_model(m, windows, spec.weights, qroar::rope_scaling::none(), threads,
                                 [&](int d, int t) { bar.update(d, t); });
    } else {
      qroar::quantize_weights(m, spec.weights);
    }
    return qroar::make_quant_hooks(spec, m.config);
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

// The tensors a plain ggml:<type> weight spec stores in another type: rows whose length is not a multiple of the
// type's block size fall back to q8_0 (f32 when not a multiple of 32; quant/weights.hpp ggml_type_for_row). Each fallback is warned about on stderr and returned as JSON ("type_fallbacks" of eval, quantize and
// search --json): {"tensors": "blk.*.ffn_down", "count", "row_length", "requested", "used"}. llama.cpp recipes
// (--recipe llama.cpp, ggml:q4_K_M, ...) choose per tensor types themselves and are not reported here.
inline nlohmann::ordered_json report_ggml_fallbacks(const qroar::llama_model& m, const qroar::quant_spec& spec) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  if (spec.weights.method != qroar::weight_method::ggml || spec.weights.llamacpp_recipe) return out;
  struct group {
    const char* name;
    long long cols;
    qroar::ggml_type used;
    int count;
  };
  std::vector<group> groups;
  for (const auto& L : m.layers) {
    const std::pair<const char*, const qroar::tensor*> ws[] = {{"attn_q", &L.wq},     {"attn_k", &L.wk},
                                                                {"attn_v", &L.wv},     {"attn_output", &L.wo},
                                                                {"ffn_gate", &L.w1},   {"ffn_down", &L.w2},
                                                                {"ffn_up", &L.w3}};
    for (const auto& [name, w] : ws) {
      const auto used = qroar::ggml_type_for_row(spec.weights.ggml, w->cols());
      if (used == spec.weights.ggml) continue;
      auto it = std::find_if(groups.begin(), groups.end(), [&](const group& g) {
        return std::string(g.name) == name && g.cols == w->cols() && g.used == used;
      });
      if (it == groups.end()) groups.push_back({name, static_cast<long long>(w->cols()), used, 1});
      else ++it->count;
    }
  }
  const std::string requested = qroar::to_string(spec.weights.ggml);
  std::vector<bool> said(groups.size(), false);
  for (std::size_t i = 0; i < groups.size(); ++i) {  // one warning line per (row length, type used)
    const auto& g = groups[i];
    out.push_back({{"tensors", std::string("blk.*.") + g.name}, {"count", g.count}, {"row_length", g.cols},
                   {"requested", requested}, {"used", qroar::to_string(g.used)}});
    if (said[i]) continue;
    std::string names;
    int count = 0;
    for (std::size_t k = i; k < groups.size(); ++k)
      if (groups[k].cols == g.cols && groups[k].used == g.used) {
        names += (names.empty() ? "" : ",") + std::string(groups[k].name);
        count += groups[k].count;
        said[k] = true;
      }
    fmt::print(stderr,
               "qroar: warning: {} needs rows of a multiple of {} values: blk.*.{{{}}} ({} tensors, rows of {}) are "
               "stored as {} (ggml_type_for_row; --recipe llama.cpp chooses types as llama-quantize does)\n",
               requested, qroar::ggml_traits(spec.weights.ggml).block_size, names, count, g.cols,
               qroar::to_string(g.used));
  }
  return out;
}

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
