// SPDX-License-Identifier: MIT
#pragma once

// Optional: needs PCRE2 and utf8proc through unicode_regex.hpp (link qroar::hf_tokenizer).
#include "unicode_regex.hpp"

#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "bpe_model.hpp"
#include "tokenizer.hpp"
#include "utf8.hpp"

namespace qroar {
inline namespace v0 {

// A Hugging Face `tokenizer.json` (the "fast" tokenizer of transformers, Rust crate `tokenizers`) with the BPE
// model, plus the `tokenizer_config.json` beside it. encode(text, add_special) runs the pipeline of the file:
//   1. invalid UTF-8 -> U+FFFD (sanitize_utf8), as HF's front ends read text files;
//   2. added tokens matched whole, leftmost-longest, before anything else: those with "normalized": false on the
//      raw text, the others on the normalized text; lstrip/rstrip swallow the white space beside the token,
//      single_word requires no ASCII letter, digit or '_' on either side;
//   3. normalizer: NFC NFD NFKC NFKD (utf8proc), Lowercase, Prepend, Replace (string or regex), Strip, Sequence;
//   4. pre-tokenizer: Split (string or regex; Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous;
//      invert), ByteLevel (add_prefix_space, use_regex with GPT-2's regex), Metaspace (prepend_scheme, split),
//      Digits, Sequence; regexes run through PCRE2 with UTF and UCP;
//   5. model BPE (bpe_model: merges as lists or "a b" strings, byte_fallback, unk/fuse_unk, ignore_merges);
//   6. with add_special, the post-processor's special tokens around the ids (TemplateProcessing single,
//      RobertaProcessing/BertProcessing, ByteLevel, Sequence); for tokenizer_class Llama/CodeLlama/Gemma the
//      config's add_bos_token (default true) / add_eos_token (default false) decide instead, as
//      LlamaTokenizerFast.update_post_processor does.
// The case-insensitive contraction group "(?i:'s|'t|'re|'ve|'m|'ll|'d)" of the Llama 3 / Qwen regexes is run as
// "'[sS]|'[tT]|..." as transformers.js and llama.cpp run it (a full Unicode case folding may also match "'ſ").
// Not supported (unsupported error): WordPiece, Unigram and WordLevel models, the Bert/Whitespace/Punctuation/
// UnicodeScripts pre-tokenizers, Precompiled/Bert/StripAccents normalizers, BPE dropout and subword affixes.
class hf_tokenizer final : public tokenizer {
 public:
  // Ids below (distinct tokens) * max_id_spread are accepted; a larger id is a format_error (the id table is
  // allocated from the largest id).
  static constexpr std::int64_t max_id_spread = 2;
  // Words longer than this (bytes) are not cached during one encode call (HF: 256 characters).
  static constexpr std::size_t max_cached_word_bytes = 256;

  // `tokenizer_json`: the parsed tokenizer.json; `config`: tokenizer_config.json (null or empty when absent);
  // `source`: the file named in errors. Throws format_error for a malformed document (a value of the wrong JSON
  // type included), unsupported for a component this class does not implement.
  hf_tokenizer(const nlohmann::json& tokenizer_json, const nlohmann::json& config, const std::string& source) try
      : source_(source) {
    const auto fail = [&](const std::string& what) { throw format_error(source_, "", 0, what); };
    if (!tokenizer_json.is_object()) fail("the document is not a JSON object");
    const auto& model = tokenizer_json.value("model", nlohmann::json());
    if (!model.is_object()) fail("\"model\" is missing or not an object");
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") throw unsupported(source_ + ": model type '" + type + "' is not supported (only BPE)");
    if (!model.value("dropout", nlohmann::json()).is_null() && model["dropout"].get<double>() != 0.0)
      throw unsupported(source_ + ": BPE dropout is not supported");
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const auto& a = model.value(affix, nlohmann::json());
      if (!a.is_null() && !(a.is_string() && a.get<std::string>().empty()))
        throw unsupported(source_ + ": BPE " + affix + " is not supported");
    }
    bpe_model_spec spec;
    const auto& vocab = model.value("vocab", nlohmann::json());
    if (!vocab.is_object()) fail("\"model.vocab\" is missing or not an object");
    spec.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
          it.value().get<std::int64_t>() > INT32_MAX)
        fail("\"model.vocab\" entry '" + it.key() + "' is not a non-negative 32-bit id");
      spec.vocab[it.key()] = it.value().get<int>();
    }
    const auto& merges = model.value("merges", nlohmann::json::array());
    if (!merges.is_array()) fail("\"model.merges\" is not an array");
    spec.merges.reserve(merges.size());
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const auto& m = merges[i];
      if (m.is_string()) {  // "a b": split at the first space after the first byte (llama.cpp's rule)
        const auto& s = m.get_ref<const std::string&>();
        const auto p = s.find(' ', 1);
        if (p == std::string::npos) fail("merge " + std::to_string(i) + " '" + s + "' has no space");
        spec.merges.emplace_back(s.substr(0, p), s.substr(p + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        fail("merge " + std::to_string(i) + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
    spec.byte_fallback = model.value("byte_fallback", false);
    spec.fuse_unk = model.value("fuse_unk", false);
    spec.ignore_merges = model.value("ignore_merges", false);
    const auto& unk = model.value("unk_token", nlohmann::json());
    if (unk.is_string()) {
      const auto it = spec.vocab.find(unk.get<std::string>());
      spec.unk_id = it == spec.vocab.end() ? -1 : it->second;
    }

    // Token table: model vocabulary, then added tokens (which may extend it or re-use its ids).
    std::int64_t max_id = -1;
    for (const auto& kv : spec.vocab) max_id = std::max<std::int64_t>(max_id, kv.second);
    const auto& added = tokenizer_json.value("added_tokens", nlohmann::json::array());
    if (!added.is_array()) fail("\"added_tokens\" is not an array");
    for (std::size_t i = 0; i < added.size(); ++i) {
      const auto& a = added[i];
      if (!a.is_object() || !a.value("content", nlohmann::json()).is_string() ||
          !a.value("id", nlohmann::json()).is_number_integer() || a["id"].get<std::int64_t>() < 0 ||
          a["id"].get<std::int64_t>() > INT32_MAX)
        fail("added_tokens[" + std::to_string(i) + "] has no string content or no non-negative 32-bit id");
      added_token t;
      t.id = a["id"].get<int>();
      t.content = a["content"].get<std::string>();
      if (t.content.empty()) fail("added_tokens[" + std::to_string(i) + "] is empty");
      t.single_word = a.value("single_word", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.normalized = a.value("normalized", !a.value("special", false));
      t.special = a.value("special", false);
      max_id = std::max<std::int64_t>(max_id, t.id);
      added_.push_back(std::move(t));
    }
    const std::int64_t distinct = static_cast<std::int64_t>(spec.vocab.size() + added_.size());
    if (max_id < 0) fail("the vocabulary is empty");
    if (max_id >= distinct * max_id_spread)
      fail("token id " + std::to_string(max_id) + " is far beyond the " + std::to_string(distinct) +
           " tokens defined (limit: ids below " + std::to_string(max_id_spread) + " x the token count)");
    id_to_token_.assign(static_cast<std::size_t>(max_id + 1), std::string());
    is_added_.assign(static_cast<std::size_t>(max_id + 1), false);
    for (const auto& kv : spec.vocab) id_to_token_[static_cast<std::size_t>(kv.second)] = kv.first;
    for (const auto& t : added_) {
      id_to_token_[static_cast<std::size_t>(t.id)] = t.content;
      is_added_[static_cast<std::size_t>(t.id)] = true;
      added_ids_[t.content] = t.id;
    }
    model_ = std::make_unique<bpe_model>(std::move(spec));
    const std::string space = "\xE2\x96\x81";
    space_is_token_ = model_->find(space) >= 0;
    for (const auto& t : id_to_token_)
      for (std::size_t p = t.find(space, 1); p != std::string::npos; p = t.find(space, p + 1)) {
        std::size_t b = p - 1;
        while (b > 0 && (static_cast<unsigned char>(t[b]) & 0xC0) == 0x80) --b;
        precedes_space_.insert(t.substr(b, p - b));
      }

    normalizer_ = parse_normalizer(tokenizer_json.value("normalizer", nlohmann::json()));
    parse_pre_tokenizer(tokenizer_json.value("pre_tokenizer", nlohmann::json()));
    parse_decoder(tokenizer_json.value("decoder", nlohmann::json()));
    parse_post_processor(tokenizer_json.value("post_processor", nlohmann::json()));
    for (auto& t : added_) {
      t.match = t.normalized && !normalizer_.empty() ? normalize(t.content) : t.content;
      (t.normalized ? normalized_matcher_ : raw_matcher_).add(t.match, &t);
    }
    raw_matcher_.finish();
    normalized_matcher_.finish();
    apply_config(config.is_object() ? config : nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {  // a value of the wrong JSON type
    throw format_error(source, "", 0, std::string("unexpected JSON value: ") + e.what());
  }

  // Reads `tokenizer_json_path` and, when `config_path` is empty, the tokenizer_config.json in the same folder
  // if there is one. Throws io_error when a file cannot be read, format_error (with the byte offset of a JSON
  // syntax error) for a malformed one.
  static hf_tokenizer from_file(const std::string& tokenizer_json_path, std::string config_path = "") {
    const nlohmann::json tok = read_json(tokenizer_json_path);
    if (config_path.empty()) {
      const auto p = std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
      if (std::filesystem::exists(p)) config_path = p.string();
    }
    const nlohmann::json config = config_path.empty() ? nlohmann::json::object() : read_json(config_path);
    return hf_tokenizer(tok, config, tokenizer_json_path);
  }

  static nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    try {
      return nlohmann::json::parse(s.str());
    } catch (const nlohmann::json::parse_error& e) {
      throw format_error(path, "", e.byte > 0 ? e.byte - 1 : 0, std::string("not valid JSON: ") + e.what());
    } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
      throw format_error(path, "", 0, std::string("not valid JSON: ") + e.what());
    }
  }

  // Ids of `text`; with `add_special` the post-processor's tokens around them (see the class comment).
  std::vector<int> encode(const std::string& text, bool add_special) const override {
    std::vector<int> ids;
    if (add_special) ids = prefix_;
    const std::string clean = sanitize_utf8(text);
    std::unordered_map<std::string, std::vector<int>> cache;
    bool at_start = true;  // the next text piece starts at offset 0 of the input (Metaspace prepend_scheme first)
    for (const auto& seg : split_added(clean, raw_matcher_)) {
      if (seg.token) {
        ids.push_back(seg.token->id);
        at_start = false;
        continue;
      }
      std::string part = clean.substr(seg.begin, seg.end - seg.begin);
      if (!normalizer_.empty()) part = normalize(part);
      for (const auto& sub : split_added(part, normalized_matcher_)) {
        if (sub.token) {
          ids.push_back(sub.token->id);
          at_start = false;
          continue;
        }
        const bool first = at_start && sub.begin == 0;
        for (const auto& word : pre_tokenize(part.substr(sub.begin, sub.end - sub.begin), first)) {
          if (!space_is_token_) {
            if (word.size() <= max_cached_word_bytes) encode_cached(word, cache, ids);
            else model_->encode_word(word, ids);
            continue;
          }
          for (const auto& piece : split_at_uncrossable_spaces(word)) {
            if (piece.size() <= max_cached_word_bytes) encode_cached(piece, cache, ids);
            else model_->encode_word(piece, ids);
          }
        }
        at_start = false;
      }
      at_start = false;
    }
    if (add_special) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
    return ids;
  }

 private:
  void encode_cached(const std::string& word, std::unordered_map<std::string, std::vector<int>>& cache,
                     std::vector<int>& ids) const {
    auto it = cache.find(word);
    if (it == cache.end()) {
      std::vector<int> w;
      model_->encode_word(word, w);
      it = cache.emplace(word, std::move(w)).first;
    }
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }

  // A word (SentencePiece-style tokenizers without a pre-tokenizer run BPE over whole stretches of text) cut
  // before each "▁" that no token can span: one preceded by a code point c that is not "▁" where no token contains
  // c + "▁". A merge result is a token, so no merge ever crosses such a cut and BPE on the pieces gives exactly
  // the ids of BPE on the whole word (Mistral: no token has "▁" after another character; Gemma 3: one, ">▁</").
  // The pieces are then cached like words.
  std::vector<std::string> split_at_uncrossable_spaces(const std::string& word) const {
    static const std::string space = "\xE2\x96\x81";
    std::vector<std::string> out;
    if (!space_is_token_) {
      out.push_back(word);
      return out;
    }
    std::size_t start = 0, prev = std::string::npos;  // prev: start of the previous code point
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t len = std::min(utf8_sequence_length(static_cast<unsigned char>(word[i])), word.size() - i);
      if (prev != std::string::npos && i > start && word.compare(i, space.size(), space) == 0 &&
          word.compare(prev, i - prev, space) != 0 && !precedes_space_.count(word.substr(prev, i - prev))) {
        out.push_back(word.substr(start, i - start));
        start = i;
      }
      prev = i;
      i += len;
    }
    out.push_back(word.substr(start));
    return out;
  }

 public:
  // Bytes of one token (added tokens included, as HF decodes them): byte-level pieces mapped back to bytes (a
  // piece outside the alphabet as written); otherwise the
  // decoder's Replace rules ("▁" -> " "), "<0xAB>" byte pieces as the byte (ByteFallback), and the leading space
  // the decoder strips (Strip start, Metaspace prepend) dropped when the token is the first of the text
  // (prev_token -1 or BOS).
  std::string decode(int prev_token, int token) const override {
    detail::check_token_id(token, vocab_size(), "hf_tokenizer::decode");
    const auto t = static_cast<std::size_t>(token);
    const std::string& piece = id_to_token_[t];
    std::string s;
    if (byte_level_decoder_) {
      if (!byte_level_alphabet::instance().decode(piece, s)) s = piece;
    } else {
      const int b = byte_fallback_decoder_ ? detail::byte_piece_value(piece) : -1;
      if (b >= 0) {
        s = std::string(1, static_cast<char>(b));
      } else {
        s = piece;
        for (const auto& r : decoder_replace_) s = replace_all(s, r.first, r.second);
      }
    }
    if (strip_leading_spaces_ > 0 && (prev_token < 0 || prev_token == bos_id_)) {
      std::size_t k = 0;
      while (k < s.size() && k < strip_leading_spaces_ && s[k] == ' ') ++k;
      s.erase(0, k);
    }
    return s;
  }

  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  int vocab_size() const override { return static_cast<int>(id_to_token_.size()); }

  // Tokens the post-processor puts before / after the text's ids when add_special is true.
  const std::vector<int>& special_prefix() const noexcept { return prefix_; }
  const std::vector<int>& special_suffix() const noexcept { return suffix_; }
  // The token text of an id ("" for an id no token uses).
  const std::string& token_text(int id) const {
    detail::check_token_id(id, vocab_size(), "hf_tokenizer::token_text");
    return id_to_token_[static_cast<std::size_t>(id)];
  }
  // The id of a token text (model vocabulary or added token), or -1.
  int find(const std::string& token) const {
    const auto it = added_ids_.find(token);
    return it != added_ids_.end() ? it->second : model_->find(token);
  }

 private:
  struct added_token {
    int id = 0;
    std::string content, match;
    bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
  };

  // Leftmost-longest matching of a set of strings: candidates by first byte, longest first.
  class token_matcher {
   public:
    void add(const std::string& s, const added_token* t) {
      if (s.empty()) return;
      by_first_[static_cast<unsigned char>(s[0])].emplace_back(s, t);
      any_ = true;
    }
    // Longest candidates first; call once after the last add.
    void finish() {
      for (auto& list : by_first_)
        std::stable_sort(list.begin(), list.end(),
                         [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
    }
    bool empty() const noexcept { return !any_; }
    // Longest candidate matching text at i (and allowed there), or nullptr.
    const std::pair<std::string, const added_token*>* at(const std::string& text, std::size_t i) const {
      const auto& list = by_first_[static_cast<unsigned char>(text[i])];
      for (const auto& c : list)
        if (text.compare(i, c.first.size(), c.first) == 0 && single_word_ok(text, i, c)) return &c;
      return nullptr;
    }

   private:
    static bool is_word(char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    }
    static bool single_word_ok(const std::string& text, std::size_t i,
                               const std::pair<std::string, const added_token*>& c) {
      if (!c.second->single_word) return true;
      const std::size_t e = i + c.first.size();
      return (i == 0 || !is_word(text[i - 1])) && (e == text.size() || !is_word(text[e]));
    }
    std::vector<std::pair<std::string, const added_token*>> by_first_[256];
    bool any_ = false;
  };

  struct segment {
    std::size_t begin = 0, end = 0;
    const added_token* token = nullptr;
  };

  static std::vector<segment> split_added(const std::string& text, const token_matcher& m) {
    std::vector<segment> out;
    if (m.empty()) {
      if (!text.empty()) out.push_back({0, text.size(), nullptr});
      return out;
    }
    std::size_t start = 0, i = 0;
    while (i < text.size()) {
      const auto* hit = m.at(text, i);
      if (!hit) {
        ++i;
        continue;
      }
      std::size_t b = i, e = i + hit->first.size();
      if (hit->second->lstrip)
        while (b > start && is_ascii_or_unicode_space_before(text, b)) b = previous_code_point(text, b);
      if (hit->second->rstrip) {
        std::size_t len = 0;
        while (e < text.size() && unicode_is_space_at(text, e, len)) e += len;
      }
      if (b > start) out.push_back({start, b, nullptr});
      out.push_back({b, e, hit->second});
      start = i = e;
    }
    if (start < text.size()) out.push_back({start, text.size(), nullptr});
    return out;
  }
  static std::size_t previous_code_point(const std::string& s, std::size_t i) {
    do --i;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
    return i;
  }
  static bool is_ascii_or_unicode_space_before(const std::string& s, std::size_t i) {
    std::size_t len = 0;
    return unicode_is_space_at(s, previous_code_point(s, i), len);
  }

  // A Split/Replace pattern: a literal string or a regex.
  struct pattern {
    std::string literal;
    std::shared_ptr<unicode_regex> regex;
    std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const {
      if (regex) return regex->find_all(text);
      std::vector<std::pair<std::size_t, std::size_t>> out;
      if (literal.empty()) return out;
      for (std::size_t p = text.find(literal); p != std::string::npos; p = text.find(literal, p + literal.size()))
        out.emplace_back(p, p + literal.size());
      return out;
    }
  };

  pattern parse_pattern(const nlohmann::json& j, const char* where) const {
    pattern p;
    if (j.is_object() && j.contains("String") && j["String"].is_string()) {
      p.literal = j["String"].get<std::string>();
    } else if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
      std::string re = j["Regex"].get<std::string>();
      static const std::string caseless = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
      const auto at = re.find(caseless);
      if (at != std::string::npos) re.replace(at, caseless.size(), "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])");
      p.regex = std::make_shared<unicode_regex>(re);
    } else {
      throw format_error(source_, "", 0, std::string(where) + ": pattern is neither {\"String\"} nor {\"Regex\"}");
    }
    return p;
  }

  // ---- normalizers ----
  struct normalizer_step {
    enum kind_t { unicode, lowercase, prepend, replace, strip } kind = unicode;
    unicode_form form = unicode_form::nfc;
    std::string text;  // prepend / replace content
    pattern what;      // replace pattern
    bool left = false, right = false;
  };

  std::vector<normalizer_step> parse_normalizer(const nlohmann::json& j) const {
    std::vector<normalizer_step> steps;
    if (j.is_null()) return steps;
    if (!j.is_object()) throw format_error(source_, "", 0, "\"normalizer\" is not an object");
    const std::string type = j.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& n : j.value("normalizers", nlohmann::json::array())) {
        auto sub = parse_normalizer(n);
        steps.insert(steps.end(), sub.begin(), sub.end());
      }
    } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      normalizer_step s;
      s.kind = normalizer_step::unicode;
      s.form = type == "NFC" ? unicode_form::nfc : type == "NFD" ? unicode_form::nfd
             : type == "NFKC" ? unicode_form::nfkc : unicode_form::nfkd;
      steps.push_back(s);
    } else if (type == "Lowercase") {
      normalizer_step s;
      s.kind = normalizer_step::lowercase;
      steps.push_back(s);
    } else if (type == "Prepend") {
      normalizer_step s;
      s.kind = normalizer_step::prepend;
      s.text = j.value("prepend", std::string());
      steps.push_back(s);
    } else if (type == "Replace") {
      normalizer_step s;
      s.kind = normalizer_step::replace;
      s.what = parse_pattern(j.value("pattern", nlohmann::json()), "normalizer Replace");
      s.text = j.value("content", std::string());
      steps.push_back(s);
    } else if (type == "Strip") {
      normalizer_step s;
      s.kind = normalizer_step::strip;
      s.left = j.value("strip_left", true);
      s.right = j.value("strip_right", true);
      steps.push_back(s);
    } else {
      throw unsupported(source_ + ": normalizer '" + type + "' is not supported");
    }
    return steps;
  }

  std::string normalize(std::string s) const {
    for (const auto& n : normalizer_) {
      switch (n.kind) {
        case normalizer_step::unicode: s = unicode_normalize(s, n.form); break;
        case normalizer_step::lowercase: s = unicode_lowercase(s); break;
        case normalizer_step::prepend:
          if (!s.empty()) s = n.text + s;
          break;
        case normalizer_step::replace: s = replace_matches(s, n.what.find_all(s), n.text); break;
        case normalizer_step::strip: {
          std::size_t b = 0, e = s.size(), len = 0;
          if (n.left)
            while (b < e && unicode_is_space_at(s, b, len)) b += len;
          if (n.right)
            while (e > b && unicode_is_space_at(s, previous_code_point(s, e), len)) e = previous_code_point(s, e);
          s = s.substr(b, e - b);
          break;
        }
      }
    }
    return s;
  }

  static std::string replace_matches(const std::string& s, const std::vector<std::pair<std::size_t, std::size_t>>& m,
                                     const std::string& content) {
    if (m.empty()) return s;
    std::string out;
    std::size_t last = 0;
    for (const auto& r : m) {
      out.append(s, last, r.first - last);
      out += content;
      last = r.second;
    }
    out.append(s, last, std::string::npos);
    return out;
  }
  static std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
    pattern p;
    p.literal = from;
    return replace_matches(s, p.find_all(s), to);
  }

