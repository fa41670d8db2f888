// SPDX-License-Identifier: MIT
#pragma once

// The GGUF vocabulary of a Hugging Face tokenizer.json: "gpt2" for a byte-level BPE, as llama.cpp's converter writes
// it (convert_hf_to_gguf.py: TextModel.get_vocab_base / _set_vocab_gpt2; gguf-py/gguf/vocab.py: SpecialVocab), and
// "llama" (SPM) for a SentencePiece-style BPE (byte_fallback; Llama 2, Mistral, TinyLlama, Gemma), with scores
// derived from the merge ranks (gguf_spm_vocabulary_from_hf). Needs only nlohmann/json (no PCRE2): the conversion
// reads the files, it does not tokenize.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
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

struct added_token {
  std::int64_t id;
  std::string content;
};

struct special_tokens {
  int bos_id = -1;
  int eos_id = -1;
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
};

// The special tokens and whether the post-processor adds them (gguf-py SpecialVocab): bos/eos from
// tokenizer_config.json's bos_token / eos_token (else cls / sep) looked up among the added tokens, else config.json's
// bos_token_id / eos_token_id; add_bos when the TemplateProcessing "single" starts with the BOS token, add_eos when
// it ends with a special token; tokenizer_config.json's add_bos_token / add_eos_token override.
inline special_tokens special_tokens_of(const nlohmann::json& tok, const nlohmann::json& config,
                                        const nlohmann::json& mconfig, const std::vector<added_token>& added,
                                        int n_vocab) {
  special_tokens r;
  std::optional<std::string> bos = token_content(config, "bos_token"), eos = token_content(config, "eos_token");
  const std::optional<std::string> cls = token_content(config, "cls_token"), sep = token_content(config, "sep_token");
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
      if (type_of(p) == "RobertaProcessing") {
        r.add_bos = true;
        r.add_eos = true;
        continue;
      }
      if (type_of(p) != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array() ||
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
        r.add_bos = *first == bos || *first == cls;
      }
      if (const auto last = special_id(p["single"].back())) {
        eos = last;
        r.add_eos = true;
      }
    }
  }
  for (const char* typ : {"bos", "eos"}) {
    const std::string key = std::string("add_") + typ + "_token";
    if (config.is_object() && config.contains(key) && config[key].is_boolean())
      (std::string(typ) == "bos" ? r.add_bos : r.add_eos) = config[key].get<bool>();
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
  r.bos_id = id_of(bos, "bos_token_id");
  r.eos_id = id_of(eos, "eos_token_id");
  return r;
}

inline gguf_bpe_vocabulary bpe_vocabulary(const nlohmann::json& tok, const nlohmann::json& config,
                                          const nlohmann::json& mconfig, const std::string& f, int n_vocab) {
  namespace hg = detail::hf_gguf;
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
  std::vector<hg::added_token> added;
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

  const auto sp = hg::special_tokens_of(tok, config, mconfig, added, n_vocab);
  v.bos_id = sp.bos_id;
  v.eos_id = sp.eos_id;
  v.add_bos = sp.add_bos;
  v.add_eos = sp.add_eos;
  return v;
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
  return hg::bpe_vocabulary(tok, config, mconfig, tokenizer_json, n_vocab);
}

