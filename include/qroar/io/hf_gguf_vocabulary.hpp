// SPDX-License-Identifier: MIT
#pragma once

// The GGUF "gpt2" vocabulary of a Hugging Face byte-level BPE tokenizer.json, as llama.cpp's converter writes it
// (convert_hf_to_gguf.py: TextModel.get_vocab_base / _set_vocab_gpt2; gguf-py/gguf/vocab.py: SpecialVocab). Needs
// only nlohmann/json (no PCRE2): the conversion reads the files, it does not tokenize.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../error.hpp"
#include "gguf_model.hpp"
#include "read_file.hpp"

namespace qroar {
inline namespace v0 {

namespace detail {
namespace hf_gguf {

// The Split regexes of the tokenizer.json files whose llama.cpp pre-tokenizer names are known. convert_hf_to_gguf.py
// recognises a tokenizer by the SHA-256 of its ids on a fixed text (get_vocab_base_pre); these are the regexes of
// the tokenizers behind those hashes for "llama-bpe" (Llama 3, 3.1, 3.2) and "qwen2" (Qwen 1.5, 2, 2.5, 3), as
// llama.cpp's llm_tokenizer_bpe runs them (src/llama-vocab.cpp).
inline const char* llama3_split_regex() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}
inline const char* qwen2_split_regex() {
  return R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

inline std::string type_of(const nlohmann::json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : std::string();
}

inline bool flag(const nlohmann::json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

// llama.cpp's name of the pre-tokenizer `pre` (tokenizer.json "pre_tokenizer") followed by the byte-level model:
//   Sequence[Split(Llama 3 regex, Isolated), ByteLevel(use_regex false)]  -> "llama-bpe"
//   Sequence[Split(Qwen2 regex, Isolated), ByteLevel(use_regex false)]    -> "qwen2"
//   ByteLevel(use_regex true)                                             -> "gpt-2"
//   Sequence[Digits(individual_digits true), ByteLevel(use_regex true)]   -> "smollm"
// ByteLevel must not add a prefix space (llama.cpp's BPE never does). Anything else: unsupported, naming it.
inline std::string pre_name(const nlohmann::json& pre, const std::string& file) {
  std::vector<nlohmann::json> steps;
  if (type_of(pre) == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array())
    for (const auto& p : pre["pretokenizers"]) steps.push_back(p);
  else if (pre.is_object())
    steps.push_back(pre);
  auto byte_level = [](const nlohmann::json& p, bool use_regex) {
    return type_of(p) == "ByteLevel" && !flag(p, "add_prefix_space", true) && flag(p, "use_regex", true) == use_regex;
  };
  if (steps.size() == 1 && byte_level(steps[0], true)) return "gpt-2";
  if (steps.size() == 2 && type_of(steps[0]) == "Digits" && flag(steps[0], "individual_digits", false) &&
      byte_level(steps[1], true))
    return "smollm";
  if (steps.size() == 2 && type_of(steps[0]) == "Split" && byte_level(steps[1], false)) {
    const auto& s = steps[0];
    const bool isolated = s.value("behavior", std::string()) == "Isolated" && !flag(s, "invert", false);
    if (isolated && s.contains("pattern") && s["pattern"].is_object() && s["pattern"].contains("Regex") &&
        s["pattern"]["Regex"].is_string()) {
      const std::string r = s["pattern"]["Regex"].get<std::string>();
      if (r == llama3_split_regex()) return "llama-bpe";
      if (r == qwen2_split_regex()) return "qwen2";
      throw unsupported(file + ": its pre-tokenizer regex " + r +
                        " is not one whose llama.cpp name qroar knows (llama-bpe, qwen2, smollm, gpt-2); no GGUF "
                        "vocabulary written for it");
    }
  }
  throw unsupported(file + ": its pre_tokenizer " + pre.dump().substr(0, 300) +
                    " is not one whose llama.cpp name qroar knows (llama-bpe, qwen2, smollm, gpt-2)");
}

// convert_hf_to_gguf.py's does_token_look_special: added tokens some models forget to mark special.
inline bool looks_special(const std::string& t) {
  auto starts = [&](const std::string& p) { return t.size() >= p.size() && t.compare(0, p.size(), p) == 0; };
  auto ends = [&](const std::string& p) { return t.size() >= p.size() && t.compare(t.size() - p.size(), p.size(), p) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // <｜ ... ｜> (deepseek)
  return starts("<unused") && ends(">");
}

// The content of a tokenizer_config.json entry "bos_token": a string, or an object with "content".
inline std::optional<std::string> token_content(const nlohmann::json& config, const std::string& key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& e = config[key];
  if (e.is_string() && !e.get<std::string>().empty()) return e.get<std::string>();
  if (e.is_object() && e.contains("content") && e["content"].is_string()) return e["content"].get<std::string>();
  return std::nullopt;
}

inline nlohmann::json read_json(const std::string& path, const char* what) {
  const std::string text = read_regular_file(path, max_json_bytes, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw format_error(path, "", 0, std::string("not valid JSON: ") + e.what());
  }
}

}  // namespace hf_gguf
}  // namespace detail

// The GGUF vocabulary (model "gpt2") of the byte-level BPE tokenizer `tokenizer_json`, for a model of `n_vocab`
// embedding rows, as convert_hf_to_gguf.py writes it:
//   tokens   id i -> the vocab entry (or added token) with id i; ids no entry has (padded embedding rows, e.g.
//            Qwen3's 151669..151935) -> "[PAD<i>]", type unused
//   types    added tokens: control when "special" or when they look special (<|...|>, <unused...>, <pad>, <mask>),
//            else user-defined; every other token normal
//   merges   as listed; the [left, right] list form joined by a space, a space inside a part written U+0120
//   pre      by the pre-tokenizer (detail::hf_gguf::pre_name)
//   bos/eos  tokenizer_config.json's bos_token / eos_token (else cls / sep) looked up among the added tokens, else
//            config.json's bos_token_id / eos_token_id (`model_config`, may be empty) when an integer
//   add_bos  the post-processor's TemplateProcessing "single" starting with the BOS token (gguf-py SpecialVocab);
//            add_eos when it ends with a special token (which becomes the EOS); tokenizer_config.json's
//            add_bos_token / add_eos_token override
// Added tokens are written as their text, unnormalized: llama.cpp matches control and user-defined tokens in the
// raw text. The normalizer must be none or NFC: llama.cpp applies none (docs/tokenizers.md).
// `tokenizer_config` and `model_config` may be empty (no such file).
// Errors: format_error (not JSON, missing vocab, malformed merges, duplicate ids), unsupported (not a byte-level
// BPE: other model type, byte_fallback, a normalizer other than NFC, an unknown pre-tokenizer), invalid_argument
// (an id at or beyond n_vocab, naming both).
inline gguf_bpe_vocabulary gguf_bpe_vocabulary_from_hf(const std::string& tokenizer_json, const std::string& tokenizer_config,
                                                       const std::string& model_config, int n_vocab) {
  namespace hg = detail::hf_gguf;
  const nlohmann::json tok = hg::read_json(tokenizer_json, "tokenizer.json");
  const nlohmann::json config =
      tokenizer_config.empty() ? nlohmann::json::object() : hg::read_json(tokenizer_config, "tokenizer_config.json");
  const nlohmann::json mconfig =
      model_config.empty() ? nlohmann::json::object() : hg::read_json(model_config, "config.json");
  const std::string& f = tokenizer_json;
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object())
    throw format_error(f, "", 0, "no \"model\" object");
  const auto& model = tok["model"];
  if (hg::type_of(model) != "BPE" && !(model.contains("merges") && hg::type_of(model).empty()))
    throw unsupported(f + ": model type '" + hg::type_of(model) + "' is not BPE; only byte-level BPE becomes a GGUF "
                      "gpt2 vocabulary");
  if (hg::flag(model, "byte_fallback", false))
    throw unsupported(f + ": a SentencePiece-style BPE (byte_fallback) is not converted to a GGUF vocabulary");
  if (tok.contains("normalizer") && !tok["normalizer"].is_null() && hg::type_of(tok["normalizer"]) != "NFC")
    throw unsupported(f + ": normalizer " + tok["normalizer"].dump().substr(0, 200) +
                      " has no GGUF gpt2 equivalent (llama.cpp normalizes nothing)");
  const std::string pre = hg::pre_name(tok.contains("pre_tokenizer") ? tok["pre_tokenizer"] : nlohmann::json(), f);
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw format_error(f, "", 0, "model.vocab is not an object");
  if (n_vocab <= 0) throw invalid_argument(f + ": the model's vocab_size " + std::to_string(n_vocab) + " is not positive");

  gguf_bpe_vocabulary v;
  v.pre = pre;
  const std::size_t n = static_cast<std::size_t>(n_vocab);
  std::vector<std::optional<std::string>> text(n);
  v.types.assign(n, 1);  // normal
  auto place = [&](std::int64_t id, const std::string& t) {
    if (id < 0 || id >= n_vocab)
      throw invalid_argument(f + ": token '" + t + "' has id " + std::to_string(id) + ", beyond the model's " +
                             std::to_string(n_vocab) + " embedding rows (the tokenizer does not belong to the model)");
    return static_cast<std::size_t>(id);
  };
  for (const auto& [piece, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) throw format_error(f, "", 0, "model.vocab['" + piece + "'] is not an integer id");
    const std::size_t i = place(id.get<std::int64_t>(), piece);
    if (text[i]) throw format_error(f, "", 0, "id " + std::to_string(i) + " is given to both '" + *text[i] + "' and '" + piece + "'");
    text[i] = piece;
  }
  struct added_token {
    std::int64_t id;
    std::string content;
  };
  std::vector<added_token> added;
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string())
        throw format_error(f, "", 0, "an added_tokens entry without an integer id and a string content");
      std::string content = a["content"].get<std::string>();
      const std::size_t i = place(a["id"].get<std::int64_t>(), content);
      added.push_back({static_cast<std::int64_t>(i), content});
      if (hg::flag(a, "special", false) || hg::looks_special(content)) {
        v.types[i] = 3;  // control
      } else {
        v.types[i] = 4;  // user-defined; convert_hf_to_gguf.py pre-normalizes "▁" to a space in them (for Gemma)
        std::string spaced;
        for (std::size_t k = 0; k < content.size(); ++k) {
          if (content.compare(k, 3, "\xE2\x96\x81") == 0) {
            spaced += ' ';
            k += 2;
          } else {
            spaced += content[k];
          }
        }
        content = std::move(spaced);
      }
      text[i] = content;  // an added token's text wins over a vocab entry of the same id (tokenizer.get_vocab())
    }
  v.tokens.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (text[i]) {
      v.tokens[i] = *text[i];
    } else {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.types[i] = 5;  // unused
    }
  }

