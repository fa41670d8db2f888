// SPDX-License-Identifier: MIT
#pragma once

#include <string>

namespace qroar {
inline namespace v0 {

// Project Gutenberg files carry a licence header and footer. When both markers are present
// ("*** START OF TH... ***" and "*** END OF TH..."), returns the text strictly between the end of the start
// marker's line and the beginning of the end marker's line; otherwise returns the text unchanged.
inline std::string strip_gutenberg_boilerplate(const std::string& text) {
  const auto start = text.find("*** START OF TH");
  if (start == std::string::npos) return text;
  const auto body = text.find('\n', start);
  if (body == std::string::npos) return text;
  const auto end = text.find("*** END OF TH", body);
  if (end == std::string::npos) return text;
  return text.substr(body + 1, end - body - 1);
}

}  // namespace v0
}  // namespace qroar