namespace detail {
namespace hf_gguf {

// A SentencePiece-style BPE: model BPE with byte_fallback (Llama 2, Mistral, TinyLlama, Gemma).
inline bool sentencepiece_style(const nlohmann::json& tok) {
  return tok.is_object() && tok.contains("model") && tok["model"].is_object() && type_of(tok["model"]) == "BPE" &&
         flag(tok["model"], "byte_fallback", false);
}

inline const char* metaspace() { return "\xE2\x96\x81"; }  // U+2581 "▁"

// tokenizer.ggml.add_space_prefix of a SentencePiece-style tokenizer.json, whose text front end must be one of
//   normalizer Sequence[Prepend("▁"), Replace(" " -> "▁")], pre_tokenizer none     (Llama 2, Mistral, TinyLlama)
//   normalizer Replace(" " -> "▁"), pre_tokenizer none or Split(" ")                (Gemma: no prefix; the Split
//                                                                                    finds no space left)
//   normalizer none, pre_tokenizer Metaspace("▁", split false, prepend_scheme)      (older files)
// which llama.cpp's SPM tokenizer reproduces: every ' ' becomes "▁", and a "▁" prefix (add_space_prefix) before
// the text and after every special token (llama_vocab::impl::tokenize, is_prev_special), as the normalizer prepends
// to every piece of text between added tokens. Anything else: unsupported, naming it.
inline bool spm_add_space_prefix(const nlohmann::json& tok, const std::string& f) {
  bool replace = false, prepend = false;
  std::vector<nlohmann::json> norms;
  if (tok.contains("normalizer") && !tok["normalizer"].is_null()) {
    const auto& n = tok["normalizer"];
    if (type_of(n) == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array())
      for (const auto& x : n["normalizers"]) norms.push_back(x);
    else
      norms.push_back(n);
  }
  for (const auto& n : norms) {
    const std::string t = type_of(n);
    if (t == "Prepend" && n.value("prepend", std::string()) == metaspace()) {
      prepend = true;
    } else if (t == "Replace" && n.contains("pattern") && n["pattern"].is_object() &&
               n["pattern"].value("String", std::string("\x01")) == " " && n.value("content", std::string()) == metaspace()) {
      replace = true;
    } else {
      throw unsupported(f + ": normalizer " + n.dump().substr(0, 200) +
                        " has no GGUF llama (SPM) equivalent (llama.cpp only turns spaces into U+2581 and adds a "
                        "prefix); no GGUF vocabulary written for it");
    }
  }
  const nlohmann::json pre = tok.contains("pre_tokenizer") ? tok["pre_tokenizer"] : nlohmann::json();
  if (pre.is_object()) {
    const std::string t = type_of(pre);
    if (t == "Metaspace" && pre.value("replacement", std::string()) == metaspace() && !flag(pre, "split", true) &&
        !replace) {
      replace = true;
      const std::string scheme = pre.value("prepend_scheme", std::string());
      prepend = scheme.empty() ? flag(pre, "add_prefix_space", true) : scheme != "never";
    } else if (!(t == "Split" && replace && pre.contains("pattern") && pre["pattern"].is_object() &&
                 pre["pattern"].value("String", std::string()) == " ")) {
      throw unsupported(f + ": pre_tokenizer " + pre.dump().substr(0, 200) +
                        " has no GGUF llama (SPM) equivalent; no GGUF vocabulary written for it");
    }
  }
  if (!replace)
    throw unsupported(f + ": a byte_fallback BPE whose spaces are not turned into U+2581 has no GGUF llama (SPM) "
                      "equivalent");
  return prepend;
}

// "<0xAB>": a byte token (gguf-py LlamaHfVocab.get_token_type).
inline bool byte_token(const std::string& t) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

inline spm_vocabulary spm_vocabulary_of(const nlohmann::json& tok, const nlohmann::json& config,
                                        const nlohmann::json& mconfig, const std::string& f, int n_vocab) {
  const auto& model = tok["model"];
  if (flag(model, "ignore_merges", false))
    throw unsupported(f + ": ignore_merges has no GGUF llama (SPM) equivalent");
  if (!model.contains("vocab") || !model["vocab"].is_object()) throw format_error(f, "", 0, "model.vocab is not an object");
  if (!model.contains("merges") || !model["merges"].is_array()) throw format_error(f, "", 0, "model.merges is not an array");
  if (n_vocab <= 0) throw invalid_argument(f + ": the model's vocab_size " + std::to_string(n_vocab) + " is not positive");
  spm_vocabulary v;
  v.add_space_prefix = spm_add_space_prefix(tok, f);
  const std::size_t n = static_cast<std::size_t>(n_vocab);
  std::vector<std::optional<std::string>> text(n);
  v.types.assign(n, static_cast<std::int32_t>(spm_token_type::normal));
  auto place = [&](std::int64_t id, const std::string& t) {
    if (id < 0 || id >= n_vocab)
      throw invalid_argument(f + ": token '" + t + "' has id " + std::to_string(id) + ", beyond the model's " +
                             std::to_string(n_vocab) + " embedding rows (the tokenizer does not belong to the model)");
    return static_cast<std::size_t>(id);
  };
  std::unordered_map<std::string, std::size_t> id_of_piece;
  id_of_piece.reserve(model["vocab"].size());
  for (const auto& [piece, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) throw format_error(f, "", 0, "model.vocab['" + piece + "'] is not an integer id");
    const std::size_t i = place(id.get<std::int64_t>(), piece);
    if (text[i]) throw format_error(f, "", 0, "id " + std::to_string(i) + " is given to both '" + *text[i] + "' and '" + piece + "'");
    text[i] = piece;
    id_of_piece.emplace(piece, i);
  }

  // Scores from merge ranks. HF's BPE applies, among the adjacent pairs, the merge of lowest rank r (leftmost on a
  // tie); llama.cpp's SPM tokenizer merges the adjacent pair whose concatenation has the highest score (leftmost on
  // a tie). With score(piece) = -(lowest rank of a merge producing it) both pick the same pair whenever each piece
  // is produced by merges of one rank, as in tokenizers converted from SentencePiece (their merges are generated
  // per piece). Pieces no merge produces (single characters, byte tokens, special tokens, padding) get
  // -(number of merges) - 1, below every merge. (gguf-py's LlamaHfVocab writes -1000 for every token, which makes
  // llama.cpp merge leftmost-first; qroar derives the order instead, and tests/llamacpp checks the ids.)
  const auto& merges = model["merges"];
  const float never = -static_cast<float>(merges.size()) - 1.0f;
  v.scores.assign(n, never);
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const auto& m = merges[r];
    std::string joined;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const auto sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw format_error(f, "", 0, "merge " + std::to_string(r) + " '" + s + "' is not \"a b\"");
      joined = s.substr(0, sp) + s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      joined = m[0].get<std::string>() + m[1].get<std::string>();
    } else {
      throw format_error(f, "", 0, "merge " + std::to_string(r) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    const auto it = id_of_piece.find(joined);
    if (it == id_of_piece.end())
      throw format_error(f, "", 0, "merge " + std::to_string(r) + " gives '" + joined + "', which is not in model.vocab");
    // Ranks up to 2^24 are exact in float.
    if (v.scores[it->second] == never) v.scores[it->second] = -static_cast<float>(r);
  }

  for (std::size_t i = 0; i < n; ++i)
    if (text[i] && byte_token(*text[i])) v.types[i] = static_cast<std::int32_t>(spm_token_type::byte);
  v.unk_id = -1;
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const auto it = id_of_piece.find(model["unk_token"].get<std::string>());
    if (it != id_of_piece.end()) {
      v.unk_id = static_cast<int>(it->second);
      v.types[it->second] = static_cast<std::int32_t>(spm_token_type::unknown);
    }
  }
  // Added tokens (convert_hf_to_gguf.py _create_vocab_sentencepiece): special or special-looking -> control (the
  // unknown token stays unknown), others user-defined with "▁" written as a space (llama.cpp matches user-defined
  // tokens in the raw text).
  std::vector<added_token> added;
  if (tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
          !a["content"].is_string())
        throw format_error(f, "", 0, "an added_tokens entry without an integer id and a string content");
      std::string content = a["content"].get<std::string>();
      const std::size_t i = place(a["id"].get<std::int64_t>(), content);
      added.push_back({static_cast<std::int64_t>(i), content});
      if (static_cast<int>(i) == v.unk_id) continue;
      if (flag(a, "special", false) || looks_special(content)) {
        v.types[i] = static_cast<std::int32_t>(spm_token_type::control);
      } else {
        v.types[i] = static_cast<std::int32_t>(spm_token_type::user_defined);
        std::string spaced;
        for (std::size_t k = 0; k < content.size(); ++k) {
          if (content.compare(k, 3, metaspace()) == 0) {
            spaced += ' ';
            k += 2;
          } else {
            spaced += content[k];
          }
        }
        content = std::move(spaced);
      }
      text[i] = content;
    }
  v.pieces.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (text[i]) {
      v.pieces[i] = *text[i];
    } else {
      v.pieces[i] = "[PAD" + std::to_string(i) + "]";
      v.types[i] = static_cast<std::int32_t>(spm_token_type::unused);
    }
  }
  const auto sp = special_tokens_of(tok, config, mconfig, added, n_vocab);
  v.bos_id = sp.bos_id;
  v.eos_id = sp.eos_id;
  v.add_bos = sp.add_bos;
  v.add_eos = sp.add_eos;
  return v;
}

}  // namespace hf_gguf
}  // namespace detail

