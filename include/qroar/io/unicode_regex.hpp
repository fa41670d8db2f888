// SPDX-License-Identifier: MIT
#pragma once

// Optional: needs PCRE2 (Debian libpcre2-dev) and utf8proc (Debian libutf8proc-dev). With CMake link
// qroar::hf_tokenizer, which exists when pkg-config finds libpcre2-8 and libutf8proc and defines
// QROAR_HAS_HF_TOKENIZER=1. Without CMake the header is usable when <pcre2.h> and <utf8proc.h> are on the include
// path (link -lpcre2-8 -lutf8proc).
#if !defined(QROAR_HAS_HF_TOKENIZER) && defined(__has_include)
#if __has_include(<pcre2.h>) && __has_include(<utf8proc.h>)
#define QROAR_HAS_HF_TOKENIZER 1
#endif
#endif

#if !defined(QROAR_HAS_HF_TOKENIZER) || !QROAR_HAS_HF_TOKENIZER
#error "qroar/io/unicode_regex.hpp needs PCRE2 and utf8proc: install libpcre2-dev libutf8proc-dev and link qroar::hf_tokenizer (it defines QROAR_HAS_HF_TOKENIZER=1)"
#else

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// A Unicode-aware regular expression: PCRE2 with PCRE2_UTF | PCRE2_UCP, so \p{L}, \p{N}, \s and case folding use
// PCRE2's Unicode tables; JIT-compiled when the platform supports it. Subjects must be valid UTF-8
// (sanitize_utf8). Immutable; find_all is safe to call from several threads (match data per call).
class unicode_regex {
 public:
  // Throws invalid_argument naming the pattern and the offset PCRE2 reports when it does not compile.
  explicit unicode_regex(const std::string& pattern) : pattern_(pattern) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!re) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(code, message, sizeof message);
      throw invalid_argument("unicode_regex: '" + pattern + "' does not compile at offset " + std::to_string(offset) +
                             ": " + reinterpret_cast<const char*>(message));
    }
    code_.reset(re);
    jit_ = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  }

  const std::string& pattern() const noexcept { return pattern_; }

  // Byte ranges [begin, end) of the successive non-overlapping matches in `text`, left to right. After an empty
  // match the search resumes one code point further (the empty match itself is not reported).
  // Throws invalid_argument when PCRE2 fails (e.g. its match limit).
  std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t start = 0;
    while (start <= text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, md.get(), nullptr)
                          : pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof message);
        throw invalid_argument("unicode_regex: matching '" + pattern_ + "' failed at byte " + std::to_string(start) +
                               ": " + reinterpret_cast<const char*>(message));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const std::size_t b = ov[0], e = ov[1];
      if (e > b) {
        out.emplace_back(b, e);
        start = e;
      } else {
        if (b >= text.size()) break;
        start = b + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      }
    }
    return out;
  }

 private:
  struct code_free {
    void operator()(pcre2_code* c) const noexcept { pcre2_code_free(c); }
  };
  std::string pattern_;
  std::unique_ptr<pcre2_code, code_free> code_;
  bool jit_ = false;
};

// Unicode normalization forms through utf8proc (Unicode 15 tables in Debian 12's libutf8proc 2.8).
enum class unicode_form { nfc, nfd, nfkc, nfkd };

// `text` (valid UTF-8) in normalization form `form`. Throws invalid_argument when utf8proc rejects the input.
inline std::string unicode_normalize(const std::string& text, unicode_form form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case unicode_form::nfc: options |= UTF8PROC_COMPOSE; break;
    case unicode_form::nfd: options |= UTF8PROC_DECOMPOSE; break;
    case unicode_form::nfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case unicode_form::nfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) throw invalid_argument(std::string("unicode_normalize: ") + utf8proc_errmsg(n));
  std::string s(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
  std::free(out);
  return s;
}

// `text` (valid UTF-8) with every code point lower-cased by its simple Unicode mapping (utf8proc_tolower).
inline std::string unicode_lowercase(const std::string& text) {
  std::string s;
  s.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                                  static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (len <= 0) throw invalid_argument("unicode_lowercase: invalid UTF-8 at byte " + std::to_string(i));
    utf8proc_uint8_t buf[4];
    const utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
    s.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(m));
    i += static_cast<std::size_t>(len);
  }
  return s;
}

// True when the code point starting at text[i] is Unicode White_Space (utf8proc's category Zs/Zl/Zp or one of
// \t \n \v \f \r U+0085), as Rust's char::is_whitespace used by HF tokenizers' Strip and lstrip/rstrip.
inline bool unicode_is_space_at(const std::string& text, std::size_t i, std::size_t& length) {
  utf8proc_int32_t cp = 0;
  const utf8proc_ssize_t len = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                                static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  length = len > 0 ? static_cast<std::size_t>(len) : 1;
  if (len <= 0) return false;
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85) return true;
  const auto cat = utf8proc_category(cp);
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

}  // namespace v0
}  // namespace qroar

#endif  // QROAR_HAS_HF_TOKENIZER
