// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "tokenizer.hpp"

namespace qroar {
inline namespace v0 {

// Token types as stored in GGUF `tokenizer.ggml.token_type` (llama.cpp llama_token_type, SentencePiece
// ModelProto.SentencePiece.Type).
enum class spm_token_type : std::int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

// A SentencePiece-style vocabulary, as carried by GGUF (`tokenizer.ggml.model` = "llama"):
// pieces  <- tokenizer.ggml.tokens      (U+2581 "▁" stands for a space)
// scores  <- tokenizer.ggml.scores      (merge priority: higher merges first)
// types   <- tokenizer.ggml.token_type  (may be empty: then every piece is normal, except "<0xAB>" pieces,
//                                         which are byte tokens)
// bos_id, eos_id, unk_id <- tokenizer.ggml.{bos,eos,unknown}_token_id; -1 when absent (GGUF writes 0xFFFFFFFF).
struct spm_vocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  int bos_id = 1;
  int eos_id = 2;
  int unk_id = 0;
  // tokenizer.ggml.add_space_prefix (llama.cpp default true): prepend "▁" to non-empty text.
  bool add_space_prefix = true;
  // SentencePiece's normalizer_spec.remove_extra_whitespaces: drop leading and trailing spaces and collapse
  // runs of spaces (U+0020 only) into one before the prefix is added. llama.cpp's SPM path never does this
  // (default false); set it to reproduce libsentencepiece on models trained with the default spec.
  bool remove_extra_whitespaces = false;
  // tokenizer.ggml.add_{bos,eos}_token, written by write_gguf_model when set (llama.cpp's SPM defaults: BOS yes,
  // EOS no). The tokenizer itself adds what encode's caller asks for.
  std::optional<bool> add_bos;
  std::optional<bool> add_eos;
};

// llama.cpp's SPM tokenizer (llm_tokenizer_spm_session in src/llama-vocab.cpp):
//   1. optional SentencePiece whitespace clean-up (see spm_vocabulary::remove_extra_whitespaces);
//   2. " " prefix when the text is non-empty and add_space_prefix; every ' ' becomes "▁";
//   3. one symbol per UTF-8 code point (length from the lead byte, clipped at the end of the text);
//   4. a priority queue of adjacent pairs whose concatenation is a piece, ordered by (score desc, position asc);
//      merging updates the neighbours' pairs, stale entries are skipped;
//   5. each final symbol is its piece id, or, when it is not a piece, one byte token per byte: "<0xAB>",
//      else the raw one-byte piece, else unk_id.
// Pieces are looked up by exact text, the last of duplicate pieces winning (llama.cpp's token_to_id), and any
// token type can be a merge result, as in llama.cpp. User-defined tokens (type 4) spelled in the text are split
// out first, longest first, as llama.cpp's tokenizer_st_partition does without parse_special (and as
// libsentencepiece matches user-defined pieces); a piece of text after one gets the space prefix again
// (llama.cpp's is_prev_special). Control tokens spelled in the text stay text (llama.cpp's parse_special = false).
class spm_tokenizer final : public tokenizer {
 public:
  // Throws invalid_argument when the arrays differ in length, the vocabulary is empty, a type is outside 0..6,
  // or bos/eos/unk is neither -1 nor a valid id.
  explicit spm_tokenizer(spm_vocabulary vocab) : v_(std::move(vocab)) {
    const std::size_t n = v_.pieces.size();
    if (n == 0) throw invalid_argument("spm_tokenizer: empty vocabulary");
    if (n > static_cast<std::size_t>(INT32_MAX)) throw invalid_argument("spm_tokenizer: vocabulary too large");
    if (v_.scores.size() != n)
      throw invalid_argument("spm_tokenizer: " + std::to_string(n) + " pieces but " + std::to_string(v_.scores.size()) +
                             " scores");
    if (!v_.types.empty() && v_.types.size() != n)
      throw invalid_argument("spm_tokenizer: " + std::to_string(n) + " pieces but " + std::to_string(v_.types.size()) +
                             " token types");
    if (v_.types.empty()) {
      v_.types.resize(n, static_cast<std::int32_t>(spm_token_type::normal));
      for (std::size_t i = 0; i < n; ++i)
        if (detail::byte_piece_value(v_.pieces[i]) >= 0) v_.types[i] = static_cast<std::int32_t>(spm_token_type::byte);
    }
    for (std::size_t i = 0; i < n; ++i)
      if (v_.types[i] < 0 || v_.types[i] > 6)
        throw invalid_argument("spm_tokenizer: token " + std::to_string(i) + " has unknown type " +
                               std::to_string(v_.types[i]));
    const auto check_special = [n](int id, const char* name) {
      if (id < -1 || id >= static_cast<int>(n))
        throw invalid_argument(std::string("spm_tokenizer: ") + name + " id " + std::to_string(id) +
                               " is neither -1 nor below the vocabulary size " + std::to_string(n));
    };
    check_special(v_.bos_id, "bos");
    check_special(v_.eos_id, "eos");
    check_special(v_.unk_id, "unk");
    lookup_.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i)
      if (!v_.pieces[i].empty()) lookup_[v_.pieces[i]] = static_cast<int>(i);
    for (std::size_t i = 0; i < n; ++i)
      if (v_.types[i] == static_cast<std::int32_t>(spm_token_type::user_defined) && !v_.pieces[i].empty())
        user_defined_.push_back(static_cast<int>(i));
    std::stable_sort(user_defined_.begin(), user_defined_.end(), [this](int a, int b) {
      return v_.pieces[static_cast<std::size_t>(a)].size() > v_.pieces[static_cast<std::size_t>(b)].size();
    });
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string name{'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      int id = find(name);
      if (id < 0) id = find(std::string(1, static_cast<char>(b)));
      byte_ids_[b] = id >= 0 ? id : v_.unk_id;
    }
  }

