// Helpers shared by the tests of tests/export (write_gguf_model, patch_gguf_band_scales).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <qroar/model/llama_weights.hpp>

namespace qroar_export_test {

// A fresh folder under the system temp dir, removed with its content at scope exit.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qroar-export-test-XXXXXX").string();
    const char* p = ::mkdtemp(tmpl.data());
    REQUIRE_MESSAGE(p != nullptr, "mkdtemp failed");
    path_ = p;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline bool same_bits(const qroar::tensor& a, const qroar::tensor& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0);
}
inline bool same_bits(const qroar::vector& a, const qroar::vector& b) {
  return a.size() == b.size() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.size())) == 0);
}

// Every weight of the two models bit for bit (embedding, norms, the seven linear weights, classifier).
inline void check_same_weights(const qroar::llama_model& a, const qroar::llama_model& b) {
  REQUIRE(a.layers.size() == b.layers.size());
  CHECK(same_bits(a.token_embedding, b.token_embedding));
  CHECK(same_bits(a.final_norm, b.final_norm));
  CHECK(same_bits(a.output, b.output));
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const auto &x = a.layers[l], &y = b.layers[l];
    CAPTURE(l);
    CHECK(same_bits(x.attn_norm, y.attn_norm));
    CHECK(same_bits(x.ffn_norm, y.ffn_norm));
    CHECK(same_bits(x.wq, y.wq));
    CHECK(same_bits(x.wk, y.wk));
    CHECK(same_bits(x.wv, y.wv));
    CHECK(same_bits(x.wo, y.wo));
    CHECK(same_bits(x.w1, y.w1));
    CHECK(same_bits(x.w2, y.w2));
    CHECK(same_bits(x.w3, y.w3));
  }
}

}  // namespace qroar_export_test