// The GGUF vocabulary (model "llama", SPM) of the SentencePiece-style BPE tokenizer `tokenizer_json` (byte_fallback:
// Llama 2, Mistral, TinyLlama, Gemma), for a model of `n_vocab` embedding rows:
//   pieces   id i -> the vocab entry (or added token) with id i, "▁" kept; padded ids -> "[PAD<i>]", type unused
//   scores   -(lowest rank of a merge producing the piece), else -(number of merges) - 1 (see spm_vocabulary_of)
//   types    "<0xAB>" byte; model.unk_token unknown; added tokens control when special or special-looking, else
//            user-defined (written with spaces for "▁"); others normal
//   add_space_prefix  from the normalizer (Prepend "▁") or Metaspace (detail::hf_gguf::spm_add_space_prefix)
//   bos/eos, add_bos/add_eos  as for the gpt2 vocabulary (gguf-py SpecialVocab); unk from model.unk_token
// Errors: format_error (not JSON, missing vocab or merges, a merge whose result is not in the vocab), unsupported
// (not a byte_fallback BPE, a normalizer or pre-tokenizer llama.cpp's SPM tokenizer cannot reproduce,
// ignore_merges), invalid_argument (an id at or beyond n_vocab).
inline spm_vocabulary gguf_spm_vocabulary_from_hf(const std::string& tokenizer_json, const std::string& tokenizer_config,
                                                  const std::string& model_config, int n_vocab) {
  namespace hg = detail::hf_gguf;
  const nlohmann::json tok = hg::read_json(tokenizer_json, "tokenizer.json");
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object())
    throw format_error(tokenizer_json, "", 0, "no \"model\" object");
  if (!hg::sentencepiece_style(tok))
    throw unsupported(tokenizer_json + ": unsupported tokenizer model " + hg::type_of(tok["model"]) +
                      (hg::type_of(tok["model"]) == "BPE" ? " without byte_fallback" : "") +
                      " for a GGUF llama (SPM) vocabulary");
  const nlohmann::json config =
      tokenizer_config.empty() ? nlohmann::json::object() : hg::read_json(tokenizer_config, "tokenizer_config.json");
  const nlohmann::json mconfig =
      model_config.empty() ? nlohmann::json::object() : hg::read_json(model_config, "config.json");
  return hg::spm_vocabulary_of(tok, config, mconfig, tokenizer_json, n_vocab);
}