  // Throws invalid_argument when bos is asked for but bos_id is -1, or a byte cannot be encoded because the
  // vocabulary has no byte token, no such one-byte piece and no unk.
  std::vector<int> encode(const std::string& text, bool bos) const override {
    std::vector<int> out;
    if (bos) {
      if (v_.bos_id < 0) throw invalid_argument("spm_tokenizer::encode: BOS requested but the vocabulary has none");
      out.push_back(v_.bos_id);
    }
    std::string s = v_.remove_extra_whitespaces ? squeeze_spaces(text) : text;
    if (s.empty()) return out;
    if (user_defined_.empty()) {
      if (v_.add_space_prefix) s.insert(s.begin(), ' ');
      tokenize(escape_spaces(s), out);
      return out;
    }
    // Split out the user-defined tokens, longest first (fragment id -1: text).
    struct fragment {
      int id;
      std::size_t offset, size;
    };
    std::vector<fragment> fragments{{-1, 0, s.size()}}, next;
    for (const int id : user_defined_) {
      const std::string& t = v_.pieces[static_cast<std::size_t>(id)];
      next.clear();
      for (const fragment& f : fragments) {
        if (f.id >= 0) {
          next.push_back(f);
          continue;
        }
        std::size_t pos = f.offset;
        const std::size_t end = f.offset + f.size;
        for (std::size_t at = s.find(t, pos); at != std::string::npos && at + t.size() <= end; at = s.find(t, pos)) {
          if (at > pos) next.push_back({-1, pos, at - pos});
          next.push_back({id, at, t.size()});
          pos = at + t.size();
        }
        if (pos < end) next.push_back({-1, pos, end - pos});
      }
      fragments.swap(next);
    }
    bool after_token = true;  // the text's start counts as one (llama.cpp's is_prev_special)
    for (const fragment& f : fragments) {
      if (f.id >= 0) {
        out.push_back(f.id);
        after_token = true;
        continue;
      }
      std::string piece = (v_.add_space_prefix && after_token ? std::string(" ") : std::string()) + s.substr(f.offset, f.size);
      tokenize(escape_spaces(piece), out);
      after_token = false;
    }
    return out;
  }

  // Pieces by type, as llama.cpp token_to_piece without special tokens: normal -> "▁" as ' '; user-defined ->
  // as written; byte -> the byte; unknown -> U+2585 "▅"; control, unused, undefined -> nothing. A leading space
  // right after BOS is dropped.
  std::string decode(int prev_token, int token) const override {
    detail::check_token_id(token, vocab_size(), "spm_tokenizer::decode");
    const auto t = static_cast<std::size_t>(token);
    const std::string& piece = v_.pieces[t];
    std::string s;
    switch (static_cast<spm_token_type>(v_.types[t])) {
      case spm_token_type::normal: s = unescape_spaces(piece); break;
      case spm_token_type::user_defined: s = piece; break;
      case spm_token_type::byte: {
        const int b = detail::byte_piece_value(piece);
        s = b >= 0 ? std::string(1, static_cast<char>(b)) : piece;
        break;
      }
      case spm_token_type::unknown: s = "\xE2\x96\x85"; break;
      default: break;
    }
    if (prev_token >= 0 && prev_token == v_.bos_id && !s.empty() && s[0] == ' ') s.erase(0, 1);
    return s;
  }

