#include <doctest/doctest.h>

#include <qroar/io/llama2c.hpp>

#include <cmath>
#include <limits>

#include "model_io_testing.hpp"
#include "shared_data.hpp"

using qroar_io_test::read_bytes;
using qroar_io_test::temp_dir;
using qroar_io_test::write_bytes;

namespace {

const char* const stories260k = "data/models/stories260K/stories260K.bin";
const char* const llama2xs = "data/models/llama2xs-tinystories/model.bin";
using qroar_test::paths::gutenberg_bin;

}  // namespace

// MANIFEST in the name: the data description summarized in docs/test-data.md.
TEST_CASE("llama2c: stories260K.bin header and config match the MANIFEST") {
  const auto path = qroar_test::shared_file(stories260k);
  if (path.empty()) return;
  const qroar::mapped_file f(path.string());
  const auto h = qroar::read_llama2c_header(f);
  CHECK(h.dim == 64);
  CHECK(h.hidden_dim == 172);
  CHECK(h.n_layers == 5);
  CHECK(h.n_heads == 8);
  CHECK(h.n_kv_heads == 4);
  CHECK(h.vocab_size == 512);
  CHECK(h.seq_len == 512);
  CHECK(qroar::llama2c_file_size(h) == 1056540u);
  CHECK(qroar::is_llama2c_file(path.string()));

  const auto m = qroar::load_llama2c(path.string());
  const auto& c = m.config;
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.head_size() == 8);
  CHECK(c.original_ctx == 512);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.norm_eps == 1e-5f);
  CHECK(c.layout == qroar::pair_layout::interleaved);
  CHECK(c.tied_embeddings);
  CHECK(c.rope.type == qroar::rope_type::none);
  CHECK(m.source_format == "llama2c");
  CHECK(m.output.size() == 0);
  CHECK(m.layers.size() == 5);
  CHECK(m.token_embedding.rows() == 512);
  CHECK(m.token_embedding.cols() == 64);
  CHECK(m.layers[0].wk.rows() == 32);
  CHECK(m.layers[4].w2.cols() == 172);
  // First float after the header is token_embedding[0][0]; the last real weight is rms_final_weight[63].
  const auto bytes = read_bytes(path.string());
  float first = 0, last_norm = 0;
  std::memcpy(&first, bytes.data() + 28, 4);
  const std::size_t final_norm_end = bytes.size() - 2u * 512u * 4u * 4u;  // before freq_cis_real/imag (512 x 4 each)
  std::memcpy(&last_norm, bytes.data() + final_norm_end - 4, 4);
  CHECK(m.token_embedding(0, 0) == first);
  CHECK(m.final_norm(63) == last_norm);
}

TEST_CASE("llama2c: llama2xs model.bin loads (hidden 192, seq_len 256)") {
  const auto path = qroar_test::shared_file(llama2xs);
  if (path.empty()) return;
  const auto m = qroar::load_llama2c(path.string());
  CHECK(m.config.dim == 64);
  CHECK(m.config.hidden_dim == 192);
  CHECK(m.config.n_layers == 5);
  CHECK(m.config.n_heads == 8);
  CHECK(m.config.n_kv_heads == 4);
  CHECK(m.config.vocab_size == 512);
  CHECK(m.config.original_ctx == 256);
  CHECK(m.layers[2].w1.rows() == 192);
}

TEST_CASE("llama2c: load + write round trips are byte-identical") {
  temp_dir tmp;
  for (const char* rel : {stories260k, llama2xs, gutenberg_bin}) {
    CAPTURE(rel);
    const auto path = qroar_test::shared_file(rel);
    if (path.empty()) return;
    const auto m = qroar::load_llama2c(path.string());
    const std::string out = tmp.file("roundtrip.bin");
    qroar::write_llama2c(m, out);
    CHECK(read_bytes(out) == read_bytes(path.string()));

    // Through the half-split layout and back: the writer permutes W_Q / W_K rows to interleaved.
    auto half = m;
    qroar::convert_pair_layout(half, qroar::pair_layout::half_split);
    CHECK_FALSE(qroar_io_test::same_weights(half, m));
    const std::string out2 = tmp.file("from_half_split.bin");
    qroar::write_llama2c(half, out2);
    CHECK(read_bytes(out2) == read_bytes(path.string()));
  }
}

