// Shared pieces of `qroar quantize` and `qroar apply`: output format, tokenizer to embed, writing a model.
#pragma once

#include "cli_model.hpp"

#include <filesystem>
#include <map>
#include <optional>
#include <variant>

#include <qroar/io/gguf_model.hpp>
#include <qroar/io/hf_gguf_vocabulary.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c.hpp>
#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/load_tokenizer.hpp>
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
#include <qroar/io/sentencepiece_tokenizer.hpp>
#endif

namespace qroar_cli {

enum class output_format { hf, gguf, llama2c };

inline const char* to_string(output_format f) {
  return f == output_format::hf ? "hf" : f == output_format::gguf ? "gguf" : "llama2c";
}

// --format when given, else from OUT: *.gguf -> gguf, *.bin -> llama2c, anything else (a directory, a name without
// one of those extensions) -> a Hugging Face folder.
inline output_format choose_output_format(const std::string& out, const std::string& forced) {
  if (forced == "gguf") return output_format::gguf;
  if (forced == "llama2c" || forced == "bin") return output_format::llama2c;
  if (forced == "hf") return output_format::hf;
  if (!forced.empty()) throw usage_error("--format must be hf, gguf or llama2c, not '" + forced + "'");
  const std::string ext = std::filesystem::path(out).extension().string();
  if (ext == ".gguf") return output_format::gguf;
  if (ext == ".bin") return output_format::llama2c;
  return output_format::hf;
}

// Declares the command's inputs and checks the model output (a file, or a Hugging Face folder) before the work.
inline void check_model_output(const model_options& o, const std::string& out, output_format format) {
  declare_inputs(o.input_paths());
  if (format == output_format::hf) check_output_folder(out);
  else check_output_file(out);
}

// The vocabulary to embed in a GGUF written from a non-GGUF model: --tokenizer, else the model's own tokenizer
// (llama2.c tokenizer.bin / tok<N>.bin beside the checkpoint; an HF folder's tokenizer.model, with
// libsentencepiece). Empty, with `why` set, when none can be found: the GGUF is then written without a tokenizer.
inline std::optional<qroar::spm_vocabulary> vocabulary_for(const model_options& o, const qroar::llama_model& m,
                                                           std::string& why) {
  namespace fs = std::filesystem;
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::string path = o.tokenizer_path;
  if (path.empty()) {
    if (m.source_format == "gguf") return std::nullopt;  // the source GGUF's tokenizer.* keys are kept
    if (m.source_format == "hf") {
      const auto p = fs::path(fs::is_directory(o.model_path) ? fs::path(o.model_path) : fs::path(o.model_path).parent_path()) /
                     "tokenizer.model";
      if (fs::exists(p)) path = p.string();
    } else {
      const auto dir = fs::path(o.model_path).parent_path();
      // As load_tokenizer looks for a llama2.c checkpoint's tokenizer (tokenizer.model needs libsentencepiece).
      for (const auto& name : {std::string("tokenizer.bin"), "tok" + std::to_string(m.config.vocab_size) + ".bin",
                               std::string("tokenizer.model")}) {
        const auto p = (dir.empty() ? fs::path(".") : dir) / name;
        if (fs::exists(p)) {
          path = p.string();
          break;
        }
      }
    }
    if (path.empty()) {
      why = "no tokenizer found beside the model (pass --tokenizer)";
      return std::nullopt;
    }
  }
  if (ends_with(path, ".gguf")) return qroar::gguf_vocabulary(qroar::gguf_file::open(path));
  if (ends_with(path, ".model")) {
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
    const qroar::sentencepiece_tokenizer tok(path);
    const auto& sp = tok.processor();
    qroar::spm_vocabulary v;
    for (int id = 0; id < tok.vocab_size(); ++id) {
      v.pieces.push_back(sp.IdToPiece(id));
      v.scores.push_back(sp.GetScore(id));
      auto t = qroar::spm_token_type::normal;
      if (sp.IsUnknown(id)) t = qroar::spm_token_type::unknown;
      else if (sp.IsControl(id)) t = qroar::spm_token_type::control;
      else if (sp.IsUnused(id)) t = qroar::spm_token_type::unused;
      else if (sp.IsByte(id)) t = qroar::spm_token_type::byte;
      v.types.push_back(static_cast<std::int32_t>(t));
    }
    v.bos_id = tok.bos_id();
    v.eos_id = tok.eos_id();
    v.unk_id = tok.unk_id();
    return v;
#else
    why = path + ": reading a SentencePiece .model needs qroar built with libsentencepiece";
    return std::nullopt;
#endif
  }
  return qroar::spm_vocabulary_from_llama2c(qroar::llama2c_tokenizer(path, m.config.vocab_size));
}

// The tokenizer.json to embed as a GGUF gpt2 vocabulary: --tokenizer when it is a tokenizer.json (by content) or a
// folder holding one, else a Hugging Face model folder's own tokenizer.json when it has no tokenizer.model (which
// vocabulary_for embeds as an SPM vocabulary). Empty when there is none.
inline std::string tokenizer_json_for(const model_options& o, const qroar::llama_model& m) {
  namespace fs = std::filesystem;
  if (!o.tokenizer_path.empty()) {
    if (fs::is_directory(o.tokenizer_path)) {
      const auto p = fs::path(o.tokenizer_path) / "tokenizer.json";
      return fs::exists(p) ? p.string() : std::string();
    }
    return qroar::detect_tokenizer_file(o.tokenizer_path) == qroar::tokenizer_file_kind::hf_json ? o.tokenizer_path
                                                                                                 : std::string();
  }
  if (m.source_format != "hf") return {};
  const fs::path dir = fs::is_directory(o.model_path) ? fs::path(o.model_path) : fs::path(o.model_path).parent_path();
  if (fs::exists(dir / "tokenizer.model") || !fs::exists(dir / "tokenizer.json")) return {};
  return (dir / "tokenizer.json").string();
}

// The GGUF vocabulary of a tokenizer.json (qroar::gguf_vocabulary_from_hf, with the tokenizer_config.json and
// config.json beside it): gpt2 for a byte-level BPE, llama (SPM) for a SentencePiece-style BPE. Empty, with `why`
// set, when the file is not one llama.cpp's vocabularies can express (a Unigram model, an unknown pre-tokenizer).
inline std::optional<std::variant<qroar::gguf_bpe_vocabulary, qroar::spm_vocabulary>> hf_vocabulary_for(
    const std::string& json, const qroar::llama_model& m, std::string& why) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(json).parent_path();
  auto beside = [&](const char* name) {
    const fs::path p = (dir.empty() ? fs::path(".") : dir) / name;
    return fs::exists(p) ? p.string() : std::string();
  };
  try {
    return qroar::gguf_vocabulary_from_hf(json, beside("tokenizer_config.json"), beside("config.json"),
                                          m.config.vocab_size);
  } catch (const qroar::unsupported& e) {
    why = e.what();
    return std::nullopt;
  }
}