  // Merges (gguf-py SpecialVocab._try_load_from_tokenizer_json).
  if (!model.contains("merges") || !model["merges"].is_array()) throw format_error(f, "", 0, "model.merges is not an array");
  v.merges.reserve(model["merges"].size());
  for (const auto& m : model["merges"]) {
    if (m.is_string()) {
      v.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      std::string joined;
      for (int side = 0; side < 2; ++side) {
        if (side) joined += ' ';
        for (const char ch : m[side].get<std::string>()) joined += ch == ' ' ? std::string("\xC4\xA0") : std::string(1, ch);
      }
      v.merges.push_back(std::move(joined));
    } else {
      throw format_error(f, "", 0, "merge " + std::to_string(v.merges.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }

  // Special tokens and whether the post-processor adds them (gguf-py SpecialVocab).
  std::optional<std::string> bos = hg::token_content(config, "bos_token"), eos = hg::token_content(config, "eos_token");
  const std::optional<std::string> cls = hg::token_content(config, "cls_token"), sep = hg::token_content(config, "sep_token");
  if (!bos && cls) bos = cls;
  if (!eos && sep) eos = sep;
  const bool have_config = config.is_object() && !config.empty();
  if (tok.contains("post_processor") && tok["post_processor"].is_object()) {
    const auto& pp = tok["post_processor"];
    std::vector<nlohmann::json> processors;
    if (pp.contains("processors") && pp["processors"].is_array())
      for (const auto& p : pp["processors"]) processors.push_back(p);
    else
      processors.push_back(pp);
    for (const auto& p : processors) {
      if (hg::type_of(p) == "RobertaProcessing") {
        v.add_bos = true;
        v.add_eos = true;
        continue;
      }
      if (hg::type_of(p) != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array() ||
          p["single"].size() < 2)
        continue;
      auto special_id = [](const nlohmann::json& e) -> std::optional<std::string> {
        if (e.is_object() && e.contains("SpecialToken") && e["SpecialToken"].contains("id") &&
            e["SpecialToken"]["id"].is_string())
          return e["SpecialToken"]["id"].get<std::string>();
        return std::nullopt;
      };
      if (const auto first = special_id(p["single"].front())) {
        if (!have_config) bos = first;
        v.add_bos = *first == bos || *first == cls;
      }
      if (const auto last = special_id(p["single"].back())) {
        eos = last;
        v.add_eos = true;
      }
    }
  }
  for (const char* typ : {"bos", "eos"}) {
    const std::string key = std::string("add_") + typ + "_token";
    if (config.is_object() && config.contains(key) && config[key].is_boolean())
      (std::string(typ) == "bos" ? v.add_bos : v.add_eos) = config[key].get<bool>();
  }
  auto id_of = [&](const std::optional<std::string>& content, const char* key) {
    if (content)
      for (const auto& a : added)
        if (a.content == *content) return static_cast<int>(a.id);
    if (mconfig.is_object() && mconfig.contains(key) && mconfig[key].is_number_integer()) {
      const std::int64_t id = mconfig[key].get<std::int64_t>();
      if (id >= 0 && id < n_vocab) return static_cast<int>(id);
    }
    return -1;
  };
  v.bos_id = id_of(bos, "bos_token_id");
  v.eos_id = id_of(eos, "eos_token_id");
  return v;
}

// The same for a Hugging Face folder: its tokenizer.json, tokenizer_config.json and config.json (the last two when
// present).
inline gguf_bpe_vocabulary gguf_bpe_vocabulary_from_hf_folder(const std::string& dir, int n_vocab) {
  namespace fs = std::filesystem;
  const fs::path d(dir);
  auto optional_file = [&](const char* name) {
    const fs::path p = d / name;
    return fs::exists(p) ? p.string() : std::string();
  };
  const fs::path json = d / "tokenizer.json";
  if (!fs::exists(json)) throw invalid_argument(dir + ": no tokenizer.json in the folder");
  return gguf_bpe_vocabulary_from_hf(json.string(), optional_file("tokenizer_config.json"), optional_file("config.json"),
                                     n_vocab);
}

}  // namespace v0
}  // namespace qroar