TEST_CASE("llama2c: a recomputed freq_cis table is within the tolerance of the stored one; weights re-read identical") {
  const auto path = qroar_test::shared_file(stories260k);
  if (path.empty()) return;
  temp_dir tmp;
  const auto m = qroar::load_llama2c(path.string());
  qroar::llama2c_write_options opt;
  opt.keep_source_freq_cis = false;
  const std::string out = tmp.file("recomputed.bin");
  qroar::write_llama2c(m, out, opt);
  const auto a = read_bytes(path.string());
  const auto b = read_bytes(out);
  REQUIRE(a.size() == b.size());
  const std::size_t table_begin = a.size() - 2u * 512u * 4u * 4u;
  CHECK(std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(table_begin), b.begin()));
  double max_diff = 0;
  for (std::size_t o = table_begin; o < a.size(); o += 4) {
    float x, y;
    std::memcpy(&x, a.data() + o, 4);
    std::memcpy(&y, b.data() + o, 4);
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(x) - y));
  }
  CHECK(max_diff <= qroar::llama2c_freq_cis_tolerance);
  // freq_cis_real row 1 is cos(10000^(-2i/8)) (docs/test-data.md).
  for (int i = 0; i < 4; ++i) {
    float stored;
    std::memcpy(&stored, b.data() + table_begin + (4u + static_cast<std::size_t>(i)) * 4u, 4);
    CHECK(std::fabs(stored - std::cos(std::pow(10000.0, -2.0 * i / 8))) <= qroar::llama2c_freq_cis_tolerance);
  }
  CHECK(qroar_io_test::same_weights(qroar::load_llama2c(out), m));
}

TEST_CASE("llama2c: untied classifier round trip (negative vocab_size)") {
  temp_dir tmp;
  const auto m = qroar_io_test::tiny_model(/*untied=*/true);
  const std::string out = tmp.file("untied.bin");
  qroar::write_llama2c(m, out);
  const auto bytes = read_bytes(out);
  std::int32_t vocab;
  std::memcpy(&vocab, bytes.data() + 20, 4);
  CHECK(vocab == -10);
  const auto r = qroar::load_llama2c(out);
  CHECK_FALSE(r.config.tied_embeddings);
  CHECK(r.output.rows() == 10);
  CHECK(qroar_io_test::same_weights(r, m));
  // Writing the re-read model again gives the same bytes.
  const std::string out2 = tmp.file("untied2.bin");
  qroar::write_llama2c(r, out2);
  CHECK(read_bytes(out2) == bytes);
}

TEST_CASE("llama2c: truncated files throw format_error at every cut") {
  temp_dir tmp;
  const auto m = qroar_io_test::tiny_model(true);
  const std::string good = tmp.file("good.bin");
  qroar::write_llama2c(m, good);
  const auto bytes = read_bytes(good);
  const std::string bad = tmp.file("cut.bin");
  int checked = 0;
  for (std::size_t cut = 0; cut < bytes.size(); cut += (cut < 64 ? 1 : 37)) {
    CAPTURE(cut);
    write_bytes(bad, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    CHECK_FALSE(qroar::is_llama2c_file(bad));
    ++checked;
  }
  write_bytes(bad, std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 1));
  CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
  auto longer = bytes;
  longer.push_back(0);
  write_bytes(bad, longer);
  CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
  CHECK(checked > 100);
  // The error names the array that runs past the end.
  write_bytes(bad, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 28 + 10 * 16 * 4 + 8));
  try {
    qroar::load_llama2c(bad);
    FAIL("expected format_error");
  } catch (const qroar::format_error& e) {
    CHECK(e.tensor() == "rms_att_weight[0]");
    CHECK(e.offset() == 28u + 10u * 16u * 4u);
  }
}

