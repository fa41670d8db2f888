// SPDX-License-Identifier: MIT
#pragma once

#include <climits>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "../error.hpp"
#include "mapped_file.hpp"

namespace qroar {
inline namespace v0 {

// Text <-> token ids. Implementations: llama2c_tokenizer (llama2.c tokenizer.bin), spm_tokenizer (llama.cpp's
// SPM algorithm over a GGUF-style vocabulary) and sentencepiece_tokenizer (libsentencepiece, optional).
// Instances are immutable after construction; encode/decode are const and safe to call from several threads.
class tokenizer {
 public:
  virtual ~tokenizer() = default;

  // Token ids of `text` (UTF-8), preceded by bos_id() when `bos` is true. No EOS is appended.
  virtual std::vector<int> encode(const std::string& text, bool bos) const = 0;

  // Bytes of `token` when it follows `prev_token` (llama2.c run.c decode): the leading space of a piece that
  // directly follows BOS is dropped, a byte token <0xAB> yields the single byte 0xAB. Concatenating
  // decode(ids[i-1], ids[i]) over a sequence reproduces the text. Throws invalid_argument for an id outside
  // [0, vocab_size()).
  virtual std::string decode(int prev_token, int token) const = 0;

  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
  virtual int vocab_size() const = 0;

  // Text of a whole sequence: decode(ids[i-1], ids[i]) concatenated, BOS and EOS themselves contributing
  // nothing (ids[-1] is taken as -1).
  std::string decode_all(const std::vector<int>& ids) const {
    std::string out;
    int prev = -1;
    for (const int id : ids) {
      if (id != bos_id() && id != eos_id()) out += decode(prev, id);
      prev = id;
    }
    return out;
  }

 protected:
  tokenizer() = default;
  tokenizer(const tokenizer&) = default;
  tokenizer(tokenizer&&) = default;
  tokenizer& operator=(const tokenizer&) = default;
  tokenizer& operator=(tokenizer&&) = default;
};

namespace detail {
inline std::vector<int> read_token_ids_unchecked(const std::string& path, int vocab_size) {
  const mapped_file file(path);
  const auto* p = reinterpret_cast<const char*>(file.data());
  const std::uint64_t n = file.size();
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
  std::vector<int> ids;
  std::uint64_t i = 0;
  while (i < n) {
    if (is_space(p[i])) {
      ++i;
      continue;
    }
    const std::uint64_t start = i;
    while (i < n && !is_space(p[i])) ++i;
    const std::string item(p + start, static_cast<std::size_t>(i - start));
    const auto shown = [&item] { return "'" + (item.size() > 32 ? item.substr(0, 32) + "..." : item) + "'"; };
    long long value = 0;
    for (const char c : item) {
      if (c < '0' || c > '9')
        throw format_error(path, "", start, "token id " + shown() + " is not a non-negative decimal integer");
      value = value * 10 + (c - '0');
      if (value > INT_MAX) throw format_error(path, "", start, "token id " + shown() + " does not fit in int");
    }
    if (vocab_size > 0 && value >= vocab_size)
      throw format_error(path, "", start,
                         "token id " + shown() + " is out of range for a vocabulary of " + std::to_string(vocab_size));
    ids.push_back(static_cast<int>(value));
  }
  file.check_intact();
  return ids;
}
}  // namespace detail

// Reads a token-id file: ASCII decimal ids separated by any whitespace (space, tab, CR, LF, VT, FF), no sign,
// no other characters; an empty file is an empty sequence. When vocab_size > 0 every id must be below it.
// Throws io_error when the file cannot be read and format_error (file, byte offset of the offending item)
// for an item that is not a non-negative integer, does not fit in int, or is >= vocab_size; io_error naming the
// file when the memory for the ids cannot be had.
inline std::vector<int> read_token_ids(const std::string& path, int vocab_size = 0) {
  try {
    return detail::read_token_ids_unchecked(path, vocab_size);
  } catch (const std::bad_alloc&) {
    throw io_error(path + ": not enough memory to read the token ids");
  }
}

namespace detail {

// Byte value of a byte-fallback piece "<0xAB>" (two hex digits, either case), or -1.
inline int byte_piece_value(const std::string& piece) noexcept {
  if (piece.size() != 6 || piece[0] != '<' || piece[1] != '0' || piece[2] != 'x' || piece[5] != '>') return -1;
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

inline void check_token_id(int token, int vocab_size, const char* who) {
  if (token < 0 || token >= vocab_size)
    throw invalid_argument(std::string(who) + ": token id " + std::to_string(token) + " is outside [0, " +
                           std::to_string(vocab_size) + ")");
}

}  // namespace detail

}  // namespace v0
}  // namespace qroar