// The storage type names of a written GGUF, with counts ("q4_0": 33, "f32": 14).
inline std::map<std::string, int> gguf_type_counts(const std::string& path) {
  std::map<std::string, int> counts;
  const auto file = qroar::gguf_file::open(path);
  for (const auto& ti : file.tensors()) ++counts[qroar::to_string(ti.type)];
  return counts;
}

inline std::string type_counts_text(const std::map<std::string, int>& counts) {
  std::string s;
  for (const auto& [type, n] : counts) s += (s.empty() ? "" : ", ") + std::to_string(n) + " " + type;
  return s;
}

// Writes `m` to `out` in `format`. GGUF: `gguf` options, the input file as source when the model came from a GGUF
// (its metadata and tokenizer are kept), else a tokenizer.json as a gpt2 (byte-level BPE) or llama (SentencePiece-
// style BPE) vocabulary (tokenizer_json_for, hf_vocabulary_for) or the SPM vocabulary of vocabulary_for. HF: f32 safetensors, plus the input folder's tokenizer.model (or a --tokenizer .model),
// tokenizer.json and tokenizer_config.json copied beside it. Returns a note for the user (may be empty).
inline std::string write_model(const model_options& o, const qroar::llama_model& m, const std::string& out,
                               output_format format, qroar::gguf_export_options gguf) {
  namespace fs = std::filesystem;
  check_model_output(o, out, format);  // again: the work took time
  std::string note;
  switch (format) {
    case output_format::gguf: {
      std::optional<qroar::gguf_file> source;
      if (m.source_format == "gguf") source.emplace(qroar::gguf_file::open(o.model_path));
      if (source) gguf.source = &*source;
      else if (gguf.storage == qroar::gguf_storage::like_source) gguf.storage = qroar::gguf_storage::f32;
      std::optional<qroar::gguf_bpe_vocabulary> bpe;
      std::optional<qroar::spm_vocabulary> vocab;
      const std::string json = source && o.tokenizer_path.empty() ? std::string() : tokenizer_json_for(o, m);
      if (!json.empty()) {
        if (auto hv = hf_vocabulary_for(json, m, note)) {
          if (auto* b = std::get_if<qroar::gguf_bpe_vocabulary>(&*hv)) bpe = std::move(*b);
          else vocab = std::move(std::get<qroar::spm_vocabulary>(*hv));
        }
      } else {
        vocab = vocabulary_for(o, m, note);
      }
      if (vocab) gguf.vocabulary = &*vocab;
      if (bpe) gguf.bpe_vocabulary = &*bpe;
      if (!note.empty()) note = "GGUF written without a tokenizer: " + note;
      qroar::write_gguf_model(m, out, gguf);
      break;
    }
    case output_format::hf: {
      std::string tok = o.tokenizer_path;
      if (tok.empty() && m.source_format == "hf") {
        const auto p = fs::path(fs::is_directory(o.model_path) ? fs::path(o.model_path) : fs::path(o.model_path).parent_path()) /
                       "tokenizer.model";
        if (fs::exists(p)) tok = p.string();
      }
      std::vector<std::pair<std::string, std::string>> copies;
      if (!tok.empty() && fs::path(tok).extension() == ".model") copies.emplace_back("tokenizer.model", tok);
      // A Hugging Face folder's tokenizer.json (what load_tokenizer prefers) and tokenizer_config.json go along.
      if (o.tokenizer_path.empty() && m.source_format == "hf" && fs::is_directory(o.model_path))
        for (const char* name : {"tokenizer.json", "tokenizer_config.json"})
          if (fs::exists(fs::path(o.model_path) / name)) copies.emplace_back(name, (fs::path(o.model_path) / name).string());
      if (copies.empty()) note = "no tokenizer copied into the folder (pass --tokenizer to eval it with --text)";
      // one atomic folder write: weights, config.json and the tokenizer appear together or not at all
      qroar::write_hf_model(m, out, qroar::safetensors_dtype::f32, copies, command_inputs());
      break;
    }
    case output_format::llama2c:
      qroar::write_llama2c(m, out);
      break;
  }
  return note;
}

inline nlohmann::ordered_json equivariance_report_json(const qroar::equivariance_report& r,
                                                       const qroar::equivariance_probe& p) {
  return {{"symmetric_is_noop", r.symmetric_is_noop()},
          {"weights", {{"equivariant", r.weights}, {"reason", r.weights_reason}}},
          {"kv", {{"equivariant", r.kv}, {"reason", r.kv_reason}}},
          {"activations", {{"equivariant", r.activations}, {"reason", r.activations_reason}}},
          {"summary", r.summary()},
          {"probe",
           {{"weights_change", p.weights_change},
            {"kv_change", p.kv_change},
            {"weights_fp16_residual", p.weights_fp16_residual},
            {"weights_equivariant", p.weights_equivariant()},
            {"kv_equivariant", p.kv_equivariant()}}}};
}

}  // namespace qroar_cli
