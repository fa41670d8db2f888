// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "../error.hpp"
#include "mapped_file.hpp"
#include "tokenizer.hpp"

namespace qroar {
inline namespace v0 {

// The tokenizer of karpathy/llama2.c (run.c): a `tokenizer.bin` file and its greedy BPE encoder.
//
// File layout (little-endian):   int32 max_token_length
//                                vocab_size x { float32 score, int32 len, len bytes of piece }
// vocab_size is not stored; it comes from the model header. Pieces use a plain space where SentencePiece
// writes U+2581. Ids 1 and 2 are BOS and EOS; ids 3..258 are the byte tokens <0x00>..<0xFF>.
//
// encode (run.c encode(), add_dummy_prefix on):
//   1. BOS if asked; the piece " " when the text is non-empty (dummy prefix);
//   2. each UTF-8 code point (a lead byte and at most 3 continuation bytes) becomes its piece, or, when the
//      vocabulary lacks it, one byte token per byte (id = byte + 3);
//   3. repeatedly merge the adjacent pair whose concatenated piece exists with the highest score (the leftmost
//      pair among equal scores; only scores > -1e10), until no pair merges. BOS takes part in pairs, as in run.c.
// run.c rescans the whole sequence per merge (O(n^2)); here a priority queue ordered by (score desc, position asc)
// over a linked list with lazy invalidation makes the same choices in O(n log n).
class llama2c_tokenizer final : public tokenizer {
 public:
  static constexpr int bos_token = 1;
  static constexpr int eos_token = 2;
  static constexpr int first_byte_token = 3;  // <0x00>; byte b is id b + 3

  // Reads `path` holding exactly `vocab_size` entries. Throws invalid_argument for vocab_size <= 0, io_error
  // when the file cannot be read, format_error (file, byte offset) when a length is negative, exceeds
  // max_token_length, runs past the end of the file, or when bytes remain after the last entry (the file
  // belongs to a larger vocabulary than the model's).
  llama2c_tokenizer(const std::string& path, int vocab_size) {
    if (vocab_size <= 0) throw invalid_argument(path + ": vocab_size must be positive, got " + std::to_string(vocab_size));
    const mapped_file file(path);
    std::uint64_t offset = 0;
    const auto read_i32 = [&](const char* what) {
      std::int32_t v;
      std::memcpy(&v, file.range(offset, 4, {}, what), 4);
      offset += 4;
      return v;
    };
    max_token_length_ = read_i32("max_token_length");
    if (max_token_length_ < 0)
      throw format_error(path, "", 0, "max_token_length is negative (" + std::to_string(max_token_length_) + ")");
    // Each entry takes at least 8 bytes: a vocab_size beyond that is caught below without reserving for it.
    const std::uint64_t at_most = file.size() / 8;
    const auto expected = static_cast<std::size_t>(std::min<std::uint64_t>(static_cast<std::uint64_t>(vocab_size), at_most));
    pieces_.reserve(expected);
    scores_.reserve(expected);
    for (int i = 0; i < vocab_size; ++i) {
      const std::uint64_t entry = offset;
      float score;
      std::memcpy(&score, file.range(offset, 4, {}, "token score"), 4);
      offset += 4;
      const std::int32_t len = read_i32("token length");
      if (len < 0 || len > max_token_length_)
        throw format_error(path, "", entry + 4,
                           "token " + std::to_string(i) + " has length " + std::to_string(len) +
                               " outside [0, max_token_length = " + std::to_string(max_token_length_) + "]");
      const auto* bytes = reinterpret_cast<const char*>(file.range(offset, static_cast<std::uint64_t>(len), {}, "token bytes"));
      offset += static_cast<std::uint64_t>(len);
      pieces_.emplace_back(bytes, static_cast<std::size_t>(len));
      scores_.push_back(score);
    }
    if (offset != file.size())
      throw format_error(path, "", offset,
                         std::to_string(file.size() - offset) + " bytes follow the " + std::to_string(vocab_size) +
                             " tokens: the file holds a larger vocabulary than vocab_size");
    file.check_intact();
    // run.c looks pieces up by exact string; with duplicates the first id wins here.
    lookup_.reserve(pieces_.size() * 2);
    for (int i = 0; i < vocab_size; ++i) lookup_.emplace(pieces_[static_cast<std::size_t>(i)], i);
  }

  std::vector<int> encode(const std::string& text, bool bos) const override {
    std::vector<int> ids;
    ids.reserve(text.size() + 2);
    if (bos) {
      if (bos_token >= vocab_size())
        throw invalid_argument("llama2c_tokenizer::encode: a vocabulary of " + std::to_string(vocab_size()) +
                               " tokens has no BOS token (id 1)");
      ids.push_back(bos_token);
    }
    if (!text.empty()) {
      const int space = find(" ");
      if (space >= 0) ids.push_back(space);
    }
    const auto is_continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
    std::string buffer;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (!is_continuation(text[i])) buffer.clear();
      buffer += text[i];
      if (i + 1 < text.size() && is_continuation(text[i + 1]) && buffer.size() < 4) continue;
      const int id = find(buffer);
      if (id >= 0) {
        ids.push_back(id);
      } else {
        for (const char c : buffer) ids.push_back(byte_token(static_cast<unsigned char>(c)));
      }
      buffer.clear();
    }
    merge(ids);
    return ids;
  }

  std::string decode(int prev_token, int token) const override {
    detail::check_token_id(token, vocab_size(), "llama2c_tokenizer::decode");
    const std::string& piece = pieces_[static_cast<std::size_t>(token)];
    const int byte = detail::byte_piece_value(piece);
    if (byte >= 0) return std::string(1, static_cast<char>(byte));
    if (prev_token == bos_token && !piece.empty() && piece[0] == ' ') return piece.substr(1);
    return piece;
  }

  int bos_id() const override { return bos_token; }
  int eos_id() const override { return eos_token; }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }

