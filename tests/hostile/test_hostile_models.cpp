// Broken model files (GGUF, safetensors, Hugging Face folders, llama2.c): truncated at many offsets, flipped and
// oversized fields, wrong types, shape mismatches, NaN weights. Each case names the typed error and stable id it
// must raise; a crash, a std::bad_alloc or a foreign exception fails it.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include <qroar/io/gguf.hpp>
#include <qroar/io/gguf_model.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c.hpp>
#include <qroar/io/load_model.hpp>
#include <qroar/io/safetensors.hpp>

#include "hostile_testing.hpp"

using namespace qroar_hostile;
using qroar::format_error;

namespace {

const float nan_value = std::numeric_limits<float>::quiet_NaN();

// Byte offset of field `field` of tensor `name`'s info record: 0 name length, then n_dims, ne[0], type, offset.
std::size_t gguf_info_field(const qroar::gguf_file& f, const std::string& name, const char* field) {
  const auto* t = f.tensor(name);
  REQUIRE(t != nullptr);
  const std::size_t dims_at = static_cast<std::size_t>(t->info_offset) + 8 + name.size();
  const std::string w = field;
  if (w == "n_dims") return dims_at;
  if (w == "ne0") return dims_at + 4;
  if (w == "type") return dims_at + 4 + 8 * t->n_dims;
  return dims_at + 4 + 8 * t->n_dims + 4;  // offset
}

}  // namespace

