// Access to ../shared (real models, text and independent reference vectors).
#pragma once
#include <doctest/doctest.h>

#include "skip_status.hpp"

#include <cstdio>
#include <filesystem>
#include <string>

namespace qroar_test {

// Files of ../shared used by several tests (relative to shared_dir()).
namespace paths {
inline constexpr const char* stories_gguf = "data/models/stories260K/stories260K.gguf";
inline constexpr const char* gutenberg_bin = "data/models/gutenberg-3m/model.bin";
inline constexpr const char* gutenberg_hf = "data/models/gutenberg-3m/hf";
}  // namespace paths

inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("QROAR_SHARED_DIR")) return env;
  return QROAR_SHARED_DIR;
}

// Full path of a file under ../shared, or an empty path when ../shared is absent. A missing ../shared is
// announced loudly (the test then skips); a missing file inside an existing ../shared is a failure.
inline std::filesystem::path shared_file(const std::string& relative) {
  const auto dir = shared_dir();
  if (!std::filesystem::exists(dir)) {
    std::fprintf(stderr, "\n*** WARNING: %s is absent: skipping a test that needs %s ***\n\n",
                 dir.string().c_str(), relative.c_str());
    MESSAGE("SKIPPED: ../shared is absent, needed for " << relative);
    skipped_for_missing_shared() = true;
    return {};
  }
  const auto p = dir / relative;
  REQUIRE_MESSAGE(std::filesystem::exists(p), "missing file in ../shared: " << p.string());
  return p;
}

}  // namespace qroar_test
