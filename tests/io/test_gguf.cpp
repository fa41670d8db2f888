// GGUF reader and writer: the real files of ../shared open with the metadata docs/test-data.md states, a read ->
// write round trip reproduces every file byte for byte, and damaged files (truncated, flipped bytes, huge
// lengths) raise qroar::format_error, never a crash.
#include <doctest/doctest.h>

#include <array>

#include "shared_data.hpp"

#include <qroar/io/gguf.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

using qroar::ggml_type;
using qroar::gguf_type;
using qroar::gguf_value;

std::vector<std::uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p.string());
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& bytes, std::size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(n));
  REQUIRE(out.good());
}
void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& bytes) { write_bytes(p, bytes, bytes.size()); }

// A fresh directory under the system temp dir, removed at scope exit.
struct gguf_temp_dir {
  fs::path path;
  gguf_temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "qroar-gguf-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~gguf_temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<fs::path> all_shared_ggufs() {
  std::vector<fs::path> out;
  const auto models = qroar_test::shared_file("data/models");
  if (models.empty()) return out;
  for (const auto& e : fs::recursive_directory_iterator(models))
    if (e.is_regular_file() && e.path().extension() == ".gguf") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Opening must either succeed or throw qroar::format_error; anything else (another exception, a crash under
// the sanitizers) fails.
enum class outcome { ok, format_error };
outcome try_open(const fs::path& p) {
  try {
    const auto f = qroar::gguf_file::open(p.string());
    // Touch everything the reader validated.
    for (const auto& t : f.tensors()) {
      const std::uint8_t* d = f.tensor_data(t);
      if (t.size > 0) {
        volatile std::uint8_t sink = d[0];
        sink = d[t.size - 1];
        (void)sink;
      }
    }
    return outcome::ok;
  } catch (const qroar::format_error&) {
    return outcome::format_error;
  }
}

// A small file with every value type, a nested array and tensors of several ggml types.
qroar::gguf_writer sample_writer(std::vector<float>& storage) {
  qroar::gguf_writer w;
  w.set("general.architecture", gguf_value::string("llama"));
  w.set("test.u8", gguf_value::u8(200));
  w.set("test.i8", gguf_value::i8(-100));
  w.set("test.u16", gguf_value::u16(60000));
  w.set("test.i16", gguf_value::i16(-30000));
  w.set("test.u32", gguf_value::u32(4000000000u));
  w.set("test.i32", gguf_value::i32(-2000000000));
  w.set("test.u64", gguf_value::u64(18000000000000000000ull));
  w.set("test.i64", gguf_value::i64(-9000000000000000000ll));
  w.set("test.f32", gguf_value::f32(0.1f));
  w.set("test.f64", gguf_value::f64(-2.5e300));
  w.set("test.bool", gguf_value::boolean(true));
  w.set("test.empty_string", gguf_value::string(""));
  w.set("test.strings", gguf_value::array_of(std::vector<std::string>{"a", "", "\xC3\xA9t\xC3\xA9"}));
  w.set("test.floats", gguf_value::array_of(std::vector<float>{1.f, -0.f, 3.5f}));
  w.set("test.ints", gguf_value::array_of(std::vector<std::int32_t>{-1, 0, 7}));
  gguf_value nested = gguf_value::array(gguf_type::array);
  nested.push_back(gguf_value::array_of(std::vector<std::uint16_t>{1, 2}));
  nested.push_back(gguf_value::array_of(std::vector<std::uint16_t>{}));
  w.set("test.nested", nested);
  w.set("test.empty", gguf_value::array(gguf_type::float64));
  storage.resize(64 * 3 + 7);
  for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = std::sin(0.37f * static_cast<float>(i));
  w.add_tensor_quantized("a.weight", ggml_type::q8_0, {64, 3}, storage.data());
  w.add_tensor_quantized("b.weight", ggml_type::f16, {7}, storage.data() + 192);
  w.add_tensor_quantized("c.weight", ggml_type::f32, {5}, storage.data());
  w.add_tensor_quantized("d.weight", ggml_type::q4_k, {256, 1, 1, 1}, std::vector<float>(256, 0.25f).data());
  return w;
}

}  // namespace

TEST_CASE("every GGUF in ../shared/data opens and dequantizes") {
  const auto files = all_shared_ggufs();
  if (files.empty()) return;
  CHECK(files.size() == 12);
  for (const auto& p : files) {
    CAPTURE(p.string());
    const auto f = qroar::gguf_file::open(p.string());
    CHECK(f.version() == 3);
    CHECK(f.alignment() == 32);
    CHECK(f.data_offset() % 32 == 0);
    CHECK(f.architecture() == "llama");
    CHECK(!f.tensors().empty());
    for (const auto& t : f.tensors()) {
      CHECK(f.data_offset() + t.offset + t.size <= f.file_size());
      if (qroar::ggml_type_is_convertible(t.type)) {
        const qroar::tensor w = f.dequantize(t);
        CHECK(w.rows() == t.n_rows());
        CHECK(w.cols() == t.ne[0]);
        CHECK(w.allFinite());
      }
    }
  }
}

// MANIFEST in the name: the data description summarized in docs/test-data.md.
TEST_CASE("stories260K.gguf metadata matches MANIFEST.md") {
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.gguf");
  if (path.empty()) return;
  const auto f = qroar::gguf_file::open(path.string());
  CHECK(f.version() == 3);
  CHECK(f.tensors().size() == 48);
  CHECK(f.metadata().size() == 19);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_int("llama.embedding_length") == 64);
  CHECK(f.get_int("llama.feed_forward_length") == 172);
  CHECK(f.get_int("llama.block_count") == 5);
  CHECK(f.get_int("llama.attention.head_count") == 8);
  CHECK(f.get_int("llama.attention.head_count_kv") == 4);
  CHECK(f.get_int("llama.rope.dimension_count") == 8);
  CHECK(f.get_int("llama.context_length") == 2048);  // not the trained context (512), see docs/test-data.md
  CHECK(f.get_float("llama.attention.layer_norm_rms_epsilon") == doctest::Approx(1e-5).epsilon(1e-6));
  CHECK(f.find("llama.attention.layer_norm_rms_epsilon")->type() == gguf_type::float32);
  CHECK_FALSE(f.contains("llama.rope.freq_base"));
  CHECK(f.get_float("llama.rope.freq_base", 10000.0) == 10000.0);  // absent: the fallback
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(f.get_int("tokenizer.ggml.bos_token_id") == 1);
  CHECK(f.get_int("tokenizer.ggml.eos_token_id") == 2);
  CHECK(f.get_int("tokenizer.ggml.unknown_token_id") == 0);
  const auto* tokens = f.get_array("tokenizer.ggml.tokens", gguf_type::string);
  REQUIRE(tokens != nullptr);
  CHECK(tokens->size() == 512);
  CHECK(tokens->string_at(0) == "<unk>");
  CHECK(tokens->string_at(3) == "<0x00>");
  const auto* scores = f.get_array("tokenizer.ggml.scores");
  REQUIRE(scores != nullptr);
  CHECK(scores->size() == 512);
  CHECK(scores->to_floats().size() == 512);
  CHECK(f.get_array("tokenizer.ggml.token_type")->size() == 512);
  // Wrong-typed access is a format error naming the key.
  CHECK_THROWS_AS(f.get_int("general.architecture"), qroar::format_error);
  CHECK_THROWS_AS(f.get_string("llama.block_count"), qroar::format_error);
  CHECK_THROWS_AS(f.get_array("llama.block_count"), qroar::format_error);
  CHECK_THROWS_AS(f.get_array("tokenizer.ggml.tokens", gguf_type::int32), qroar::format_error);
  for (const auto& t : f.tensors()) CHECK(t.type == ggml_type::f32);
  const auto* embd = f.tensor("token_embd.weight");
  REQUIRE(embd != nullptr);
  CHECK(embd->n_dims == 2);
  CHECK(embd->ne[0] == 64);
  CHECK(embd->ne[1] == 512);
  CHECK(f.tensor("no.such.tensor") == nullptr);
  CHECK_THROWS_AS(f.dequantize("no.such.tensor"), qroar::invalid_argument);

