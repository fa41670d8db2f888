// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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


// Bytes of text tokenized per piece by text_token_stream (the piece ends at the first line end past this many bytes),
// and the longest stretch without a line end it accepts: the tokenizers' working memory grows with the piece
// (~32 bytes per text byte), so a text is cut only at line ends and a line longer than this is an io_error.
inline constexpr std::uint64_t text_stream_piece_bytes = std::uint64_t{1} << 20;          // 1 MiB
inline constexpr std::uint64_t text_stream_max_line_bytes = std::uint64_t{16} << 20;     // 16 MiB
// Bytes searched back from a cut for the start of the context tokenized with the next piece.
inline constexpr std::uint64_t text_stream_context_bytes = 4096;

namespace detail {
// A regular file read with pread (never mapped: its pages do not count to the process's resident memory).
class pread_file {
 public:
  explicit pread_file(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw io_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw io_error(path + ": not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~pread_file() { ::close(fd_); }
  pread_file(const pread_file&) = delete;
  pread_file& operator=(const pread_file&) = delete;
  std::uint64_t size() const noexcept { return size_; }
  // Bytes [from, to) of the file; io_error when they cannot be read (the file shrank meanwhile).
  std::string read(std::uint64_t from, std::uint64_t to) const {
    std::string out(static_cast<std::size_t>(to - from), '\0');
    std::size_t got = 0;
    while (got < out.size()) {
      const ssize_t n = ::pread(fd_, &out[got], out.size() - got, static_cast<off_t>(from + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw io_error(path_ + ": read failed at byte offset " + std::to_string(from + got) + ": " + std::strerror(errno));
      if (n == 0)
        throw io_error(path_ + ": the file shrank while it was read (at byte offset " + std::to_string(from + got) + ")");
      got += static_cast<std::size_t>(n);
    }
    return out;
  }
  // First offset in [from, to) where `what` starts, or `to`; read in 1 MiB blocks overlapping by strlen(what).
  std::uint64_t find(const char* what, std::uint64_t from, std::uint64_t to) const {
    const std::uint64_t n = std::strlen(what), block = std::uint64_t{1} << 20;
    for (std::uint64_t at = from; at + n <= to; at += block) {
      const std::string b = read(at, std::min(to, at + block + n - 1));
      const auto hit = b.find(what);
      if (hit != std::string::npos) return at + hit;
    }
    return to;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};
}  // namespace detail

// The token ids of encode_text_file(path, tok) (BOS first, Gutenberg boilerplate stripped the same way), pulled
// piece by piece (a token_pull, model/perplexity.hpp): memory stays at one piece of text and its tokens, whatever the
// size of the file. The text is cut only right after a line end ('\n'); piece k > 0 is tokenized together with a
// context (the line before the cut, at most text_stream_context_bytes) and its tokens are those after the context's
// own tokens, which must come out unchanged as the first tokens of context + piece (checked: else the cut is
// dropped and the piece before it grows to the next line end). The first piece is tokenized with and without
// the tokenizer's special tokens, which must be the plain tokens with a prefix and suffix around them (BOS, a
// template's EOS); these go first and last. tests/tokenizer/test_text_tokens.cpp compares the result with the
// whole-text tokens on the real texts with every tokenizer kind. Throws io_error naming the file for a line
// longer than text_stream_max_line_bytes, a file that is not a regular file or shrinks while it is read, and
// when the memory for a piece cannot be had.
class text_token_stream {
 public:
  text_token_stream(const std::string& path, const tokenizer& tok, std::uint64_t piece_bytes = text_stream_piece_bytes)
      : path_(path), tok_(tok), file_(path), piece_(std::max<std::uint64_t>(piece_bytes, 1)) {
    end_ = file_.size();
    // the rule of strip_gutenberg_boilerplate
    const std::uint64_t start = file_.find("*** START OF TH", 0, end_);
    if (start < end_) {
      const std::uint64_t line_end = file_.find("\n", start, end_);
      if (line_end < end_) {
        const std::uint64_t marker = file_.find("*** END OF TH", line_end, end_);
        if (marker < end_) begin_ = line_end + 1, end_ = marker;
      }
    }
    pos_ = begin_;
  }

  // token_pull: appends the next tokens to `out`; false at the end.
  bool operator()(std::vector<int>& out) {
    return reading_or_io_error(path_, "text", [&] { return next(out); });
  }

 private:
  // The offset right after the first '\n' at or past `from` (from <= end_), or end_.
  std::uint64_t cut_at_or_after(std::uint64_t from) const {
    if (from >= end_) return end_;
    std::uint64_t at = from;
    while (at < end_) {
      const std::uint64_t to = std::min(end_, at + (std::uint64_t{1} << 16));
      const std::string b = file_.read(at, to);
      const auto nl = b.find('\n');
      if (nl != std::string::npos) return at + nl + 1;
      at = to;
      if (at - from > text_stream_max_line_bytes)
        throw io_error(path_ + ": no line end within " + std::to_string(text_stream_max_line_bytes) +
                       " bytes after byte offset " + std::to_string(from) +
                       " (a text is tokenized piece by piece, cut at line ends; pass --max-windows to read only the "
                       "text its windows need)");
    }
    return end_;
  }

  // Tokens of text [s, e) when s is a cut: those of [a, e) after the ones of [a, s), a = the start of the line
  // before s (at most text_stream_context_bytes back); false when [a, s)'s tokens are not a prefix of [a, e)'s.
  bool tokens_after_cut(std::uint64_t s, std::uint64_t e, std::vector<int>& out) const {
    const std::uint64_t lo = s - std::min<std::uint64_t>(s - begin_, text_stream_context_bytes);
    const std::string back = file_.read(lo, s);
    std::uint64_t a = lo;
    if (back.size() >= 2) {
      auto k = back.find_last_of('\n', back.size() - 2);
      if (k == std::string::npos) k = back.find_last_of(' ', back.size() - 2);
      if (k != std::string::npos) a = lo + k + 1;
      else if (lo > begin_) return false;  // no character boundary known in the context
    }
    const std::string text = file_.read(a, e);
    const auto ctx = tok_.encode(text.substr(0, static_cast<std::size_t>(s - a)), false);
    const auto all = tok_.encode(text, false);
    if (all.size() < ctx.size() || !std::equal(ctx.begin(), ctx.end(), all.begin())) return false;
    out.assign(all.begin() + static_cast<std::ptrdiff_t>(ctx.size()), all.end());
    return true;
  }

  // Tokens of [pending_from_, e) into pending_ (with the special prefix when it is the first piece).
  void tokenize_pending(std::uint64_t e) {
    if (pending_from_ == begin_) {
      const std::string text = file_.read(begin_, e);
      const auto with = tok_.encode(text, true);
      auto plain = tok_.encode(text, false);
      // with = prefix + plain + suffix
      std::size_t at = 0;
      bool found = false;
      for (; at + plain.size() <= with.size(); ++at)
        if (std::equal(plain.begin(), plain.end(), with.begin() + static_cast<std::ptrdiff_t>(at))) {
          found = true;
          break;
        }
      if (!found)
        throw io_error(path_ + ": the tokenizer's special tokens change the text's tokens; the text cannot be read "
                       "piece by piece (pass --max-windows)");
      pending_.assign(with.begin(), with.begin() + static_cast<std::ptrdiff_t>(at + plain.size()));
      suffix_.assign(with.begin() + static_cast<std::ptrdiff_t>(at + plain.size()), with.end());
      return;
    }
    if (!tokens_after_cut(pending_from_, e, pending_))
      throw io_error(path_ + ": the text's tokens do not split at the line end at byte offset " +
                     std::to_string(pending_from_) + "; it cannot be read piece by piece (pass --max-windows)");
  }

  bool next(std::vector<int>& out) {
    if (done_) return false;
    if (!started_) {
      started_ = true;
      pending_from_ = begin_;
      pos_ = cut_at_or_after(std::min(end_, begin_ + piece_));
      tokenize_pending(pos_);
    }
    while (pos_ < end_) {
      const std::uint64_t e = cut_at_or_after(std::min(end_, pos_ + piece_));
      std::vector<int> tokens;
      if (tokens_after_cut(pos_, e, tokens)) {
        out.insert(out.end(), pending_.begin(), pending_.end());
        pending_ = std::move(tokens);
        pending_from_ = pos_;
        pos_ = e;
        return true;
      }
      // the cut at pos_ does not hold: the pending piece grows to e
      if (e - pending_from_ > text_stream_max_line_bytes)
        throw io_error(path_ + ": the text's tokens do not split at any line end between byte offsets " +
                       std::to_string(pending_from_) + " and " + std::to_string(e) +
                       "; it cannot be read piece by piece (pass --max-windows)");
      pos_ = e;
      tokenize_pending(pos_);
    }
    done_ = true;
    out.insert(out.end(), pending_.begin(), pending_.end());
    out.insert(out.end(), suffix_.begin(), suffix_.end());
    pending_.clear();
    return true;
  }

  std::string path_;
  const tokenizer& tok_;
  detail::pread_file file_;
  std::uint64_t piece_, begin_ = 0, end_ = 0, pos_ = 0, pending_from_ = 0;
  std::vector<int> pending_, suffix_;
  bool started_ = false, done_ = false;
};

// The ids of read_token_ids(path, vocab_size) pulled piece by piece (a token_pull), read with pread in 1 MiB
// blocks: memory stays at one block and its ids whatever the size of the file. The same format_error (file, byte
// offset of the item) for a bad item, raised when the pull reaches it.
class token_id_stream {
 public:
  explicit token_id_stream(const std::string& path, int vocab_size = 0) : path_(path), file_(path), vocab_(vocab_size) {}

  bool operator()(std::vector<int>& out) {
    return reading_or_io_error(path_, "token ids", [&] { return next(out); });
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

  void item(const std::string& it, std::uint64_t start, std::vector<int>& out) const {
    const auto shown = [&it] { return "'" + (it.size() > 32 ? it.substr(0, 32) + "..." : it) + "'"; };
    long long value = 0;
    for (const char c : it) {
      if (c < '0' || c > '9')
        throw format_error(path_, "", start, "token id " + shown() + " is not a non-negative decimal integer");
      value = value * 10 + (c - '0');
      if (value > INT_MAX) throw format_error(path_, "", start, "token id " + shown() + " does not fit in int");
    }
    if (vocab_ > 0 && value >= vocab_)
      throw format_error(path_, "", start,
                         "token id " + shown() + " is out of range for a vocabulary of " + std::to_string(vocab_));
    out.push_back(static_cast<int>(value));
  }

  bool next(std::vector<int>& out) {
    const std::size_t before = out.size();
    while (out.size() == before) {
      if (pos_ >= file_.size()) {
        if (!partial_.empty()) {
          item(partial_, partial_start_, out);
          partial_.clear();
        }
        return out.size() > before;
      }
      const std::uint64_t to = std::min(file_.size(), pos_ + (std::uint64_t{1} << 20));
      const std::string b = file_.read(pos_, to);
      for (std::size_t i = 0; i < b.size(); ++i) {
        if (is_space(b[i])) {
          if (!partial_.empty()) {
            item(partial_, partial_start_, out);
            partial_.clear();
          }
        } else {
          if (partial_.empty()) partial_start_ = pos_ + i;
          if (partial_.size() <= 40) partial_ += b[i];  // longer items fail anyway; shown cut at 32 characters
        }
      }
      pos_ = to;
    }
    return true;
  }

  std::string path_;
  detail::pread_file file_;
  int vocab_;
  std::uint64_t pos_ = 0, partial_start_ = 0;
  std::string partial_;
};

}  // namespace v0
}  // namespace qroar