TEST_CASE("hostile GGUF files") {
  temp_dir tmp;
  const std::string good_path = tmp.file("good.gguf");
  tiny_gguf(tiny_model()).write(good_path);
  const bytes good = read_bytes(good_path);
  const qroar::gguf_file ref = qroar::gguf_file::open(good_path);
  REQUIRE_NOTHROW(qroar::load_gguf_model(good_path));
  const std::string bad = tmp.file("bad.gguf");
  auto open_with = [&](const bytes& b) {
    write_bytes(bad, b);
    return [&] { (void)qroar::load_gguf_model(bad); };
  };

  SUBCASE("truncated at every header offset and across the data") {
    for (const std::size_t cut : cut_points(good.size(), static_cast<std::size_t>(ref.data_offset()) + 64, 96)) {
      write_bytes(bad, bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
      expect_error<format_error>("cut at " + std::to_string(cut), [&] { (void)qroar::gguf_file::open(bad); },
                                 {format_id, {bad}});
    }
  }
  SUBCASE("header fields") {
    bytes b = good;
    b[0] = 'X';
    expect_error<format_error>("bad magic", open_with(b), {format_id, {"bad magic"}, 0});
    b = good;
    put_u32(b, 4, 1);
    expect_error<format_error>("version 1", open_with(b), {format_id, {"version 1"}, 4});
    put_u32(b, 4, 0x03000000u);
    expect_error<format_error>("big-endian", open_with(b), {format_id, {"big-endian"}, 4});
    b = good;
    put_u64(b, 8, std::uint64_t{1} << 40);
    expect_error<format_error>("huge tensor count", open_with(b), {format_id, {"tensor count"}, 8});
    b = good;
    put_u64(b, 16, ~std::uint64_t{0});
    expect_error<format_error>("huge metadata count", open_with(b), {format_id, {"metadata count"}, 16});
    b = good;
    put_u64(b, 8, 1000);  // more tensor infos than bytes left
    expect_error<format_error>("tensor infos past the end", open_with(b), {format_id, {}});
  }
  SUBCASE("metadata: lengths, types, nesting") {
    const std::size_t key0 = static_cast<std::size_t>(ref.metadata()[0].offset);
    bytes b = good;
    put_u64(b, key0, std::uint64_t{1} << 62);
    expect_error<format_error>("huge key length", open_with(b), {format_id, {"metadata key length"}, static_cast<std::int64_t>(key0)});
    b = good;
    const std::size_t type0 = key0 + 8 + ref.metadata()[0].key.size();
    put_u32(b, type0, 13);
    expect_error<format_error>("unknown value type", open_with(b), {format_id, {"unknown metadata value type 13"}, static_cast<std::int64_t>(type0)});
    // tokenizer.ggml.tokens: an array of strings; a huge element count.
    for (const auto& kv : ref.metadata()) {
      if (kv.key != "tokenizer.ggml.tokens") continue;
      const std::size_t count_at = static_cast<std::size_t>(kv.offset) + 8 + kv.key.size() + 4 + 4;
      b = good;
      put_u64(b, count_at, std::uint64_t{1} << 61);
      expect_error<format_error>("huge array length", open_with(b), {format_id, {"array of"}, static_cast<std::int64_t>(count_at)});
      b = good;
      put_u64(b, count_at + 8, std::uint64_t{1} << 60);  // first string's length
      expect_error<format_error>("huge string length", open_with(b), {format_id, {"length"}});
    }
    // Wrong types for keys the loader reads; an alignment that is not a power of two; nesting beyond 16.
    auto rewrite = [&](auto&& edit) {
      qroar::gguf_writer w = tiny_gguf(tiny_model());
      edit(w);
      bytes out = w.header();
      const bytes data(good.begin() + static_cast<std::ptrdiff_t>(ref.data_offset()), good.end());
      out.insert(out.end(), data.begin(), data.end());
      return out;
    };
    expect_error<format_error>("block_count as a string",
                               open_with(rewrite([](qroar::gguf_writer& w) { w.set("llama.block_count", qroar::gguf_value::string("1")); })),
                               {format_id, {"llama.block_count", "string"}});
    expect_error<format_error>("negative head count",
                               open_with(rewrite([](qroar::gguf_writer& w) { w.set("llama.attention.head_count", qroar::gguf_value::i32(-2)); })),
                               {format_id, {"llama.attention.head_count"}});
    {
      bytes a = rewrite([](qroar::gguf_writer& w) { w.set("general.alignment", qroar::gguf_value::u32(32)); });
      write_bytes(bad, a);
      const qroar::gguf_file fa = qroar::gguf_file::open(bad);
      for (const auto& kv : fa.metadata())
        if (kv.key == "general.alignment") put_u32(a, static_cast<std::size_t>(kv.offset) + 8 + kv.key.size() + 4, 24);
      expect_error<format_error>("alignment 24", open_with(a), {format_id, {"not a power of 2"}});
      for (const auto& kv : fa.metadata())
        if (kv.key == "general.alignment") put_u32(a, static_cast<std::size_t>(kv.offset) + 8 + kv.key.size(), 5);
      expect_error<format_error>("alignment as an int32", open_with(a), {format_id, {"general.alignment", "int32"}});
    }
    {
      qroar::gguf_value v = qroar::gguf_value::array(qroar::gguf_type::uint8);
      for (int depth = 0; depth < 20; ++depth) {
        qroar::gguf_value outer = qroar::gguf_value::array(qroar::gguf_type::array);
        outer.push_back(v);
        v = outer;
      }
      expect_error<format_error>("arrays nested 21 deep",
                                 open_with(rewrite([&](qroar::gguf_writer& w) { w.set("deep", v); })),
                                 {format_id, {"nested deeper than 16"}});
    }
  }
  SUBCASE("tensor infos: dims, types, block sizes, offsets") {
    const std::string t = "blk.0.attn_q.weight";
    bytes b = good;
    put_u32(b, gguf_info_field(ref, t, "n_dims"), 5);
    expect_error<format_error>("n_dims 5", open_with(b), {format_id, {"n_dims 5", t}});
    b = good;
    put_u32(b, gguf_info_field(ref, t, "type"), 1000);
    expect_error<format_error>("unknown ggml type", open_with(b), {format_id, {"unknown ggml type id 1000", t}});
    b = good;
    put_u32(b, gguf_info_field(ref, t, "type"), static_cast<std::uint32_t>(qroar::ggml_type::q4_0));
    expect_error<format_error>("row not a multiple of the block", open_with(b), {format_id, {"block size", t}});
    b = good;
    put_u64(b, gguf_info_field(ref, t, "ne0"), std::uint64_t{1} << 62);
    put_u64(b, gguf_info_field(ref, t, "ne0") + 8, 64);
    expect_error<format_error>("element count overflow", open_with(b), {format_id, {"overflows", t}});
    b = good;
    put_u64(b, gguf_info_field(ref, t, "ne0"), ~std::uint64_t{0});
    expect_error<format_error>("negative dimension", open_with(b), {format_id, {"negative dimension", t}});
    b = good;
    put_u64(b, gguf_info_field(ref, t, "offset"), ref.tensor(t)->offset + 4);
    expect_error<format_error>("unaligned offset", open_with(b), {format_id, {"alignment", t}});
    b = good;
    put_u64(b, gguf_info_field(ref, t, "offset"), std::uint64_t{1} << 40);
    expect_error<format_error>("offset past the end", open_with(b), {format_id, {"runs past the end", t}});
    b = good;
    put_u64(b, gguf_info_field(ref, t, "offset"), ref.tensor("token_embd.weight")->offset);
    expect_error<format_error>("overlapping tensors", open_with(b), {format_id, {"overlaps"}});
  }
  SUBCASE("model mapping: shapes, missing tensors, architecture") {
    qroar::gguf_writer w = tiny_gguf(tiny_model());
    w.set("llama.embedding_length", qroar::gguf_value::u32(16));
    w.write(bad);
    expect_error<format_error>("shape mismatch", [&] { (void)qroar::load_gguf_model(bad); },
                               {format_id, {"token_embd.weight", "expected"}});
    w = tiny_gguf(tiny_model());
    w.remove_tensor("blk.0.ffn_up.weight");
    w.write(bad);
    expect_error<format_error>("missing tensor", [&] { (void)qroar::load_gguf_model(bad); },
                               {format_id, {"blk.0.ffn_up.weight", "missing"}});
    w = tiny_gguf(tiny_model());
    w.set("general.architecture", qroar::gguf_value::string("gpt2"));
    w.write(bad);
    expect_error<qroar::unsupported>("other architecture", [&] { (void)qroar::load_gguf_model(bad); },
                                     {unsupported_id, {"gpt2"}});
    // well-typed metadata holding values no model may have: a defect of the file (format_error, CLI exit 1)
    w = tiny_gguf(tiny_model());
    w.set("llama.rope.freq_base", qroar::gguf_value::f32(0.5f));
    w.write(bad);
    expect_error<format_error>("rope.freq_base 0.5", [&] { (void)qroar::load_gguf_model(bad); },
                               {format_id, {bad, "rope_theta"}});
    w = tiny_gguf(tiny_model());
    w.set("llama.attention.head_count_kv", qroar::gguf_value::u32(3));
    w.write(bad);
    expect_error<format_error>("head_count_kv 3 of 2 heads", [&] { (void)qroar::load_gguf_model(bad); },
                               {format_id, {bad, "n_kv_heads"}});
  }
  SUBCASE("NaN and infinite weights") {
    bytes b = good;
    const auto* wq = ref.tensor("blk.0.attn_q.weight");
    put_f32(b, static_cast<std::size_t>(ref.data_offset() + wq->offset) + 4 * 9, nan_value);
    expect_error<qroar::numeric_error>("NaN f32 weight", open_with(b),
                                       {numeric_id, {"blk.0.attn_q.weight", "element 9", "NaN"}});
    put_f32(b, static_cast<std::size_t>(ref.data_offset() + wq->offset) + 4 * 9, INFINITY);
    expect_error<qroar::numeric_error>("infinite f32 weight", open_with(b), {numeric_id, {"blk.0.attn_q.weight", "infinite"}});
    // A q8_0 block whose fp16 scale is NaN (0x7E00): every dequantized weight of the block is NaN.
    const std::string q8 = tmp.file("q8.gguf");
    tiny_gguf(tiny_model(true, 32), qroar::ggml_type::q8_0).write(q8);
    const qroar::gguf_file f8 = qroar::gguf_file::open(q8);
    const auto* q = f8.tensor("blk.0.attn_k.weight");
    REQUIRE(q->type == qroar::ggml_type::q8_0);
    bytes b8 = read_bytes(q8);
    const std::size_t scale_at = static_cast<std::size_t>(f8.data_offset() + q->offset);
    b8[scale_at] = 0x00;
    b8[scale_at + 1] = 0x7E;
    expect_error<qroar::numeric_error>("NaN q8_0 block scale", open_with(b8), {numeric_id, {"blk.0.attn_k.weight", "NaN"}});
  }
}

TEST_CASE("hostile safetensors files") {
  temp_dir tmp;
  const qroar::llama_model m = tiny_model();
  qroar::write_hf_model(m, tmp.file("hf"));
  const std::string st_path = tmp.file("hf/model.safetensors");
  const bytes good = read_bytes(st_path);
  const std::uint64_t header_len = get_u64(good, 0);
  const std::string header(good.begin() + 8, good.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  const bytes data(good.begin() + 8 + static_cast<std::ptrdiff_t>(header_len), good.end());
  const std::string bad = tmp.file("bad.safetensors");
  // A file with `json` as its header (padded to 8 bytes) and the original data section.
  auto with_header = [&](std::string json, const bytes& section) {
    json.append((8 - json.size() % 8) % 8, ' ');
    bytes b(8);
    put_u64(b, 0, json.size());
    b.insert(b.end(), json.begin(), json.end());
    b.insert(b.end(), section.begin(), section.end());
    write_bytes(bad, b);
    return [&] { (void)qroar::safetensors_file(bad); };
  };
  auto entry = [&](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"t\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };
  const bytes sixteen(16, 0);

  SUBCASE("truncated") {
    for (const std::size_t cut : cut_points(good.size(), 8 + static_cast<std::size_t>(header_len) + 16, 64)) {
      write_bytes(bad, bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut)));
      expect_error<format_error>("cut at " + std::to_string(cut), [&] { (void)qroar::safetensors_file(bad); }, {format_id, {bad}});
    }
  }
  SUBCASE("header length and JSON") {
    bytes b = good;
    put_u64(b, 0, std::uint64_t{1} << 40);
    write_bytes(bad, b);
    expect_error<format_error>("header length over the cap", [&] { (void)qroar::safetensors_file(bad); }, {format_id, {"exceeds the limit"}, 0});
    put_u64(b, 0, good.size());
    write_bytes(bad, b);
    expect_error<format_error>("header past the end", [&] { (void)qroar::safetensors_file(bad); }, {format_id, {"runs past the end"}, 0});
    expect_error<format_error>("not JSON", with_header("{\"t\": [1, 2,, 3]}", data), {format_id, {"not valid JSON"}});
    expect_error<format_error>("number overflow", with_header("{\"t\": 1e999}", data), {format_id, {"not valid JSON"}});
    expect_error<format_error>("array header", with_header("[]", data), {format_id, {"not a JSON object"}, 8});
    expect_error<format_error>("entry not an object", with_header("{\"t\": 3}", data), {format_id, {"'t'"}});
    expect_error<format_error>("metadata not strings", with_header("{\"__metadata__\": {\"a\": 1}}", {}), {format_id, {"__metadata__"}});
  }
  SUBCASE("dtypes, shapes, offsets") {
    expect_error<qroar::unsupported>("unknown dtype", with_header(entry("Q4", "[4]", "[0,16]"), sixteen), {unsupported_id, {"'t'", "Q4"}});
    expect_error<format_error>("dtype not a string", with_header("{\"t\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", sixteen),
                               {format_id, {"dtype"}});
    expect_error<format_error>("negative dimension", with_header(entry("F32", "[-4]", "[0,16]"), sixteen), {format_id, {"shape"}});
    expect_error<format_error>("fractional dimension", with_header(entry("F32", "[4.5]", "[0,16]"), sixteen), {format_id, {"shape"}});
    expect_error<format_error>("dimension beyond int64", with_header(entry("F32", "[0, 18446744073709551615]", "[0,0]"), {}),
                               {format_id, {"exceeds 2^63"}});
    expect_error<format_error>("shape overflows", with_header(entry("F32", "[4294967296, 4294967296, 2]", "[0,16]"), sixteen),
                               {format_id, {"overflows"}});
    expect_error<format_error>("shape x dtype != span", with_header(entry("F32", "[5]", "[0,16]"), sixteen), {format_id, {"needs 20"}});
    expect_error<format_error>("offsets past the end", with_header(entry("F32", "[4]", "[0,16]"), bytes(8)), {format_id, {"run past"}});
    expect_error<format_error>("end < begin", with_header(entry("F32", "[0]", "[8,4]"), sixteen), {format_id, {"end < begin"}});
    expect_error<format_error>("negative offset", with_header(entry("F32", "[4]", "[-16,0]"), sixteen), {format_id, {"data_offsets"}});
    expect_error<format_error>("overlap",
                               with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", sixteen),
                               {format_id, {"overlaps"}});
    expect_error<format_error>("gap",
                               with_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", sixteen),
                               {format_id, {"gap of 4 bytes"}});
    expect_error<format_error>("trailing bytes", with_header(entry("F32", "[2]", "[0,8]"), sixteen), {format_id, {"cover 8 of the 16"}});
  }
}

TEST_CASE("hostile Hugging Face folders") {
  temp_dir tmp;
  const std::string dir = tmp.file("hf");
  qroar::write_hf_model(tiny_model(), dir);
  const std::string cfg_path = tmp.file("hf/config.json"), st_path = tmp.file("hf/model.safetensors");
  const nlohmann::json cfg = nlohmann::json::parse(std::string(qroar::detail::hf_io::read_text_file(cfg_path)));
  const bytes st = read_bytes(st_path);
  REQUIRE_NOTHROW(qroar::load_hf_model(dir));
  auto with_config = [&](const std::string& text) {
    write_bytes(cfg_path, bytes(text.begin(), text.end()));
    return [&] { (void)qroar::load_hf_model(dir); };
  };
  auto edited = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = cfg;
    if (value.is_discarded()) j.erase(key);
    else j[key] = value;
    return with_config(j.dump());
  };

  expect_error<format_error>("config not JSON", with_config("{\"hidden_size\": 8,"), {format_id, {cfg_path, "not valid JSON"}});
  expect_error<format_error>("number overflow", with_config("{\"hidden_size\": 1e999}"), {format_id, {cfg_path, "not valid JSON"}});
  expect_error<format_error>("missing hidden_size", edited("hidden_size", nlohmann::json(nlohmann::json::value_t::discarded)),
                             {format_id, {"hidden_size", "missing"}});
  expect_error<format_error>("hidden_size a string", edited("hidden_size", "8"), {format_id, {"hidden_size"}});
  expect_error<format_error>("hidden_size a float", edited("hidden_size", 8.5), {format_id, {"hidden_size"}});
  expect_error<format_error>("hidden_size over int", edited("hidden_size", 1LL << 40), {format_id, {"hidden_size"}});
  // values a well-formed config.json may not hold: a defect of the file (format_error, CLI exit 1)
  expect_error<format_error>("huge head_dim", edited("head_dim", 1 << 30), {format_id, {cfg_path, "implausibly large"}});
  expect_error<format_error>("odd head_dim", edited("head_dim", 3), {format_id, {cfg_path, "even"}});
  expect_error<format_error>("rope_type a number", edited("rope_scaling", {{"rope_type", 5}}), {format_id, {"RoPE"}});
  expect_error<format_error>("negative rope factor", edited("rope_scaling", {{"rope_type", "linear"}, {"factor", -2.0}}),
                             {format_id, {cfg_path, "factor"}});
  expect_error<format_error>("rope_theta 0", edited("rope_theta", 0.0), {format_id, {cfg_path, "rope_theta"}});
  expect_error<qroar::unsupported>("other model type", edited("model_type", "qwen2"), {unsupported_id, {"qwen2"}});
  expect_error<format_error>("more layers than tensors", edited("num_hidden_layers", 2), {format_id, {"model.layers.1", "missing"}});
  expect_error<format_error>("shape mismatch", edited("intermediate_size", 16), {format_id, {"mlp.gate_proj.weight", "expected [16, 8]"}});
  with_config(cfg.dump());

  // NaN in a weight, found after the shape checks.
  const qroar::safetensors_file f(st_path);
  const auto& t = f.info("model.layers.0.self_attn.k_proj.weight");
  bytes b = st;
  put_f32(b, static_cast<std::size_t>(f.data_offset() + t.begin) + 4 * 3, nan_value);
  write_bytes(st_path, b);
  expect_error<qroar::numeric_error>("NaN weight", [&] { (void)qroar::load_hf_model(dir); },
                                     {numeric_id, {st_path, "model.layers.0.self_attn.k_proj.weight", "element 3", "NaN"}});
  write_bytes(st_path, bytes(st.begin(), st.begin() + 100));
  expect_error<format_error>("truncated safetensors", [&] { (void)qroar::load_hf_model(dir); }, {format_id, {st_path}});
  std::filesystem::remove(st_path);
  expect_error<qroar::io_error>("no safetensors", [&] { (void)qroar::load_hf_model(dir); }, {io_id, {"model.safetensors"}});
}