  // Independent cross-check (docs/test-data.md: the GGUF tensors equal the llama2.c arrays): the token embedding
  // follows the 28-byte header of stories260K.bin.
  const auto bin_path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  const auto bin = read_bytes(bin_path);
  const qroar::tensor w = f.dequantize(*embd);
  REQUIRE(bin.size() >= 28 + 512 * 64 * 4);
  CHECK(std::memcmp(w.data(), bin.data() + 28, 512 * 64 * 4) == 0);
}

// MANIFEST in the name: the data description summarized in docs/test-data.md.
TEST_CASE("gutenberg-3m model-f32.gguf metadata matches MANIFEST.md") {
  const auto path = qroar_test::shared_file("data/models/gutenberg-3m/model-f32.gguf");
  if (path.empty()) return;
  const auto f = qroar::gguf_file::open(path.string());
  CHECK(f.version() == 3);
  CHECK(f.get_int("llama.context_length") == 256);
  CHECK(f.get_float("llama.rope.freq_base") == 10000.0);
  CHECK(f.get_int("llama.embedding_length") == 256);
  CHECK(f.get_int("llama.feed_forward_length") == 704);
  CHECK(f.get_int("llama.block_count") == 4);
  CHECK(f.get_int("llama.attention.head_count") == 4);
  CHECK(f.get_int("llama.attention.head_count_kv") == 2);
  CHECK(f.get_array("tokenizer.ggml.tokens", gguf_type::string)->size() == 2048);
  CHECK(f.tensors().size() == 2 + 4 * 9);
  // K-quant file: the ffn_down rows (704) cannot hold 256-blocks and are stored as q8_0.
  const auto q = qroar::gguf_file::open(
      qroar_test::shared_file("data/models/gutenberg-3m/ggml-quantized/gutenberg-3m-q4_K.gguf").string());
  CHECK(q.tensor("blk.0.ffn_down.weight")->type == ggml_type::q8_0);
  CHECK(q.tensor("blk.0.attn_q.weight")->type == ggml_type::q4_k);
  CHECK(q.tensor("blk.0.attn_q.weight")->size == 256 / 256 * 144 * 256);
}

