#include <doctest/doctest.h>

#include <qroar/io/safetensors.hpp>

#include <cmath>
#include <limits>

#include "model_io_testing.hpp"
#include "shared_data.hpp"

using qroar_io_test::read_bytes;
using qroar_io_test::temp_dir;
using qroar_io_test::write_bytes;

namespace {

const char* const gutenberg_st = "data/models/gutenberg-3m/hf/model.safetensors";

// A safetensors file with the given raw header text (not padded) and data section.
std::vector<std::uint8_t> make_file(const std::string& header, const std::vector<std::uint8_t>& data,
                                    std::uint64_t claimed_length = 0) {
  std::vector<std::uint8_t> b;
  b.reserve(8 + header.size() + data.size());
  b.resize(8);
  const std::uint64_t n = claimed_length ? claimed_length : header.size();
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::vector<std::uint8_t> floats_le(std::initializer_list<float> v) {
  std::vector<std::uint8_t> b(v.size() * 4);
  std::size_t i = 0;
  for (float f : v) std::memcpy(b.data() + 4 * i++, &f, 4);
  return b;
}

}  // namespace

TEST_CASE("safetensors: the writer reproduces the reference implementation's bytes") {
  temp_dir tmp;
  // huggingface/safetensors safetensors/src/tensor.rs, test_serialization and test_empty.
  const std::vector<std::uint8_t> expected = {
      64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
      116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
      58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
      101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
      0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
  const float data[6] = {0, 1, 2, 3, 4, 5};
  const std::string out = tmp.file("ref.safetensors");
  qroar::write_safetensors(out, {{"attn.0", {1, 2, 3}, data}}, qroar::safetensors_dtype::f32);
  CHECK(read_bytes(out) == expected);

  const std::vector<std::uint8_t> empty = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 32, 32, 32, 32, 32, 32};
  qroar::write_safetensors(out, {}, qroar::safetensors_dtype::f32);
  CHECK(read_bytes(out) == empty);
  const qroar::safetensors_file f(out);
  CHECK(f.tensors().empty());
}

TEST_CASE("safetensors: gutenberg-3m hf/model.safetensors reads and round-trips value-identically") {
  const auto path = qroar_test::shared_file(gutenberg_st);
  if (path.empty()) return;
  const qroar::safetensors_file f(path.string());
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.data_offset() == 8u + 4080u);
  CHECK(f.tensors().size() == 1u + 4u * 9u + 1u);
  const auto& emb = f.info("model.embed_tokens.weight");
  CHECK(emb.dtype == "F32");
  CHECK(emb.shape == std::vector<std::uint64_t>{2048, 256});
  CHECK(f.info("model.layers.3.self_attn.k_proj.weight").shape == std::vector<std::uint64_t>{128, 256});
  CHECK(f.read_vector("model.norm.weight").size() == 256);
  CHECK_THROWS_AS(f.read_matrix("model.norm.weight"), qroar::format_error);
  CHECK_THROWS_AS(f.read_vector("model.embed_tokens.weight"), qroar::format_error);
  CHECK_THROWS_AS(f.info("lm_head.weight"), qroar::format_error);

  temp_dir tmp;
  std::vector<std::vector<float>> values;
  std::vector<qroar::safetensors_entry> entries;
  values.reserve(f.tensors().size());
  for (const auto& t : f.tensors()) {
    values.push_back(f.read(t.name));
    entries.push_back({t.name, t.shape, values.back().data()});
  }
  const std::string out = tmp.file("copy.safetensors");
  qroar::write_safetensors(out, entries, qroar::safetensors_dtype::f32, f.metadata(), {path.string()});
  const qroar::safetensors_file g(out);
  CHECK(g.metadata() == f.metadata());
  REQUIRE(g.tensors().size() == f.tensors().size());
  for (const auto& t : f.tensors()) {
    CAPTURE(t.name);
    const auto& u = g.info(t.name);
    CHECK(u.shape == t.shape);
    CHECK(u.end - u.begin == t.end - t.begin);
    CHECK(std::memcmp(g.raw(t.name), f.raw(t.name), t.end - t.begin) == 0);
  }
  CHECK(g.data_offset() % 8 == 0);
  // Our own output is a fixed point of read + write.
  const std::string out2 = tmp.file("copy2.safetensors");
  qroar::write_safetensors(out2, entries, qroar::safetensors_dtype::f32, g.metadata());
  CHECK(read_bytes(out2) == read_bytes(out));
}

