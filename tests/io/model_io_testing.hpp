// Helpers shared by tests/io/test_llama2c.cpp, test_safetensors.cpp and test_hf_model.cpp.
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

namespace qroar_io_test {

// A fresh folder under the system temp dir, removed with its content at scope exit.
class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "qroar-io-test-XXXXXX").string();
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
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE_MESSAGE(out.good(), "cannot write " << path);
}

inline void put_i32(std::vector<std::uint8_t>& bytes, std::size_t offset, std::int32_t v) {
  std::memcpy(bytes.data() + offset, &v, 4);
}

inline void put_f32(std::vector<std::uint8_t>& bytes, std::size_t offset, float v) {
  std::memcpy(bytes.data() + offset, &v, 4);
}

template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(float)) == 0);
}

// Bit-exact equality of all weights (not the source fields). Q/K rows are compared as stored.
inline bool same_weights(const qroar::llama_model& a, const qroar::llama_model& b) {
  if (a.layers.size() != b.layers.size()) return false;
  if (!same_bits(a.token_embedding, b.token_embedding) || !same_bits(a.final_norm, b.final_norm) ||
      !same_bits(a.output, b.output))
    return false;
  for (std::size_t l = 0; l < a.layers.size(); ++l) {
    const auto& x = a.layers[l];
    const auto& y = b.layers[l];
    if (!same_bits(x.attn_norm, y.attn_norm) || !same_bits(x.ffn_norm, y.ffn_norm) || !same_bits(x.wq, y.wq) ||
        !same_bits(x.wk, y.wk) || !same_bits(x.wv, y.wv) || !same_bits(x.wo, y.wo) || !same_bits(x.w1, y.w1) ||
        !same_bits(x.w2, y.w2) || !same_bits(x.w3, y.w3))
      return false;
  }
  return true;
}

// A small random model (deterministic), interleaved, tied unless `untied`.
inline qroar::llama_model tiny_model(bool untied = false, int seed = 1) {
  qroar::llama_model m;
  auto& c = m.config;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 10;
  c.head_dim = 4;
  c.original_ctx = 32;
  c.max_position_embeddings = 32;
  c.tied_embeddings = !untied;
  std::srand(static_cast<unsigned>(seed));
  auto fill = [](auto& t, Eigen::Index r, Eigen::Index k) {
    t.resize(r, k);
    for (Eigen::Index i = 0; i < t.size(); ++i)
      t.data()[i] = static_cast<float>(std::rand() % 2001 - 1000) / 997.0f;
  };
  fill(m.token_embedding, 10, 16);
  m.layers.resize(2);
  for (auto& l : m.layers) {
    fill(l.attn_norm, 16, 1);
    fill(l.ffn_norm, 16, 1);
    fill(l.wq, 16, 16);
    fill(l.wk, 8, 16);
    fill(l.wv, 8, 16);
    fill(l.wo, 16, 16);
    fill(l.w1, 24, 16);
    fill(l.w2, 16, 24);
    fill(l.w3, 24, 16);
  }
  fill(m.final_norm, 16, 1);
  if (untied) fill(m.output, 10, 16);
  return m;
}

}  // namespace qroar_io_test