TEST_CASE("read -> write reproduces every shared GGUF byte for byte") {
  const auto files = all_shared_ggufs();
  if (files.empty()) return;
  gguf_temp_dir tmp;
  for (const auto& p : files) {
    CAPTURE(p.string());
    const auto f = qroar::gguf_file::open(p.string());
    const auto w = qroar::gguf_writer::from(f);
    const fs::path out = tmp.path / p.filename();
    w.write(out.string(), {p.string()});
    CHECK(read_bytes(out) == read_bytes(p));
    // The writer refuses to overwrite its input.
    CHECK_THROWS_AS(w.write(p.string(), {p.string()}), qroar::invalid_argument);
  }
}

TEST_CASE("writer: every value type, nested arrays, alignment, quantized tensors; reader reads them back") {
  gguf_temp_dir tmp;
  std::vector<float> storage;
  auto w = sample_writer(storage);
  for (std::uint32_t alignment : {32u, 64u, 1u}) {
    CAPTURE(alignment);
    w.set_alignment(alignment);
    const fs::path p = tmp.path / ("sample" + std::to_string(alignment) + ".gguf");
    w.write(p.string());
    const auto f = qroar::gguf_file::open(p.string());
    CHECK(f.alignment() == alignment);
    CHECK(f.data_offset() % alignment == 0);
    REQUIRE(f.metadata().size() == w.metadata().size());
    for (std::size_t i = 0; i < w.metadata().size(); ++i) {
      CHECK(f.metadata()[i].key == w.metadata()[i].first);
      CHECK(f.metadata()[i].value == w.metadata()[i].second);
    }
    CHECK(f.get_int("test.u8") == 200);
    CHECK(f.get_int("test.i8") == -100);
    CHECK(f.get_int("test.u16") == 60000);
    CHECK(f.get_int("test.i16") == -30000);
    CHECK(f.get_int("test.u32") == 4000000000ll);
    CHECK(f.get_int("test.i32") == -2000000000);
    CHECK(f.find("test.u64")->as_uint() == 18000000000000000000ull);
    CHECK_THROWS_AS(f.get_int("test.u64"), qroar::format_error);  // does not fit int64
    CHECK(f.get_int("test.i64") == -9000000000000000000ll);
    CHECK(f.get_float("test.f32") == 0.1f);
    CHECK(f.get_float("test.f64") == -2.5e300);
    CHECK(f.get_bool("test.bool"));
    CHECK(f.get_string("test.empty_string", "x").empty());
    CHECK(f.get_array("test.strings")->strings() == std::vector<std::string>{"a", "", "\xC3\xA9t\xC3\xA9"});
    CHECK(f.get_array("test.floats")->float_at(2) == 3.5);
    CHECK(std::signbit(f.get_array("test.floats")->float_at(1)));
    CHECK(f.get_array("test.ints")->to_ints() == std::vector<std::int64_t>{-1, 0, 7});
    const auto* nested = f.get_array("test.nested", gguf_type::array);
    REQUIRE(nested != nullptr);
    CHECK(nested->size() == 2);
    CHECK(nested->array_at(0).int_at(1) == 2);
    CHECK(nested->array_at(1).size() == 0);
    CHECK(f.get_array("test.empty")->size() == 0);
    REQUIRE(f.tensors().size() == 4);
    const auto* a = f.tensor("a.weight");
    CHECK(a->type == ggml_type::q8_0);
    CHECK(a->n_rows() == 3);
    const qroar::tensor at = f.dequantize(*a);
    for (int i = 0; i < 64 * 3; ++i) CHECK(at.data()[i] == doctest::Approx(storage[static_cast<std::size_t>(i)]).epsilon(0.02));
    const qroar::tensor bt = f.dequantize("b.weight");
    CHECK(bt.rows() == 1);
    CHECK(bt.cols() == 7);
    CHECK(bt(0, 3) == qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(storage[195])));
    CHECK(f.dequantize("c.weight")(0, 4) == storage[4]);
    CHECK(f.tensor("d.weight")->n_dims == 4);
    CHECK(f.dequantize("d.weight")(0, 100) == doctest::Approx(0.25).epsilon(1e-3));
    // A second round trip of a file we wrote is byte-identical too.
    const fs::path p2 = tmp.path / "again.gguf";
    qroar::gguf_writer::from(f).write(p2.string());
    CHECK(read_bytes(p2) == read_bytes(p));
  }
  // Replacing keeps the position; removing works; version 2 files read back as version 2.
  w.set("test.u8", gguf_value::u8(1));
  CHECK(w.metadata()[1].first == "test.u8");
  CHECK(w.remove("test.i8"));
  CHECK_FALSE(w.remove("test.i8"));
  CHECK(w.remove_tensor("c.weight"));
  w.set_version(2);
  const fs::path p = tmp.path / "v2.gguf";
  w.write(p.string());
  const auto f = qroar::gguf_file::open(p.string());
  CHECK(f.version() == 2);
  CHECK(f.get_int("test.u8") == 1);
  CHECK_FALSE(f.contains("test.i8"));
  CHECK(f.tensors().size() == 3);
  // Writer argument checks.
  CHECK_THROWS_AS(w.add_tensor("bad", ggml_type::q4_0, {33}, std::vector<std::uint8_t>(18)), qroar::invalid_argument);
  CHECK_THROWS_AS(w.add_tensor("bad", ggml_type::q4_0, {32}, std::vector<std::uint8_t>(17)), qroar::invalid_argument);
  CHECK_THROWS_AS(w.add_tensor("bad", ggml_type::f32, {1, 1, 1, 1, 1}, std::vector<std::uint8_t>(4)),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(w.set_alignment(24), qroar::invalid_argument);
  CHECK_THROWS_AS(w.set_version(1), qroar::invalid_argument);
  CHECK_THROWS_AS(w.add_tensor_quantized("bad", ggml_type::q2_k, {256}, storage.data()), qroar::unsupported);
  gguf_value arr = gguf_value::array(gguf_type::int32);
  CHECK_THROWS_AS(arr.push_back(gguf_value::f32(1.f)), qroar::invalid_argument);
  CHECK_THROWS_AS(gguf_value::string("x").as_int(), qroar::invalid_argument);
}