TEST_CASE("safetensors: F16 and BF16 store rounded values and read back") {
  temp_dir tmp;
  const float v[6] = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f, -0.0f};
  const std::string p16 = tmp.file("h.safetensors"), pb16 = tmp.file("b.safetensors");
  qroar::write_safetensors(p16, {{"x", {2, 3}, v}}, qroar::safetensors_dtype::f16);
  qroar::write_safetensors(pb16, {{"x", {2, 3}, v}}, qroar::safetensors_dtype::bf16);
  const qroar::safetensors_file h(p16), b(pb16);
  CHECK(h.info("x").dtype == "F16");
  CHECK(b.info("x").dtype == "BF16");
  const auto* raw = h.raw("x");
  CHECK((raw[0] | (raw[1] << 8)) == 0x3C00);  // 1.0 in binary16
  const auto* rawb = b.raw("x");
  CHECK((rawb[0] | (rawb[1] << 8)) == 0x3F80);  // 1.0 in bfloat16
  const qroar::tensor mh = h.read_matrix("x"), mb = b.read_matrix("x");
  for (int i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(mh.data()[i] == qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(v[i])));
    CHECK(mb.data()[i] == qroar::detail::bf16_to_fp32(qroar::detail::fp32_to_bf16(v[i])));
  }
  CHECK(mh(0, 0) == 1.0f);
  CHECK(mh(1, 0) == 65504.0f);
  CHECK(std::signbit(mh(1, 2)));

  const float too_big[2] = {1.0f, 70000.0f};
  CHECK_THROWS_AS(qroar::write_safetensors(tmp.file("o.safetensors"), {{"x", {2}, too_big}}, qroar::safetensors_dtype::f16),
                  qroar::numeric_error);
  qroar::write_safetensors(tmp.file("o.safetensors"), {{"x", {2}, too_big}}, qroar::safetensors_dtype::bf16);
  const float nan[1] = {std::numeric_limits<float>::quiet_NaN()};
  CHECK_THROWS_AS(qroar::write_safetensors(tmp.file("n.safetensors"), {{"x", {1}, nan}}, qroar::safetensors_dtype::f32),
                  qroar::numeric_error);
  CHECK_FALSE(std::filesystem::exists(tmp.file("n.safetensors")));
}

TEST_CASE("safetensors: writer argument checks and refusal to overwrite its input") {
  temp_dir tmp;
  const float v[2] = {1, 2};
  const std::string p = tmp.file("in.safetensors");
  qroar::write_safetensors(p, {{"a", {2}, v}}, qroar::safetensors_dtype::f32);
  const auto before = read_bytes(p);
  CHECK_THROWS_AS(qroar::write_safetensors(p, {{"a", {2}, v}}, qroar::safetensors_dtype::f32, {}, {p}),
                  qroar::invalid_argument);
  CHECK(read_bytes(p) == before);
  CHECK_THROWS_AS(qroar::write_safetensors(tmp.file("d.safetensors"), {{"a", {2}, v}, {"a", {1}, v}},
                                           qroar::safetensors_dtype::f32),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::write_safetensors(tmp.file("d.safetensors"), {{"__metadata__", {2}, v}}, qroar::safetensors_dtype::f32),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::write_safetensors(tmp.file("d.safetensors"), {{"", {2}, v}}, qroar::safetensors_dtype::f32),
                  qroar::invalid_argument);
  // Metadata and several tensors: keys sorted, __metadata__ first, 8-byte aligned data section.
  qroar::write_safetensors(tmp.file("m.safetensors"), {{"b", {1}, v}, {"a", {2}, v}}, qroar::safetensors_dtype::f32,
                           {{"format", "pt"}});
  const auto bytes = read_bytes(tmp.file("m.safetensors"));
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(bytes[0]));
  CHECK(header.rfind(
            R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
            0) == 0);
  CHECK(header.size() % 8 == 0);
  CHECK(header.find_first_not_of(' ', header.find_last_of('}') + 1) == std::string::npos);
}

