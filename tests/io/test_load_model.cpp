#include <doctest/doctest.h>

#include <qroar/io/load_model.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <numeric>

#include <unistd.h>

#include "model_io_testing.hpp"
#include "shared_data.hpp"

using qroar_io_test::read_bytes;
using qroar_io_test::temp_dir;
using qroar_io_test::write_bytes;

namespace {

const char* const stories_bin = "data/models/stories260K/stories260K.bin";
using qroar_test::paths::stories_gguf;
const char* const stories_q8 = "data/models/stories260K/ggml-quantized/stories260K-q8_0.gguf";
using qroar_test::paths::gutenberg_bin;
const char* const gutenberg_gguf = "data/models/gutenberg-3m/model-f32.gguf";
using qroar_test::paths::gutenberg_hf;

}  // namespace

TEST_CASE("gguf model: stories260K.gguf holds exactly the weights of stories260K.bin") {
  const auto gguf = qroar_test::shared_file(stories_gguf);
  const auto bin = qroar_test::shared_file(stories_bin);
  if (gguf.empty() || bin.empty()) return;
  const auto g = qroar::load_gguf_model(gguf.string());
  const auto b = qroar::load_llama2c(bin.string());
  const auto& c = g.config;
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.head_size() == 8);
  CHECK(c.rope_theta == 10000.0);  // no rope.freq_base key: llama.cpp's default
  CHECK(c.norm_eps == 1e-5f);
  CHECK(c.layout == qroar::pair_layout::interleaved);
  CHECK(c.tied_embeddings);
  CHECK(g.source_format == "gguf");
  // docs/test-data.md: llama.context_length says 2048, the model was trained at 512. The key is reported as is...
  CHECK(c.original_ctx == 2048);
  CHECK(c.max_position_embeddings == 2048);
  // ...and the caller can override it.
  qroar::gguf_load_options o;
  o.original_ctx = 512;
  CHECK(qroar::load_gguf_model(gguf.string(), o).config.original_ctx == 512);
  qroar::model_load_options lo;
  lo.original_ctx = 512;
  CHECK(qroar::load_model(gguf.string(), lo).config.original_ctx == 512);
  CHECK(qroar_io_test::same_weights(g, b));
}

TEST_CASE("gguf model: gutenberg-3m model-f32.gguf equals model.bin; q8_0 dequantizes within its step") {
  const auto gguf = qroar_test::shared_file(gutenberg_gguf);
  const auto bin = qroar_test::shared_file(gutenberg_bin);
  if (gguf.empty() || bin.empty()) return;
  const auto g = qroar::load_gguf_model(gguf.string());
  CHECK(g.config.original_ctx == 256);
  CHECK(g.config.head_size() == 64);
  CHECK(g.config.n_kv_heads == 2);
  const auto b = qroar::load_llama2c(bin.string());
  CHECK(qroar_io_test::same_weights(g, b));

  const auto q8 = qroar_test::shared_file(stories_q8);
  const auto sb = qroar_test::shared_file(stories_bin);
  if (q8.empty()) return;
  const auto q = qroar::load_gguf_model(q8.string());
  const auto ref = qroar::load_llama2c(sb.string());
  // Q8_0: blocks of 32 along a row, x ~ d * round(x / d) with d = amax / 127 stored in fp16: |error| <= d/2 plus the
  // fp16 rounding of d (relative 2^-11) times 127.
  auto within_q8 = [](const qroar::tensor& approx, const qroar::tensor& exact) {
    if (approx.rows() != exact.rows() || approx.cols() != exact.cols()) return false;
    for (Eigen::Index r = 0; r < exact.rows(); ++r)
      for (Eigen::Index b0 = 0; b0 + 32 <= exact.cols(); b0 += 32) {
        const float amax = exact.row(r).segment(b0, 32).cwiseAbs().maxCoeff();
        const double d = amax / 127.0;
        const double bound = d / 2 + 127.0 * d * std::ldexp(1.0, -11) + 1e-12;
        for (Eigen::Index k = b0; k < b0 + 32; ++k)
          if (std::fabs(static_cast<double>(approx(r, k)) - exact(r, k)) > bound) return false;
      }
    return true;
  };
  CHECK(within_q8(q.layers[0].wq, ref.layers[0].wq));
  CHECK(within_q8(q.layers[4].w3, ref.layers[4].w3));
  CHECK(qroar_io_test::same_bits(q.layers[2].w2, ref.layers[2].w2));  // ffn_down rows of 172 stay F32 (docs/test-data.md)
}

TEST_CASE("load_model: dispatch on folders, GGUF, llama2.c and files inside HF folders") {
  const auto bin = qroar_test::shared_file(stories_bin);
  const auto gguf = qroar_test::shared_file(stories_gguf);
  const auto hf = qroar_test::shared_file(gutenberg_hf);
  if (bin.empty() || gguf.empty() || hf.empty()) return;
  CHECK(qroar::detect_model_format(bin.string()) == qroar::model_format::llama2c);
  CHECK(qroar::detect_model_format(gguf.string()) == qroar::model_format::gguf);
  CHECK(qroar::detect_model_format(hf.string()) == qroar::model_format::hf_folder);
  CHECK(qroar::load_model(bin.string()).source_format == "llama2c");
  CHECK(qroar::load_model(gguf.string()).source_format == "gguf");
  const auto h = qroar::load_model(hf.string());
  CHECK(h.source_format == "hf");
  CHECK(qroar::load_model((hf / "model.safetensors").string()).config.dim == 256);
  CHECK(qroar::load_model((hf / "config.json").string()).config.layout == qroar::pair_layout::half_split);
  qroar::model_load_options o;
  o.original_ctx = 1024;
  CHECK(qroar::load_model(bin.string(), o).config.original_ctx == 1024);
  CHECK(qroar::load_model(hf.string(), o).config.original_ctx == 1024);
}