TEST_CASE("truncated copies of a real file raise format_error at every tested offset") {
  const auto path = qroar_test::shared_file("data/models/stories260K/stories260K.gguf");
  if (path.empty()) return;
  const auto bytes = read_bytes(path);
  const auto f = qroar::gguf_file::open(path.string());
  std::uint64_t end_of_data = 0;
  for (const auto& t : f.tensors()) end_of_data = std::max(end_of_data, f.data_offset() + t.offset + t.size);
  std::vector<std::size_t> cuts = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, 30, 100, 1000, 5000};
  cuts.push_back(static_cast<std::size_t>(f.tensors()[0].info_offset));
  cuts.push_back(static_cast<std::size_t>(f.tensors()[0].info_offset + 9));
  cuts.push_back(static_cast<std::size_t>(f.data_offset() - 1));
  cuts.push_back(static_cast<std::size_t>(f.data_offset()));
  cuts.push_back(static_cast<std::size_t>(f.data_offset() + 1));
  cuts.push_back(static_cast<std::size_t>(end_of_data - 1));
  std::mt19937 gen(42);
  std::uniform_int_distribution<std::size_t> any(0, static_cast<std::size_t>(end_of_data - 1));
  for (int i = 0; i < 30; ++i) cuts.push_back(any(gen));
  gguf_temp_dir tmp;
  const fs::path p = tmp.path / "truncated.gguf";
  for (std::size_t cut : cuts) {
    CAPTURE(cut);
    write_bytes(p, bytes, cut);
    CHECK(try_open(p) == outcome::format_error);
  }
}

