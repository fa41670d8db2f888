// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../error.hpp"
#include "mapped_file.hpp"
#include "read_file.hpp"
#include "text.hpp"
#include "tokenizer.hpp"

namespace qroar {
inline namespace v0 {

// Bytes of text read per token still needed when only a prefix of a text is tokenized: a piece of a SentencePiece
// or llama2.c vocabulary covers at most 16 code points = 64 bytes, so this many bytes hold at least that many
// tokens; the prefix is doubled until they are there (or the text ends).
inline constexpr std::uint64_t text_bytes_per_needed_token = 64;
// Tokens tokenized past the ones needed, and bytes searched back for a space or newline to cut at: the tokens near
// the cut of a prefix may differ from those of the whole text, these never reach the needed ones.
inline constexpr std::uint64_t text_prefix_margin_tokens = 1024;
inline constexpr std::uint64_t text_prefix_cut_window = 4096;

// The token ids of a text file (BOS first), its Project Gutenberg boilerplate stripped (strip_gutenberg_boilerplate:
// both markers, searched in the whole file). With `needed` > 0 only a prefix of the text is read and tokenized,
// large enough for the first `needed` tokens, which equal those of the whole text (the prefix ends at a space or
// newline, text_prefix_margin_tokens past them): a 50 MB one-line text costs a few MB for one window, not GBs.
// The result then holds exactly `needed` tokens, or the whole text's tokens when it has fewer. Throws io_error for a
// file that is not a regular file, larger than max_text_bytes, or shrinks while read, and when the memory for the
// text or its tokens cannot be had (no bare std::bad_alloc).
inline std::vector<int> encode_text_file(const std::string& path, const tokenizer& tok, std::uint64_t needed = 0);

namespace detail {
inline std::vector<int> encode_text_file_unchecked(const std::string& path, const tokenizer& tok, std::uint64_t needed) {
  if (needed == 0) return tok.encode(strip_gutenberg_boilerplate(read_regular_file(path, max_text_bytes, "text")), true);
  const mapped_file file(path);  // regular files only; a shrinking file ends in check_intact's io_error
  if (file.size() > max_text_bytes)
    throw io_error(path + ": " + std::to_string(file.size()) + " bytes, more than the " + std::to_string(max_text_bytes) +
                   "-byte limit for a text");
  const char* data = reinterpret_cast<const char*>(file.data());
  const std::uint64_t size = file.size();
  auto find = [&](const char* what, std::uint64_t from) -> std::uint64_t {
    const std::size_t n = std::strlen(what);
    if (!data || from >= size) return size;
    const char* hit = std::search(data + from, data + size, what, what + n);
    return static_cast<std::uint64_t>(hit - data);
  };
  // the rule of strip_gutenberg_boilerplate, on the mapped bytes
  std::uint64_t begin = 0, end = size;
  const std::uint64_t start = find("*** START OF TH", 0);
  if (start < size) {
    const std::uint64_t line_end = find("\n", start);
    if (line_end < size) {
      const std::uint64_t marker = find("*** END OF TH", line_end);
      if (marker < size) begin = line_end + 1, end = marker;
    }
  }
  const std::uint64_t want = needed + text_prefix_margin_tokens;
  for (std::uint64_t length = want * text_bytes_per_needed_token + text_prefix_cut_window;; length *= 2) {
    if (length >= end - begin) {  // the whole (stripped) text
      auto ids = tok.encode(std::string(data + begin, static_cast<std::size_t>(end - begin)), true);
      file.check_intact();
      return ids;
    }
    std::uint64_t cut = begin + length;
    for (std::uint64_t k = cut; k > cut - text_prefix_cut_window; --k)
      if (data[k - 1] == ' ' || data[k - 1] == '\n') {
        cut = k - 1;
        break;
      }
    auto ids = tok.encode(std::string(data + begin, static_cast<std::size_t>(cut - begin)), true);
    file.check_intact();
    if (ids.size() >= want) {
      ids.resize(static_cast<std::size_t>(needed));  // the tokens near the cut are not kept
      return ids;
    }
  }
}
}  // namespace detail

inline std::vector<int> encode_text_file(const std::string& path, const tokenizer& tok, std::uint64_t needed) {
  return reading_or_io_error(path, "text", [&] { return detail::encode_text_file_unchecked(path, tok, needed); });
}

}  // namespace v0
}  // namespace qroar