// The GGUF vocabulary of any supported tokenizer.json, read once: a SentencePiece-style BPE (byte_fallback) becomes
// a llama (SPM) vocabulary (gguf_spm_vocabulary_from_hf), a byte-level BPE a gpt2 vocabulary
// (gguf_bpe_vocabulary_from_hf). Other models (Unigram, WordPiece, WordLevel): unsupported, naming the model type.
inline std::variant<gguf_bpe_vocabulary, spm_vocabulary> gguf_vocabulary_from_hf(const std::string& tokenizer_json,
                                                                                  const std::string& tokenizer_config,
                                                                                  const std::string& model_config,
                                                                                  int n_vocab) {
  namespace hg = detail::hf_gguf;
  const nlohmann::json tok = hg::read_json(tokenizer_json, "tokenizer.json");
  if (!tok.is_object() || !tok.contains("model") || !tok["model"].is_object())
    throw format_error(tokenizer_json, "", 0, "no \"model\" object");
  const std::string type = hg::type_of(tok["model"]);
  if (type != "BPE" && !(type.empty() && tok["model"].contains("merges")))
    throw unsupported(tokenizer_json + ": unsupported tokenizer model " + (type.empty() ? std::string("(none)") : type) +
                      "; only BPE (byte-level or SentencePiece-style) becomes a GGUF vocabulary");
  const nlohmann::json config =
      tokenizer_config.empty() ? nlohmann::json::object() : hg::read_json(tokenizer_config, "tokenizer_config.json");
  const nlohmann::json mconfig =
      model_config.empty() ? nlohmann::json::object() : hg::read_json(model_config, "config.json");
  if (hg::sentencepiece_style(tok)) return hg::spm_vocabulary_of(tok, config, mconfig, tokenizer_json, n_vocab);
  return hg::bpe_vocabulary(tok, config, mconfig, tokenizer_json, n_vocab);
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