TEST_CASE("llama2c: hostile headers throw typed errors") {
  temp_dir tmp;
  const std::string bad = tmp.file("bad.bin");
  auto with_header = [&](std::initializer_list<std::int32_t> h, std::size_t extra = 64) {
    std::vector<std::uint8_t> b(28 + extra, 0);
    std::size_t i = 0;
    for (auto v : h) qroar_io_test::put_i32(b, 4 * i++, v);
    write_bytes(bad, b);
  };
  const std::int32_t big = std::numeric_limits<std::int32_t>::max();
  const std::int32_t smallest = std::numeric_limits<std::int32_t>::min();
  SUBCASE("negative or zero dims") {
    for (int field = 0; field < 7; ++field) {
      for (std::int32_t v : {0, -1, -64, smallest}) {
        if (field == 5 && v == -64) continue;  // a negative vocab is legal (untied)
        std::int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
        h[field] = v;
        with_header({h[0], h[1], h[2], h[3], h[4], h[5], h[6]});
        CAPTURE(field);
        CAPTURE(v);
        CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
      }
    }
  }
  SUBCASE("huge sizes") {
    for (int field = 0; field < 7; ++field) {
      std::int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
      h[field] = big;
      with_header({h[0], h[1], h[2], h[3], h[4], h[5], h[6]});
      CAPTURE(field);
      CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    }
    // Within every per-field limit, but the implied size (terabytes) is far beyond the file.
    with_header({1 << 20, 1 << 22, 4096, 4096, 4096, 1 << 24, 1 << 24});
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    with_header({1 << 20, 1 << 22, 4096, 4096, 4096, -(1 << 24), 1 << 24});
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
  }
  SUBCASE("inconsistent heads") {
    with_header({64, 172, 5, 7, 7, 512, 512});  // 64 % 7 != 0
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    with_header({64, 172, 5, 8, 3, 512, 512});  // 8 % 3 != 0
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    with_header({64, 172, 5, 4, 8, 512, 512});  // more KV heads than heads
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    with_header({63, 172, 5, 21, 21, 512, 512});  // odd head_dim 3
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
  }
  SUBCASE("llama2.c version-1/2 magic") {
    with_header({0x616b3432, 1, 64, 172, 5, 8, 4});
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::unsupported);
  }
  SUBCASE("missing and empty files") {
    CHECK_THROWS_AS(qroar::load_llama2c(tmp.file("does-not-exist.bin")), qroar::io_error);
    write_bytes(bad, {});
    CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::format_error);
    CHECK_THROWS_AS(qroar::load_llama2c(tmp.path().string()), qroar::io_error);
  }
}

TEST_CASE("llama2c: NaN and infinite weights throw numeric_error naming the array and element") {
  temp_dir tmp;
  const auto m = qroar_io_test::tiny_model(true);
  const std::string good = tmp.file("good.bin");
  qroar::write_llama2c(m, good);
  const auto bytes = read_bytes(good);
  const std::string bad = tmp.file("nan.bin");
  // wq[1] starts after token_embedding (10x16), rms_att (2x16), wq[0] (16x16).
  const std::size_t wq1 = 28 + 4 * (10 * 16 + 2 * 16 + 16 * 16);
  auto b = bytes;
  qroar_io_test::put_f32(b, wq1 + 4 * (3 * 16 + 5), std::numeric_limits<float>::quiet_NaN());
  write_bytes(bad, b);
  try {
    qroar::load_llama2c(bad);
    FAIL("expected numeric_error");
  } catch (const qroar::numeric_error& e) {
    const std::string what = e.what();
    CHECK(what.find("wq[1]") != std::string::npos);
    CHECK(what.find("row 3, column 5") != std::string::npos);
  }
  b = bytes;
  qroar_io_test::put_f32(b, bytes.size() - 4, -std::numeric_limits<float>::infinity());  // last wcls element
  write_bytes(bad, b);
  CHECK_THROWS_AS(qroar::load_llama2c(bad), qroar::numeric_error);
  // A NaN in the model refuses to be written.
  auto nan_model = m;
  nan_model.layers[0].w2(1, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(qroar::write_llama2c(nan_model, tmp.file("never.bin")), qroar::numeric_error);
  CHECK_FALSE(std::filesystem::exists(tmp.file("never.bin")));
}

TEST_CASE("llama2c: the writer refuses to overwrite its input and what the format cannot hold") {
  temp_dir tmp;
  const std::string src = tmp.file("model.bin");
  qroar::write_llama2c(qroar_io_test::tiny_model(), src);
  const auto before = read_bytes(src);
  auto m = qroar::load_llama2c(src);
  CHECK_THROWS_AS(qroar::write_llama2c(m, src), qroar::invalid_argument);
  CHECK(read_bytes(src) == before);
  // Also through another spelling of the same path.
  CHECK_THROWS_AS(qroar::write_llama2c(m, (tmp.path() / "." / "model.bin").string()), qroar::invalid_argument);

  auto scaled = m;
  scaled.config.rope = qroar::rope_scaling::linear(2.0);
  CHECK_THROWS_AS(qroar::write_llama2c(scaled, tmp.file("x.bin")), qroar::unsupported);
  auto theta = m;
  theta.config.rope_theta = 500000.0;
  CHECK_THROWS_AS(qroar::write_llama2c(theta, tmp.file("x.bin")), qroar::unsupported);
  auto shape = m;
  shape.layers[1].w3.resize(3, 3);
  CHECK_THROWS_AS(qroar::write_llama2c(shape, tmp.file("x.bin")), qroar::invalid_argument);
  CHECK_FALSE(std::filesystem::exists(tmp.file("x.bin")));
}