  // ---- pre-tokenizers ----
  enum class split_behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
  struct pre_step {
    enum kind_t { split, byte_level, metaspace, digits } kind = split;
    pattern what;
    split_behavior behavior = split_behavior::isolated;
    bool invert = false;
    bool add_prefix_space = false, use_regex = true;
    std::string replacement;
    enum class prepend_t { always, first, never } prepend = prepend_t::always;
    bool split_on_replacement = true;
    bool individual_digits = false;
  };

  void parse_pre_tokenizer(const nlohmann::json& j) {
    if (j.is_null()) return;
    if (!j.is_object()) throw format_error(source_, "", 0, "\"pre_tokenizer\" is not an object");
    const std::string type = j.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& p : j.value("pretokenizers", nlohmann::json::array())) parse_pre_tokenizer(p);
    } else if (type == "Split") {
      pre_step s;
      s.kind = pre_step::split;
      s.what = parse_pattern(j.value("pattern", nlohmann::json()), "pre_tokenizer Split");
      s.behavior = parse_behavior(j.value("behavior", std::string("Isolated")));
      s.invert = j.value("invert", false);
      pre_.push_back(std::move(s));
    } else if (type == "ByteLevel") {
      pre_step s;
      s.kind = pre_step::byte_level;
      s.add_prefix_space = j.value("add_prefix_space", true);
      s.use_regex = j.value("use_regex", true);
      if (s.use_regex) {
        s.what.regex = std::make_shared<unicode_regex>(
            R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
      }
      pre_.push_back(std::move(s));
    } else if (type == "Metaspace") {
      pre_step s;
      s.kind = pre_step::metaspace;
      s.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
      const std::string scheme = j.value("prepend_scheme", std::string());
      if (scheme.empty()) s.prepend = j.value("add_prefix_space", true) ? pre_step::prepend_t::always : pre_step::prepend_t::never;
      else if (scheme == "always") s.prepend = pre_step::prepend_t::always;
      else if (scheme == "first") s.prepend = pre_step::prepend_t::first;
      else if (scheme == "never") s.prepend = pre_step::prepend_t::never;
      else throw format_error(source_, "", 0, "Metaspace prepend_scheme '" + scheme + "' is unknown");
      s.split_on_replacement = j.value("split", true);
      s.what.literal = s.replacement;
      pre_.push_back(std::move(s));
    } else if (type == "Digits") {
      pre_step s;
      s.kind = pre_step::digits;
      s.individual_digits = j.value("individual_digits", false);
      s.what.regex = std::make_shared<unicode_regex>(s.individual_digits ? R"(\p{N})" : R"(\p{N}+)");
      pre_.push_back(std::move(s));
    } else {
      throw unsupported(source_ + ": pre-tokenizer '" + type + "' is not supported");
    }
  }

  split_behavior parse_behavior(const std::string& b) const {
    if (b == "Removed") return split_behavior::removed;
    if (b == "Isolated") return split_behavior::isolated;
    if (b == "MergedWithPrevious") return split_behavior::merged_with_previous;
    if (b == "MergedWithNext") return split_behavior::merged_with_next;
    if (b == "Contiguous") return split_behavior::contiguous;
    throw format_error(source_, "", 0, "Split behavior '" + b + "' is unknown");
  }

  // HF tokenizers' NormalizedString::split: the text cut into matches and gaps, then combined by `behavior`.
  static void split_into(const std::string& s, const pattern& p, split_behavior behavior, bool invert,
                         std::vector<std::string>& out) {
    std::vector<std::pair<std::pair<std::size_t, std::size_t>, bool>> pieces;
    std::size_t last = 0;
    for (const auto& m : p.find_all(s)) {
      if (m.first > last) pieces.push_back({{last, m.first}, invert});
      pieces.push_back({m, !invert});
      last = m.second;
    }
    if (last < s.size()) pieces.push_back({{last, s.size()}, invert});
    std::vector<std::pair<std::size_t, std::size_t>> kept;
    bool previous_match = false;
    switch (behavior) {
      case split_behavior::removed:
        for (const auto& pc : pieces)
          if (!pc.second) kept.push_back(pc.first);
        break;
      case split_behavior::isolated:
        for (const auto& pc : pieces) kept.push_back(pc.first);
        break;
      case split_behavior::merged_with_previous:
        for (const auto& pc : pieces) {
          if (pc.second && !previous_match && !kept.empty()) kept.back().second = pc.first.second;
          else kept.push_back(pc.first);
          previous_match = pc.second;
        }
        break;
      case split_behavior::merged_with_next:
        for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
          if (it->second && !previous_match && !kept.empty()) kept.back().first = it->first.first;
          else kept.push_back(it->first);
          previous_match = it->second;
        }
        std::reverse(kept.begin(), kept.end());
        break;
      case split_behavior::contiguous:
        for (std::size_t i = 0; i < pieces.size(); ++i) {
          if (i > 0 && pieces[i].second == previous_match) kept.back().second = pieces[i].first.second;
          else kept.push_back(pieces[i].first);
          previous_match = pieces[i].second;
        }
        break;
    }
    for (const auto& k : kept)
      if (k.second > k.first) out.push_back(s.substr(k.first, k.second - k.first));
  }

  std::vector<std::string> pre_tokenize(const std::string& text, bool first) const {
    std::vector<std::string> pieces{text}, next;
    for (const auto& step : pre_) {
      next.clear();
      for (std::size_t i = 0; i < pieces.size(); ++i) {
        const std::string& s = pieces[i];
        switch (step.kind) {
          case pre_step::split: split_into(s, step.what, step.behavior, step.invert, next); break;
          case pre_step::digits:
            split_into(s, step.what, step.individual_digits ? split_behavior::isolated : split_behavior::contiguous,
                       false, next);
            break;
          case pre_step::byte_level: {
            std::string t = s;
            if (step.add_prefix_space && (t.empty() || t[0] != ' ')) t.insert(t.begin(), ' ');
            std::vector<std::string> words;
            if (step.use_regex) split_into(t, step.what, split_behavior::isolated, false, words);
            else words.push_back(t);
            for (const auto& w : words) next.push_back(byte_level_alphabet::instance().encode(w));
            break;
          }
          case pre_step::metaspace: {
            std::string t = replace_all(s, " ", step.replacement);
            const bool prepend = step.prepend == pre_step::prepend_t::always ||
                                 (step.prepend == pre_step::prepend_t::first && first && i == 0);
            if (prepend && t.compare(0, step.replacement.size(), step.replacement) != 0) t = step.replacement + t;
            if (step.split_on_replacement) split_into(t, step.what, split_behavior::merged_with_next, false, next);
            else next.push_back(t);
            break;
          }
        }
      }
      pieces.swap(next);
    }
    return pieces;
  }

  // ---- decoder ----
  void parse_decoder(const nlohmann::json& j) {
    if (j.is_null()) return;
    if (!j.is_object()) throw format_error(source_, "", 0, "\"decoder\" is not an object");
    const std::string type = j.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& d : j.value("decoders", nlohmann::json::array())) parse_decoder(d);
    } else if (type == "ByteLevel") {
      byte_level_decoder_ = true;
    } else if (type == "ByteFallback") {
      byte_fallback_decoder_ = true;
    } else if (type == "Replace") {
      const auto& p = j.value("pattern", nlohmann::json());
      if (!p.is_object() || !p.contains("String"))
        throw unsupported(source_ + ": decoder Replace with a regex pattern is not supported");
      decoder_replace_.emplace_back(p["String"].get<std::string>(), j.value("content", std::string()));
    } else if (type == "Strip") {
      if (j.value("content", std::string(" ")) == " ") strip_leading_spaces_ = j.value("start", std::size_t{0});
    } else if (type == "Metaspace") {
      const std::string replacement = j.value("replacement", std::string("\xE2\x96\x81"));
      decoder_replace_.emplace_back(replacement, " ");
      const std::string scheme = j.value("prepend_scheme", std::string());
      const bool prepends = scheme.empty() ? j.value("add_prefix_space", true) : scheme != "never";
      if (prepends) strip_leading_spaces_ = 1;
    } else if (type == "Fuse") {
      // concatenation: what decode_all does anyway
    } else {
      throw unsupported(source_ + ": decoder '" + type + "' is not supported");
    }
  }

  // ---- post-processor and config ----
  void parse_post_processor(const nlohmann::json& j) {
    if (j.is_null()) return;
    if (!j.is_object()) throw format_error(source_, "", 0, "\"post_processor\" is not an object");
    const std::string type = j.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& p : j.value("processors", nlohmann::json::array())) parse_post_processor(p);
    } else if (type == "ByteLevel") {
      // offsets only
    } else if (type == "TemplateProcessing") {
      prefix_.clear();
      suffix_.clear();
      bool after = false;
      const auto& special = j.value("special_tokens", nlohmann::json::object());
      for (const auto& item : j.value("single", nlohmann::json::array())) {
        if (item.contains("Sequence")) {
          after = true;
        } else if (item.contains("SpecialToken")) {
          const std::string name = item["SpecialToken"].value("id", std::string());
          const auto& entry = special.value(name, nlohmann::json::object());
          const auto& ids = entry.value("ids", nlohmann::json::array());
          std::vector<int> add;
          for (const auto& id : ids)
            if (id.is_number_integer()) add.push_back(id.get<int>());
          if (add.empty()) {
            const int id = find(name);
            if (id < 0) throw format_error(source_, "", 0, "post_processor special token '" + name + "' is unknown");
            add.push_back(id);
          }
          auto& dst = after ? suffix_ : prefix_;
          dst.insert(dst.end(), add.begin(), add.end());
        }
      }
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      const auto& cls = j.value("cls", nlohmann::json::array());
      const auto& sep = j.value("sep", nlohmann::json::array());
      if (cls.size() == 2 && cls[1].is_number_integer()) prefix_ = {cls[1].get<int>()};
      if (sep.size() == 2 && sep[1].is_number_integer()) suffix_ = {sep[1].get<int>()};
    } else {
      throw unsupported(source_ + ": post-processor '" + type + "' is not supported");
    }
  }

  int config_token(const nlohmann::json& config, const char* key) const {
    const auto& v = config.value(key, nlohmann::json());
    std::string name;
    if (v.is_string()) name = v.get<std::string>();
    else if (v.is_object() && v.value("content", nlohmann::json()).is_string()) name = v["content"].get<std::string>();
    return name.empty() ? -1 : find(name);
  }

  void apply_config(const nlohmann::json& config) {
    bos_id_ = config_token(config, "bos_token");
    eos_id_ = config_token(config, "eos_token");
    if (bos_id_ < 0 && !prefix_.empty()) bos_id_ = prefix_.front();
    if (eos_id_ < 0 && !suffix_.empty()) eos_id_ = suffix_.back();
    std::string cls = config.value("tokenizer_class", std::string());
    if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
    if (cls == "LlamaTokenizer" || cls == "CodeLlamaTokenizer" || cls == "GemmaTokenizer") {
      prefix_.clear();
      suffix_.clear();
      const auto flag = [&](const char* key, bool fallback) {
        const auto& v = config.value(key, nlohmann::json());
        return v.is_boolean() ? v.get<bool>() : fallback;
      };
      if (flag("add_bos_token", true) && bos_id_ >= 0) prefix_.push_back(bos_id_);
      if (flag("add_eos_token", false) && eos_id_ >= 0) suffix_.push_back(eos_id_);
    }
  }

  std::string source_;
  std::unique_ptr<bpe_model> model_;
  bool space_is_token_ = false;
  std::unordered_set<std::string> precedes_space_;  // code points c with c + "▁" inside some token
  std::vector<std::string> id_to_token_;
  std::vector<bool> is_added_;
  std::vector<added_token> added_;
  std::unordered_map<std::string, int> added_ids_;
  token_matcher raw_matcher_, normalized_matcher_;
  std::vector<normalizer_step> normalizer_;
  std::vector<pre_step> pre_;
  bool byte_level_decoder_ = false, byte_fallback_decoder_ = false;
  std::vector<std::pair<std::string, std::string>> decoder_replace_;
  std::size_t strip_leading_spaces_ = 0;
  std::vector<int> prefix_, suffix_;
  int bos_id_ = -1, eos_id_ = -1;
};

}  // namespace v0
}  // namespace qroar

#endif  // QROAR_HAS_HF_TOKENIZER