TEST_CASE("hostile llama2.c checkpoints") {
  temp_dir tmp;
  const std::string good_path = tmp.file("good.bin");
  qroar::write_llama2c(tiny_model(false), good_path);
  const bytes good = read_bytes(good_path);
  REQUIRE_NOTHROW(qroar::load_llama2c(good_path));
  const std::string bad = tmp.file("bad.bin");
  auto load = [&](const bytes& b) {
    write_bytes(bad, b);
    return [&] { (void)qroar::load_llama2c(bad); };
  };

  SUBCASE("truncated at many offsets, and extended") {
    for (const std::size_t cut : cut_points(good.size(), 64, 96))
      expect_error<format_error>("cut at " + std::to_string(cut), load(bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut))),
                                 {format_id, {bad}});
    bytes longer = good;
    longer.push_back(0);
    expect_error<format_error>("one byte too many", load(longer), {format_id, {"unexpected bytes"}, static_cast<std::int64_t>(good.size())});
  }
  SUBCASE("header fields against the file size") {
    const char* names[] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; ++i) {
      bytes b = good;
      qroar_io_test::put_i32(b, static_cast<std::size_t>(4 * i), 0);
      expect_error<format_error>(std::string(names[i]) + " = 0", load(b), {format_id, {names[i]}, 4 * i});
      qroar_io_test::put_i32(b, static_cast<std::size_t>(4 * i), i == 5 ? INT32_MIN + 1 : -1);
      expect_error<format_error>(std::string(names[i]) + " negative", load(b), {format_id, {names[i]}, 4 * i});
      qroar_io_test::put_i32(b, static_cast<std::size_t>(4 * i), INT32_MAX);
      expect_error<format_error>(std::string(names[i]) + " huge", load(b), {format_id, {names[i], "limit"}, 4 * i});
    }
    bytes b = good;
    qroar_io_test::put_i32(b, 12, 3);
    expect_error<format_error>("dim not a multiple of n_heads", load(b), {format_id, {"n_heads"}, 12});
    b = good;
    qroar_io_test::put_i32(b, 0, 16);
    expect_error<format_error>("header implies a larger file", load(b), {format_id, {"truncated"}});
    b = good;
    qroar_io_test::put_i32(b, 0, 0x616b3432);
    expect_error<qroar::unsupported>("version-1/2 export", load(b), {unsupported_id, {"ak42"}});
  }
  SUBCASE("NaN and infinite weights") {
    bytes b = good;
    put_f32(b, 28 + 4 * 5, nan_value);
    expect_error<qroar::numeric_error>("NaN embedding", load(b), {numeric_id, {bad, "token_embedding_table", "element 5", "NaN"}});
    b = good;
    put_f32(b, good.size() - 4, -INFINITY);
    expect_error<qroar::numeric_error>("infinite classifier", load(b), {numeric_id, {"wcls", "infinite"}});
  }
  SUBCASE("load_model on files of no known format") {
    const std::string odd = tmp.file("odd.dat");
    write_bytes(odd, bytes{1, 2, 3});
    expect_error<qroar::unsupported>("three bytes", [&] { (void)qroar::load_model(odd); }, {unsupported_id, {"unknown model format"}});
    expect_error<qroar::io_error>("missing file", [&] { (void)qroar::load_model(tmp.file("none.bin")); }, {io_id, {"none.bin"}});
  }
}