  int bos_id() const override { return v_.bos_id; }
  int eos_id() const override { return v_.eos_id; }
  int vocab_size() const override { return static_cast<int>(v_.pieces.size()); }
  int unk_id() const noexcept { return v_.unk_id; }
  const spm_vocabulary& vocabulary() const noexcept { return v_; }

  // Id of the piece spelled exactly `text` (U+2581 for spaces), or -1.
  int find(const std::string& text) const {
    const auto it = lookup_.find(text);
    return it == lookup_.end() ? -1 : it->second;
  }

 private:
  static constexpr const char* space_mark = "\xE2\x96\x81";  // U+2581

  static std::string escape_spaces(const std::string& s) {
    std::string r;
    r.reserve(s.size() + s.size() / 4);
    for (const char c : s) {
      if (c == ' ') r += space_mark;
      else r += c;
    }
    return r;
  }
  static std::string unescape_spaces(const std::string& s) {
    std::string r;
    r.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s.compare(i, 3, space_mark) == 0) {
        r += ' ';
        i += 2;
      } else {
        r += s[i];
      }
    }
    return r;
  }
  // SentencePiece normalizer with remove_extra_whitespaces: no leading or trailing ' ', runs of ' ' become one.
  static std::string squeeze_spaces(const std::string& s) {
    std::string r;
    r.reserve(s.size());
    bool prev_space = true;
    for (const char c : s) {
      if (c == ' ' && prev_space) continue;
      r += c;
      prev_space = c == ' ';
    }
    while (!r.empty() && r.back() == ' ') r.pop_back();
    return r;
  }

  struct symbol {
    int prev, next;
    std::size_t offset, size;  // bytes of the escaped text; size 0 once merged into its left neighbour
  };
  struct bigram {
    int left, right;
    float score;
    std::size_t size;
  };
  struct worse {
    bool operator()(const bigram& a, const bigram& b) const noexcept {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  void tokenize(const std::string& text, std::vector<int>& out) const {
    static constexpr std::size_t utf8_length[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    std::vector<symbol> symbols;
    symbols.reserve(text.size());
    for (std::size_t offset = 0; offset < text.size();) {
      const std::size_t len = utf8_length[static_cast<unsigned char>(text[offset]) >> 4];
      const std::size_t size = std::min(len, text.size() - offset);
      const int index = static_cast<int>(symbols.size());
      symbols.push_back(symbol{index - 1, offset + size == text.size() ? -1 : index + 1, offset, size});
      offset += size;
    }
    std::priority_queue<bigram, std::vector<bigram>, worse> queue;
    const auto try_add = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const symbol& l = symbols[static_cast<std::size_t>(left)];
      const symbol& r = symbols[static_cast<std::size_t>(right)];
      const std::size_t size = l.size + r.size;
      const int id = find(text.substr(l.offset, size));
      if (id < 0) return;
      queue.push(bigram{left, right, v_.scores[static_cast<std::size_t>(id)], size});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);
    while (!queue.empty()) {
      const bigram b = queue.top();
      queue.pop();
      symbol& l = symbols[static_cast<std::size_t>(b.left)];
      symbol& r = symbols[static_cast<std::size_t>(b.right)];
      if (l.size == 0 || r.size == 0 || l.size + r.size != b.size) continue;
      l.size += r.size;
      r.size = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[static_cast<std::size_t>(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
      const symbol& s = symbols[static_cast<std::size_t>(i)];
      const int id = find(text.substr(s.offset, s.size));
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (std::size_t k = 0; k < s.size; ++k) {
        const int b = byte_ids_[static_cast<unsigned char>(text[s.offset + k])];
        if (b < 0)
          throw invalid_argument("spm_tokenizer::encode: byte " + std::to_string(static_cast<unsigned char>(text[s.offset + k])) +
                                 " has no byte token, no one-byte piece and the vocabulary has no unk");
        out.push_back(b);
      }
    }
  }

  spm_vocabulary v_;
  std::unordered_map<std::string, int> lookup_;
  std::vector<int> user_defined_;  // ids of the user-defined tokens, longest piece first
  int byte_ids_[256] = {};
};

}  // namespace v0
}  // namespace qroar