  int max_token_length() const noexcept { return max_token_length_; }
  const std::string& piece(int id) const {
    detail::check_token_id(id, vocab_size(), "llama2c_tokenizer::piece");
    return pieces_[static_cast<std::size_t>(id)];
  }
  float score(int id) const {
    detail::check_token_id(id, vocab_size(), "llama2c_tokenizer::score");
    return scores_[static_cast<std::size_t>(id)];
  }
  // Id of the piece spelled exactly `text`, or -1.
  int find(const std::string& text) const {
    const auto it = lookup_.find(text);
    return it == lookup_.end() ? -1 : it->second;
  }

 private:
  // Byte fallback as run.c (byte + 3); a vocabulary too small to hold byte tokens gets <unk> (id 0).
  int byte_token(unsigned char b) const noexcept {
    const int id = first_byte_token + b;
    return id < vocab_size() ? id : 0;
  }

  struct candidate {
    float score;
    int left, right;          // positions in the symbol list
    int left_id, right_id;    // ids when the pair was formed: a changed id or neighbour makes the entry stale
    int merged;
  };
  struct worse {
    bool operator()(const candidate& a, const candidate& b) const noexcept {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };

  // Greedy merges of run.c encode(): highest score first, leftmost on ties, strictly above -1e10.
  void merge(std::vector<int>& ids) const {
    const int n = static_cast<int>(ids.size());
    if (n < 2) return;
    std::vector<int> next(static_cast<std::size_t>(n)), prev(static_cast<std::size_t>(n));
    std::vector<char> alive(static_cast<std::size_t>(n), 1);
    for (int i = 0; i < n; ++i) {
      prev[static_cast<std::size_t>(i)] = i - 1;
      next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
    }
    std::priority_queue<candidate, std::vector<candidate>, worse> queue;
    std::string joined;
    const auto consider = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const int a = ids[static_cast<std::size_t>(left)], b = ids[static_cast<std::size_t>(right)];
      joined = pieces_[static_cast<std::size_t>(a)];
      joined += pieces_[static_cast<std::size_t>(b)];
      const int id = find(joined);
      if (id < 0) return;
      const float s = scores_[static_cast<std::size_t>(id)];
      if (!(s > min_merge_score)) return;
      queue.push(candidate{s, left, right, a, b, id});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i, i + 1);
    while (!queue.empty()) {
      const candidate c = queue.top();
      queue.pop();
      const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
      if (!alive[l] || !alive[r] || next[l] != c.right || ids[l] != c.left_id || ids[r] != c.right_id) continue;
      ids[l] = c.merged;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
      consider(prev[l], c.left);
      consider(c.left, next[l]);
    }
    std::size_t out = 0;
    for (int i = 0; i >= 0; i = next[static_cast<std::size_t>(i)]) ids[out++] = ids[static_cast<std::size_t>(i)];
    ids.resize(out);
  }

  static constexpr float min_merge_score = -1e10f;  // run.c: best_score starts at -1e10 and must be exceeded

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> lookup_;
  std::int32_t max_token_length_ = 0;
};

}  // namespace v0
}  // namespace qroar
