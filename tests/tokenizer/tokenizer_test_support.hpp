// Helpers shared by the tokenizer tests: files, texts and the expected ids of stories260K_forward.json.
#pragma once
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "shared_data.hpp"

namespace qroar_test {

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in, "cannot read " << p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  REQUIRE_MESSAGE(out, "cannot write " << p.string());
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A file under the system temporary folder, removed when the object dies.
struct temp_file {
  explicit temp_file(const std::string& name, const std::string& bytes)
      : path(std::filesystem::temp_directory_path() / ("qroar_test_tokenizer_" + name)) {
    write_bytes(path, bytes);
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  std::filesystem::path path;
};

struct tokenizer_case {
  std::string text;
  bool bos;
  std::vector<int> expected;
};

// The `tokenizer_cases` of reference/stories260K_forward.json (empty when ../shared is absent).
inline std::vector<tokenizer_case> stories260k_tokenizer_cases() {
  const auto path = shared_file("reference/stories260K_forward.json");
  if (path.empty()) return {};
  const auto json = nlohmann::json::parse(read_bytes(path));
  std::vector<tokenizer_case> cases;
  for (const auto& c : json.at("tokenizer_cases"))
    cases.push_back({c.at("text").get<std::string>(), c.at("bos").get<bool>(), c.at("expected_ids").get<std::vector<int>>()});
  REQUIRE(cases.size() == 2);
  return cases;
}

// At most `max_bytes` of `s`, shortened to end on a UTF-8 code point boundary.
inline std::string utf8_prefix(const std::string& s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// The body of a Project Gutenberg file: after the "*** START OF" line, before the "*** END OF" line.
inline std::string strip_gutenberg(const std::string& s) {
  const auto start = s.find("*** START OF");
  REQUIRE(start != std::string::npos);
  const auto body = s.find('\n', start) + 1;
  const auto end = s.find("*** END OF", body);
  return s.substr(body, end == std::string::npos ? std::string::npos : end - body);
}

// The first ~20 KB of several real texts (label, text); empty when ../shared is absent.
inline std::vector<std::pair<std::string, std::string>> sample_texts(std::size_t max_bytes = 20000) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* name : {"data/text/gutenberg/pg11-alice-in-wonderland.txt", "data/text/gutenberg/pg84-frankenstein.txt",
                           "data/text/gutenberg/pg1661-sherlock-holmes.txt", "data/text/gutenberg/pg2701-moby-dick.txt"}) {
    const auto p = shared_file(name);
    if (p.empty()) return {};
    out.emplace_back(name, utf8_prefix(strip_gutenberg(read_bytes(p)), max_bytes));
  }
  for (const char* name : {"data/text/govreport/leval_govreport_00.txt", "data/text/govreport/leval_govreport_10.txt",
                           "data/text/tinystories/tinystories_validation_head.txt"}) {
    const auto p = shared_file(name);
    if (p.empty()) return {};
    out.emplace_back(name, utf8_prefix(read_bytes(p), max_bytes));
  }
  return out;
}

// Text exercising multi-byte UTF-8 (2, 3 and 4 bytes), CRLF, tabs, digits and punctuation.
inline const std::string& roundtrip_text() {
  static const std::string s =
      "Chapter 12.\r\nThe caf\xC3\xA9 sold 3 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "es for $4.50 \xE2\x80\x94 \xE2\x80\x9C"
      "cheap\xE2\x80\x9D!\r\n\tIndented line 2024-01-31, 10:45\r\n\xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA"
      "\xCE\xAC \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x82 0x7F <0x41> end.\n";
  return s;
}

}  // namespace qroar_test