TEST_CASE("safetensors: hostile files throw typed errors") {
  temp_dir tmp;
  const std::string bad = tmp.file("bad.safetensors");
  const auto data8 = floats_le({1.0f, 2.0f});
  auto expect_format = [&](const std::vector<std::uint8_t>& bytes) {
    write_bytes(bad, bytes);
    CHECK_THROWS_AS(qroar::safetensors_file{bad}, qroar::format_error);
  };
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  write_bytes(bad, make_file(ok, data8));
  CHECK(qroar::safetensors_file(bad).read("a") == std::vector<float>{1.0f, 2.0f});

  SUBCASE("header length huge, over the cap or past the end") {
    expect_format(make_file(ok, data8, std::numeric_limits<std::uint64_t>::max()));
    expect_format(make_file(ok, data8, std::numeric_limits<std::uint64_t>::max() - 7));
    expect_format(make_file(ok, data8, qroar::safetensors_max_header_bytes + 1));
    expect_format(make_file(ok, data8, ok.size() + data8.size() + 1));
    write_bytes(bad, make_file(ok, data8));
    CHECK_THROWS_AS(qroar::safetensors_file(bad, 16), qroar::format_error);  // a caller's smaller cap
    expect_format({1, 2, 3});
    expect_format({});
    expect_format(make_file("", {}));
  }
  SUBCASE("bad JSON") {
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", data8));  // missing brace
    expect_format(make_file(R"({"a":)", data8));
    expect_format(make_file("[1,2]", data8));
    expect_format(make_file("{\"a\":\xff\xfe}", data8));
    expect_format(make_file(std::string(64, '{'), data8));
    expect_format(make_file(R"("just a string")", data8));
    expect_format(make_file(R"({"a":[1,2]})", data8));
    expect_format(make_file(R"({"a":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2]}})", data8));
    expect_format(make_file(R"({"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data8));
  }
  SUBCASE("shapes and sizes") {
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", data8));
    expect_format(make_file(
        R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data8));  // 2^64 elements
    expect_format(make_file(
        R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})", data8));  // 2^62 x 4 bytes
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", data8));
  }
  SUBCASE("offsets") {
    // Overlapping.
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            data8));
    write_bytes(bad, make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               floats_le({1, 2, 3})));
    try {
      qroar::safetensors_file f(bad);
      FAIL("expected format_error");
    } catch (const qroar::format_error& e) {
      CHECK(e.tensor() == "b");
      CHECK(std::string(e.what()).find("overlaps") != std::string::npos);
    }
    // Gap, end < begin, past the data section, uncovered tail, leading gap.
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            floats_le({1, 2, 3})));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8));
    expect_format(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,0]}})", data8));
  }
  SUBCASE("dtypes") {
    write_bytes(bad, make_file(R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", data8));
    try {
      qroar::safetensors_file f(bad);
      FAIL("expected unsupported");
    } catch (const qroar::unsupported& e) {
      CHECK(std::string(e.what()).find("'a'") != std::string::npos);
    }
    // A known but non-float dtype opens (its size is checked) and refuses to convert, naming the tensor.
    write_bytes(bad, make_file(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", data8));
    const qroar::safetensors_file f(bad);
    CHECK_THROWS_AS(f.read("ids"), qroar::unsupported);
    expect_format(make_file(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}})", data8));
  }
}

TEST_CASE("safetensors: a real file truncated or corrupted anywhere never crashes") {
  const auto path = qroar_test::shared_file(gutenberg_st);
  if (path.empty()) return;
  temp_dir tmp;
  const auto bytes = read_bytes(path.string());
  const std::string bad = tmp.file("cut.safetensors");
  int n = 0;
  for (std::size_t cut = 0; cut < bytes.size(); cut += (cut < 4200 ? 97 : 104729)) {
    CAPTURE(cut);
    write_bytes(bad, std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    CHECK_THROWS_AS(qroar::safetensors_file{bad}, qroar::format_error);
    ++n;
  }
  CHECK(n > 100);
  // Flipping header bytes gives a typed error or a valid file, never anything else.
  for (std::size_t at = 8; at < 8 + 4080; at += 13) {
    auto b = std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 8 + 4080);
    b[at] = static_cast<std::uint8_t>(b[at] ^ 0x5A);
    b.insert(b.end(), bytes.begin() + 8 + 4080, bytes.end());
    write_bytes(bad, b);
    try {
      const qroar::safetensors_file f(bad);
      for (const auto& t : f.tensors()) {
        if (t.dtype == "F32") (void)f.raw(t.name);
      }
    } catch (const qroar::error&) {
    }
  }
}
