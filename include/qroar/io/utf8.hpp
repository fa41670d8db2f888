// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace qroar {
inline namespace v0 {

// UTF-8 helpers for the tokenizers: the decoding rule for invalid input, code-point stepping, and GPT-2's
// byte-level alphabet. No Unicode tables: character classes and normalization come from PCRE2 and utf8proc
// (see hf_tokenizer.hpp).

// `bytes` as valid UTF-8: every maximal ill-formed subpart is replaced by U+FFFD (EF BF BD). This is the
// "substitution of maximal subparts" practice of Unicode 15 section 3.9 (U+FFFD Substitution of Maximal Subparts),
// which is also what the WHATWG Encoding Standard's UTF-8 decoder does, i.e. how Node's TextDecoder /
// fs.readFileSync(f, "utf8"), browsers and Python's bytes.decode("utf-8", "replace") read text: a lead byte
// followed by too few continuation bytes is one U+FFFD, each stray continuation byte is one, C0/C1/F5..FF are one
// each, overlong forms and surrogates (ED A0..BF) fail at their second byte. Valid input is returned unchanged.
inline std::string sanitize_utf8(const std::string& bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  static const char replacement[] = "\xEF\xBF\xBD";
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      out += replacement;
      ++i;
      continue;
    }
    std::size_t j = 1;
    for (; j <= need && i + j < n; ++j) {
      const unsigned char b = p[i + j];
      const unsigned char b_lo = j == 1 ? lo : 0x80, b_hi = j == 1 ? hi : 0xBF;
      if (b < b_lo || b > b_hi) break;
    }
    if (j == need + 1) {
      out.append(bytes, i, need + 1);
    } else {
      out += replacement;  // the maximal subpart p[i, i + j) is one U+FFFD
    }
    i += j;
  }
  return out;
}

// Length of the UTF-8 sequence starting with lead byte `c` (1 for continuation or invalid bytes).
inline std::size_t utf8_sequence_length(unsigned char c) noexcept {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return c < 0xF8 ? 4 : 1;
}

// UTF-8 bytes of code point `cp` (<= 0x10FFFF).
inline std::string utf8_encode(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's byte-level alphabet (openai/gpt-2 encoder.py bytes_to_unicode, HF tokenizers ByteLevel): the 188
// printable bytes '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves, the other 68 bytes map, in
// increasing byte order, to U+0100, U+0101, ... so that every byte is one visible code point.
class byte_level_alphabet {
 public:
  byte_level_alphabet() {
    std::uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const std::uint32_t cp = printable ? static_cast<std::uint32_t>(b) : next++;
      encoded_[static_cast<std::size_t>(b)] = utf8_encode(cp);
      code_point_[static_cast<std::size_t>(b)] = cp;
    }
  }

  // The code point (as UTF-8) standing for byte `b`.
  const std::string& encode(unsigned char b) const noexcept { return encoded_[b]; }

  // `bytes` with each byte replaced by its code point.
  std::string encode(const std::string& bytes) const {
    std::string s;
    s.reserve(bytes.size() * 2);
    for (const char c : bytes) s += encoded_[static_cast<unsigned char>(c)];
    return s;
  }

  // The byte a code point stands for, or -1.
  int decode(std::uint32_t cp) const noexcept {
    if (cp < 256) {
      const bool printable = (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
      return printable ? static_cast<int>(cp) : -1;
    }
    for (std::size_t b = 0; b < 256; ++b)
      if (code_point_[b] == cp) return static_cast<int>(b);
    return -1;
  }

  // The bytes a byte-level string stands for; false when some code point is not in the alphabet.
  bool decode(const std::string& text, std::string& bytes) const {
    bytes.clear();
    std::size_t i = 0;
    while (i < text.size()) {
      const auto c = static_cast<unsigned char>(text[i]);
      const std::size_t len = utf8_sequence_length(c);
      if (i + len > text.size()) return false;
      std::uint32_t cp = len == 1 ? c : c & (0xFFu >> (len + 1));
      for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3Fu);
      const int b = decode(cp);
      if (b < 0) return false;
      bytes += static_cast<char>(b);
      i += len;
    }
    return true;
  }

  static const byte_level_alphabet& instance() {
    static const byte_level_alphabet alphabet;
    return alphabet;
  }

 private:
  std::array<std::string, 256> encoded_;
  std::array<std::uint32_t, 256> code_point_{};
};

}  // namespace v0
}  // namespace qroar
