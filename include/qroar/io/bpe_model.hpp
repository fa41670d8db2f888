// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../error.hpp"
#include "tokenizer.hpp"
#include "utf8.hpp"

namespace qroar {
inline namespace v0 {

// The BPE model of Hugging Face tokenizers (tokenizers/src/models/bpe/model.rs) and llama.cpp's
// llm_tokenizer_bpe_session: a word (one pre-token, UTF-8) becomes one symbol per code point, then the adjacent
// pair of lowest merge rank is merged, leftmost first among equal ranks, until no pair has a merge.
//   - a code point that is no token: with byte_fallback, one "<0xAB>" token per UTF-8 byte when all exist, else
//     unk; without, unk (consecutive unks fused into one when fuse_unk); neither -> invalid_argument;
//   - ignore_merges: a word that is itself a token is that token (Llama 3);
//   - merges whose parts or result are no tokens can never fire and are dropped (HF refuses such files).
// Complexity O(n log n) per word of n code points (a binary heap of candidate pairs, stale entries skipped).
struct bpe_model_spec {
  std::unordered_map<std::string, int> vocab;         // token text -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  int unk_id = -1;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
};

class bpe_model {
 public:
  explicit bpe_model(bpe_model_spec spec)
      : vocab_(std::move(spec.vocab)), unk_id_(spec.unk_id), byte_fallback_(spec.byte_fallback),
        fuse_unk_(spec.fuse_unk), ignore_merges_(spec.ignore_merges) {
    merges_.reserve(spec.merges.size());
    int rank = 0;
    for (const auto& m : spec.merges) {
      const int a = find(m.first), b = find(m.second), ab = find(m.first + m.second);
      if (a >= 0 && b >= 0 && ab >= 0) merges_.emplace(key(a, b), merge{rank, ab});
      ++rank;
    }
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) byte_ids_[b] = find(std::string{'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'});
  }

  int find(const std::string& token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
  }
  const std::unordered_map<std::string, int>& vocab() const noexcept { return vocab_; }
  std::size_t merge_count() const noexcept { return merges_.size(); }

  // Appends the ids of `word` to `out`.
  void encode_word(const std::string& word, std::vector<int>& out) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      const int id = find(word);
      if (id >= 0) {
        out.push_back(id);
        return;
      }
    }
    std::vector<symbol> symbols;
    symbols.reserve(word.size());
    bool last_unk = false;
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t len = std::min(utf8_sequence_length(static_cast<unsigned char>(word[i])), word.size() - i);
      const int id = find(word.substr(i, len));
      if (id >= 0) {
        symbols.push_back({id});
        last_unk = false;
      } else {
        bool done = false;
        if (byte_fallback_) {
          done = true;
          for (std::size_t k = 0; k < len; ++k) done = done && byte_ids_[static_cast<unsigned char>(word[i + k])] >= 0;
          if (done)
            for (std::size_t k = 0; k < len; ++k) symbols.push_back({byte_ids_[static_cast<unsigned char>(word[i + k])]});
        }
        if (!done) {
          if (unk_id_ < 0)
            throw invalid_argument("bpe_model: '" + word.substr(i, len) +
                                   "' is not in the vocabulary and the model has no unk token");
          if (!(fuse_unk_ && last_unk)) symbols.push_back({unk_id_});
        }
        last_unk = !done;
      }
      i += len;
    }
    const int n = static_cast<int>(symbols.size());
    for (int i = 0; i < n; ++i) {
      symbols[static_cast<std::size_t>(i)].prev = i - 1;
      symbols[static_cast<std::size_t>(i)].next = i + 1 < n ? i + 1 : -1;
    }
    std::priority_queue<candidate, std::vector<candidate>, std::greater<candidate>> heap;
    const auto push = [&](int left) {
      if (left < 0) return;
      const int right = symbols[static_cast<std::size_t>(left)].next;
      if (right < 0) return;
      const int a = symbols[static_cast<std::size_t>(left)].id, b = symbols[static_cast<std::size_t>(right)].id;
      const auto it = merges_.find(key(a, b));
      if (it != merges_.end()) heap.push({it->second.rank, left, a, b, it->second.id});
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      const candidate c = heap.top();
      heap.pop();
      symbol& l = symbols[static_cast<std::size_t>(c.pos)];
      if (l.id != c.left || l.next < 0) continue;  // the left symbol merged since (it only grows)
      symbol& r = symbols[static_cast<std::size_t>(l.next)];
      if (r.id != c.right) continue;
      l.id = c.result;
      l.next = r.next;
      if (r.next >= 0) symbols[static_cast<std::size_t>(r.next)].prev = c.pos;
      r.id = -1;
      push(l.prev);
      push(c.pos);
    }
    for (int i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
      out.push_back(symbols[static_cast<std::size_t>(i)].id);
  }

 private:
  struct symbol {
    int id;
    int prev = -1, next = -1;
  };
  struct merge {
    int rank, id;
  };
  struct candidate {
    int rank, pos, left, right, result;
    bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  static std::uint64_t key(int a, int b) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  std::unordered_map<std::string, int> vocab_;
  std::unordered_map<std::uint64_t, merge> merges_;
  int byte_ids_[256];
  int unk_id_;
  bool byte_fallback_, fuse_unk_, ignore_merges_;
};

}  // namespace v0
}  // namespace qroar