TEST_CASE("crafted headers: huge lengths and counts, bad types, bad offsets raise format_error") {
  gguf_temp_dir tmp;
  std::vector<float> storage;
  const fs::path good = tmp.path / "good.gguf";
  {
    auto w = sample_writer(storage);
    w.set_alignment(32);
    w.write(good.string());
  }
  const auto base = read_bytes(good);
  const auto f = qroar::gguf_file::open(good.string());
  REQUIRE(f.contains("general.alignment"));
  const fs::path p = tmp.path / "crafted.gguf";

  auto expect_error = [&](std::size_t at, std::uint64_t value, std::size_t width, const char* what) {
    CAPTURE(what);
    auto b = base;
    for (std::size_t i = 0; i < width; ++i) b[at + i] = static_cast<std::uint8_t>(value >> (8 * i));
    write_bytes(p, b);
    CHECK(try_open(p) == outcome::format_error);
    try {
      qroar::gguf_file::open(p.string());
    } catch (const qroar::format_error& e) {
      CHECK(e.file() == p.string());
      CHECK(std::string(e.what()).find("[qroar.format_error.") == 0);
    }
  };
  const std::uint64_t huge = std::uint64_t{1} << 63;
  expect_error(0, 0x46554746, 4, "bad magic");
  expect_error(4, 1, 4, "version 1");
  expect_error(4, 4, 4, "version 4");
  expect_error(4, 0x03000000, 4, "big-endian");
  expect_error(8, std::uint64_t{1} << 40, 8, "tensor count over the cap");
  expect_error(8, 1000, 8, "tensor count larger than the file holds");
  expect_error(16, std::uint64_t{1} << 40, 8, "kv count over the cap");
  expect_error(16, 500, 8, "kv count larger than the file holds");
  expect_error(24, huge, 8, "key length 2^63");
  expect_error(24, base.size(), 8, "key length = file size");
  const std::size_t first_type = 24 + 8 + std::string("general.architecture").size();
  expect_error(first_type, 13, 4, "unknown value type");
  expect_error(first_type + 4, huge, 8, "string value length 2^63");
  // The first tensor info: name, n_dims, ne[], type, offset.
  const auto& t0 = f.tensors()[0];  // a.weight: 2 dims, q8_0
  const std::size_t name_at = static_cast<std::size_t>(t0.info_offset);
  const std::size_t dims_at = name_at + 8 + t0.name.size();
  expect_error(name_at, huge, 8, "tensor name length 2^63");
  expect_error(dims_at, 5, 4, "n_dims 5");
  expect_error(dims_at + 4, static_cast<std::uint64_t>(-64), 8, "negative ne0");
  expect_error(dims_at + 4, 33, 8, "ne0 not a multiple of the block size");
  expect_error(dims_at + 12, std::uint64_t{1} << 62, 8, "ne1 huge: data out of range");
  expect_error(dims_at + 12, huge - 1, 8, "element count overflow");
  expect_error(dims_at + 4 + 16, 99, 4, "unknown ggml type");
  expect_error(dims_at + 4 + 16 + 4, 8, 8, "offset not aligned");
  expect_error(dims_at + 4 + 16 + 4, std::uint64_t{1} << 40, 8, "offset past the end");
  expect_error(dims_at + 4 + 16 + 4, static_cast<std::uint64_t>(-32), 8, "offset wraps around");
  // The second tensor placed on top of the first.
  const auto& t1 = f.tensors()[1];
  const std::size_t t1_offset_at = static_cast<std::size_t>(t1.info_offset + 8 + t1.name.size() + 4 + 8 * t1.n_dims + 4);
  expect_error(t1_offset_at, 0, 8, "overlapping tensors");
  // Array counts: the strings array count.
  std::size_t pos = 24;
  for (const auto& kv : f.metadata()) {
    if (kv.key == "test.strings") {
      pos = static_cast<std::size_t>(kv.offset + 8 + kv.key.size() + 4);
      expect_error(pos, 99, 4, "unknown array element type");
      expect_error(pos + 4, huge, 8, "array count 2^63");
      expect_error(pos + 4, std::uint64_t{1} << 40, 8, "array count beyond the file");
    }
    if (kv.key == "test.nested") {
      pos = static_cast<std::size_t>(kv.offset + 8 + kv.key.size() + 4);
      expect_error(pos + 4, huge, 8, "nested array count 2^63");
    }
    if (kv.key == "test.u8") {
      // Rename "test.u8" to "test.i8", a key that follows it.
      auto b = base;
      std::memcpy(b.data() + kv.offset + 8, "test.i8", 7);
      write_bytes(p, b);
      CHECK(try_open(p) == outcome::format_error);
    }
    if (kv.key == "general.alignment") {
      const std::size_t value_at = static_cast<std::size_t>(kv.offset + 8 + kv.key.size() + 4);
      expect_error(value_at, 48, 4, "alignment not a power of 2");
      expect_error(value_at, 0, 4, "alignment 0");
      expect_error(value_at - 4, 10, 4, "alignment stored as uint64");
    }
  }
  // Arrays nested deeper than the cap.
  {
    gguf_value v = gguf_value::array_of(std::vector<std::uint8_t>{1});
    for (int d = 0; d < qroar::gguf_file::max_array_depth + 1; ++d) {
      gguf_value outer = gguf_value::array(gguf_type::array);
      outer.push_back(v);
      v = outer;
    }
    qroar::gguf_writer w;
    w.set("deep", v);
    write_bytes(p, w.header());
    CHECK(try_open(p) == outcome::format_error);
  }
}