TEST_CASE("load_model: unknown, missing and damaged inputs give typed errors") {
  temp_dir tmp;
  CHECK_THROWS_AS(qroar::load_model(tmp.file("absent.bin")), qroar::io_error);
  const std::string text = tmp.file("notes.txt");
  const std::string s = "this is not a model, just some text of a reasonable length";
  write_bytes(text, std::vector<std::uint8_t>(s.begin(), s.end()));
  CHECK(qroar::detect_model_format(text) == qroar::model_format::unknown);
  CHECK_THROWS_AS(qroar::load_model(text), qroar::unsupported);
  write_bytes(tmp.file("empty.dat"), {});
  CHECK_THROWS_AS(qroar::load_model(tmp.file("empty.dat")), qroar::unsupported);
  // A truncated llama2.c checkpoint is still recognised, and reported precisely.
  const std::string good = tmp.file("good.bin");
  qroar::write_llama2c(qroar_io_test::tiny_model(), good);
  auto bytes = read_bytes(good);
  bytes.resize(bytes.size() / 2);
  const std::string half = tmp.file("half.model");
  write_bytes(half, bytes);
  CHECK(qroar::detect_model_format(half) == qroar::model_format::llama2c);
  CHECK_THROWS_AS(qroar::load_model(half), qroar::format_error);
  // llama2.c version 1/2 exports.
  std::vector<std::uint8_t> v1(256, 0);
  qroar_io_test::put_i32(v1, 0, 0x616b3432);
  write_bytes(tmp.file("v1.bin"), v1);
  CHECK_THROWS_AS(qroar::load_model(tmp.file("v1.bin")), qroar::unsupported);
  // An empty folder is an HF folder without config.json.
  std::filesystem::create_directories(tmp.file("empty-folder"));
  CHECK_THROWS_AS(qroar::load_model(tmp.file("empty-folder")), qroar::io_error);

  const auto gguf = qroar_test::shared_file(stories_gguf);
  if (gguf.empty()) return;
  auto g = read_bytes(gguf.string());
  // Another architecture: patch the value of general.architecture ("llama" -> "qwen2", same length).
  const std::string key = "general.architecture";
  const auto it = std::search(g.begin(), g.end(), key.begin(), key.end());
  REQUIRE(it != g.end());
  const auto value = it + static_cast<std::ptrdiff_t>(key.size() + 4 + 8);
  REQUIRE(std::string(value, value + 5) == "llama");
  std::copy_n("qwen2", 5, value);
  write_bytes(tmp.file("qwen.gguf"), g);
  CHECK_THROWS_AS(qroar::load_model(tmp.file("qwen.gguf")), qroar::unsupported);
  // Truncated GGUF.
  g = read_bytes(gguf.string());
  g.resize(g.size() - 100);
  write_bytes(tmp.file("cut.gguf"), g);
  CHECK_THROWS_AS(qroar::load_model(tmp.file("cut.gguf")), qroar::format_error);
}

namespace {

// Resident set size of this process, from /proc/self/statm (Linux): resident pages x page size.
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

TEST_CASE("mapped_file::evict drops the range's resident pages; the data reads back unchanged") {
  // Loaders evict each tensor's pages after copying it, so loading peaks near the model's size, not twice it.
  temp_dir tmp;
  const auto p = tmp.path() / "pages.bin";
  constexpr std::size_t mib = std::size_t{1} << 20, size = 16 * mib;
  std::vector<std::uint8_t> bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::uint8_t>(i * 2654435761u >> 13);
  write_bytes(p.string(), bytes);
  const std::uint64_t expected = std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0});
  bytes.clear();
  bytes.shrink_to_fit();
  const qroar::mapped_file f(p.string());
  auto checksum = [&] { return std::accumulate(f.data(), f.data() + f.size(), std::uint64_t{0}); };
  REQUIRE(checksum() == expected);  // every page resident now
  const std::uint64_t before = resident_bytes();
  f.evict(mib / 2 + 1, size - mib);  // all but the pages partly outside [0.5 MiB + 1, 15.5 MiB + 1)
  const std::uint64_t after = resident_bytes();
  MESSAGE("resident " << before / mib << " MiB -> " << after / mib << " MiB");
  // 15 MiB minus the partial pages at both ends left resident; allow 1 MiB for the allocator and doctest
  CHECK(before >= after + 14 * mib);
  CHECK(checksum() == expected);
  f.evict(size, 100);  // past the end: nothing
  f.evict(0, std::uint64_t{1} << 62);  // clamped to the file
  CHECK(checksum() == expected);
}