TEST_CASE("overflowing row counts and row byte sizes are rejected (fuzz_gguf findings)") {
  // One f32 tensor "t" with the given dims and 32 data bytes after the header (alignment 32).
  auto one_tensor_file = [](const std::array<std::uint64_t, 4>& ne) {
    std::vector<std::uint8_t> b;
    auto put = [&](std::uint64_t v, int width) {
      for (int i = 0; i < width; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    for (char c : std::string("GGUF")) b.push_back(static_cast<std::uint8_t>(c));
    put(3, 4);  // version
    put(1, 8);  // tensor count
    put(0, 8);  // kv count
    put(1, 8);  // name length
    b.push_back('t');
    put(4, 4);  // n_dims
    for (std::uint64_t d : ne) put(d, 8);
    put(0, 4);  // f32
    put(0, 8);  // offset
    b.resize((b.size() + 31) / 32 * 32 + 32, 0);
    return b;
  };
  gguf_temp_dir tmp;
  const fs::path p = tmp.path / "crafted.gguf";
  // ne = {0, 2^32, 2^32, 1}: zero elements but 2^64 rows; the row count was multiplied in int64 (signed
  // overflow, wrapped to 0 rows: the file opened).
  write_bytes(p, one_tensor_file({0, std::uint64_t{1} << 32, std::uint64_t{1} << 32, 1}));
  CHECK(try_open(p) == outcome::format_error);
  // ne0 = 2^62 + 8 floats: 2^64 + 32 bytes per row wrapped to 32, which fit the data section, and dequantize()
  // then allocated 2^62 floats.
  write_bytes(p, one_tensor_file({(std::uint64_t{1} << 62) + 8, 1, 1, 1}));
  CHECK(try_open(p) == outcome::format_error);
  // the control: 8 floats open
  write_bytes(p, one_tensor_file({8, 1, 1, 1}));
  CHECK(try_open(p) == outcome::ok);
  // the writer refuses the same shapes
  qroar::gguf_writer w;
  const std::int64_t big = std::int64_t{1} << 32;
  CHECK_THROWS_AS(w.add_tensor("t", qroar::ggml_type::f32, {0, big, big, 1}, std::vector<std::uint8_t>{}),
                  qroar::invalid_argument);
  CHECK_THROWS_AS(w.add_tensor("t", qroar::ggml_type::f32, {(std::int64_t{1} << 62) + 8}, std::vector<std::uint8_t>(32)),
                  qroar::invalid_argument);
}

TEST_CASE("flipped bytes anywhere in a small file: format_error or a valid open, never a crash") {
  gguf_temp_dir tmp;
  std::vector<float> storage;
  const fs::path good = tmp.path / "good.gguf";
  sample_writer(storage).write(good.string());
  const auto base = read_bytes(good);
  const auto f = qroar::gguf_file::open(good.string());
  const fs::path p = tmp.path / "flipped.gguf";
  int errors = 0, opened = 0;
  for (std::size_t at = 0; at < static_cast<std::size_t>(f.data_offset()); ++at) {
    for (std::uint8_t mask : {std::uint8_t{0xFF}, std::uint8_t{0x80}, std::uint8_t{0x01}}) {
      auto b = base;
      b[at] ^= mask;
      write_bytes(p, b);
      (try_open(p) == outcome::ok ? opened : errors)++;
    }
  }
  MESSAGE("flipped header bytes: " << errors << " format errors, " << opened << " still valid files");
  CHECK(errors > 0);
  // Not a GGUF at all, and an empty file.
  write_bytes(p, std::vector<std::uint8_t>(100, 0x41));
  CHECK(try_open(p) == outcome::format_error);
  write_bytes(p, {});
  CHECK(try_open(p) == outcome::format_error);
  CHECK_THROWS_AS(qroar::gguf_file::open((tmp.path / "missing.gguf").string()), qroar::io_error);
}
