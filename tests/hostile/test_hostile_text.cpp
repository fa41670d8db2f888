// Broken tokenizer files, token-id files, GGUF vocabularies, quant specs, band-scales and RoPE JSON: each case
// names the typed error and stable id it must raise.
#include <doctest/doctest.h>

#include <qroar/io/gguf.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/rope_json.hpp>
#include <qroar/io/spm_tokenizer.hpp>
#include <qroar/io/tokenizer.hpp>
#include <qroar/quant/spec.hpp>
#include <qroar/search/band_scales.hpp>
#include <qroar/search/scales_json.hpp>

#include "hostile_testing.hpp"
#include "shared_data.hpp"

using namespace qroar_hostile;
using qroar::format_error;

namespace {


bytes text_bytes(const std::string& s) { return bytes(s.begin(), s.end()); }

// A llama2.c tokenizer.bin: max_token_length, then {score, len, bytes} per piece.
bytes tokenizer_bin(const std::vector<std::string>& pieces, std::int32_t max_len = 8) {
  bytes b(4);
  std::memcpy(b.data(), &max_len, 4);
  for (const auto& p : pieces) {
    const float score = -1.0f;
    const auto len = static_cast<std::int32_t>(p.size());
    b.resize(b.size() + 8);
    std::memcpy(b.data() + b.size() - 8, &score, 4);
    std::memcpy(b.data() + b.size() - 4, &len, 4);
    b.insert(b.end(), p.begin(), p.end());
  }
  return b;
}

}  // namespace

TEST_CASE("hostile llama2.c tokenizer.bin") {
  temp_dir tmp;
  const std::string path = tmp.file("tokenizer.bin");
  const std::vector<std::string> pieces{"<unk>", "<s>", "</s>", "a", "b", "ab"};
  const bytes good = tokenizer_bin(pieces);
  write_bytes(path, good);
  REQUIRE_NOTHROW(qroar::llama2c_tokenizer(path, 6));
  auto open = [&](const bytes& b, int vocab = 6) {
    write_bytes(path, b);
    return [&, vocab] { (void)qroar::llama2c_tokenizer(path, vocab); };
  };
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    expect_error<format_error>("cut at " + std::to_string(cut), open(bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut))),
                               {format_id, {path}});
  bytes b = good;
  put_u32(b, 0, 0x80000000u);
  expect_error<format_error>("negative max_token_length", open(b), {format_id, {"max_token_length"}, 0});
  b = good;
  put_u32(b, 8, 0xFFFFFFFFu);  // length of piece 0 = -1
  expect_error<format_error>("negative piece length", open(b), {format_id, {"token 0", "length -1"}, 8});
  put_u32(b, 8, 0x7FFFFFFFu);
  expect_error<format_error>("huge piece length", open(b), {format_id, {"token 0"}, 8});
  expect_error<format_error>("piece longer than max_token_length", open(tokenizer_bin({"abcdefghij"}), 1),
                             {format_id, {"max_token_length = 8"}});
  expect_error<format_error>("file holds more pieces than the model", open(good, 5), {format_id, {"larger vocabulary"}});
  expect_error<format_error>("vocabulary of 2^24 over a small file", open(good, 1 << 24), {format_id, {path}});
  expect_error<qroar::invalid_argument>("vocab_size 0", open(good, 0), {invalid_id, {"vocab_size"}});
  expect_error<qroar::io_error>("missing file", [&] { (void)qroar::llama2c_tokenizer(tmp.file("none.bin"), 6); },
                                {io_id, {"none.bin"}});
}

TEST_CASE("hostile token-id files") {
  temp_dir tmp;
  const std::string path = tmp.file("ids.txt");
  auto read = [&](const std::string& text, int vocab = 0) {
    write_bytes(path, text_bytes(text));
    return [&, vocab] { (void)qroar::read_token_ids(path, vocab); };
  };
  expect_error<format_error>("letters", read("1 2 x3 4"), {format_id, {"'x3'"}, 4});
  expect_error<format_error>("sign", read("1 -2"), {format_id, {"'-2'"}, 2});
  expect_error<format_error>("over int", read("7 99999999999999999999999"), {format_id, {"does not fit"}, 2});
  expect_error<format_error>("out of the vocabulary", read("1\n512\n", 512), {format_id, {"'512'", "512"}, 2});
  expect_error<format_error>("binary", read(std::string("1 \0\xff 2", 6)), {format_id, {}, 2});
  expect_error<format_error>("comma separated", read("1,2,3"), {format_id, {"'1,2,3'"}, 0});
  expect_error<qroar::io_error>("a folder", [&] { (void)qroar::read_token_ids(tmp.path().string()); }, {io_id, {"not a regular file"}});
  CHECK(qroar::read_token_ids((write_bytes(path, text_bytes(" \t\n")), path)).empty());
}

TEST_CASE("hostile GGUF vocabularies") {
  temp_dir tmp;
  const std::string path = tmp.file("vocab.gguf");
  auto with = [&](auto&& edit) {
    qroar::gguf_writer w = tiny_gguf(tiny_model());
    edit(w);
    w.write(path);
    return [&] { (void)qroar::spm_tokenizer(qroar::gguf_vocabulary(qroar::gguf_file::open(path))); };
  };
  REQUIRE_NOTHROW(with([](qroar::gguf_writer&) {})());
  expect_error<format_error>("tokens missing", with([](qroar::gguf_writer& w) { w.remove("tokenizer.ggml.tokens"); }),
                             {format_id, {"tokenizer.ggml.tokens"}});
  expect_error<format_error>("tokens not strings",
                             with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.tokens", qroar::gguf_value::array_of(std::vector<float>{1.f})); }),
                             {format_id, {"tokenizer.ggml.tokens", "array of float32"}});
  expect_error<format_error>("scores of the wrong type",
                             with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.scores", qroar::gguf_value::array_of(std::vector<std::string>{"x"})); }),
                             {format_id, {"tokenizer.ggml.scores"}});
  expect_error<qroar::invalid_argument>("fewer scores than tokens",
                                        with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.scores", qroar::gguf_value::array_of(std::vector<float>{0.f})); }),
                                        {invalid_id, {"16 pieces but 1 scores"}});
  expect_error<qroar::invalid_argument>("token types of strings",
                                        with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.token_type", qroar::gguf_value::array_of(std::vector<std::string>(16, "1"))); }),
                                        {gguf_value_type_id, {"string"}});
  expect_error<qroar::invalid_argument>("token type 9",
                                        with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.token_type", qroar::gguf_value::array_of(std::vector<std::int32_t>(16, 9))); }),
                                        {invalid_id, {"unknown type 9"}});
  expect_error<format_error>("bos id a string",
                             with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.bos_token_id", qroar::gguf_value::string("1")); }),
                             {format_id, {"tokenizer.ggml.bos_token_id"}});
  expect_error<qroar::unsupported>("BPE vocabulary",
                                   with([](qroar::gguf_writer& w) { w.set("tokenizer.ggml.model", qroar::gguf_value::string("gpt2")); }),
                                   {unsupported_id, {"gpt2"}});
}

TEST_CASE("hostile quant specs") {
  for (const char* spec : {"rtn", "rtn:w", "rtn:w4", "rtn:w9:g32", "rtn:w1:g32", "rtn:w4:g0", "rtn:w4:g-1", "rtn:w4:g99999999999999",
                           "rtn:wx:g32", "rtn:w4:g32:bogus", "gptq:w4:damp2", "gptq:w4:dampnan", "gptq:w4:damp", "ggml:q4_9",
                           "ggml:f32", "ggml", "kv:k4v4", "kv:k4v4:token", "kv:x4:token:g8", "kv:k4:token:g8+kv:v4:token:g8",
                           "act:q8k8:channel:g8", "rtn:w4:g32+gptq:w4", "+", "rtn:w4:g32+", "zz", ":::", "rtn:w4:g32\n"}) {
    expect_error<qroar::invalid_argument>(spec, [&] { (void)qroar::parse_quant_spec(spec); }, {invalid_id, {"quant spec"}});
  }
}

TEST_CASE("hostile band-scales JSON") {
  temp_dir tmp;
  qroar::llama_config c = tiny_model().config;
  const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), c.rope_geometry());
  const qroar::band_scales s(qroar::bands_equal(2, inv, c.original_ctx), qroar::scale_variant::symmetric,
                             qroar::scale_granularity::per_layer, c.n_layers, c.n_kv_heads);
  const std::string path = tmp.file("scales.json");
  qroar::write_band_scales(path, s, c);
  REQUIRE_NOTHROW(qroar::read_band_scales(path, c));
  const nlohmann::json good = nlohmann::json::parse(qroar::detail::hf_io::read_text_file(path));
  auto read_text = [&](const std::string& text) {
    write_bytes(path, text_bytes(text));
    return [&] { (void)qroar::read_band_scales(path, c); };
  };
  auto edited = [&](auto&& edit) {
    nlohmann::json j = good;
    edit(j);
    return read_text(j.dump());
  };
  expect_error<format_error>("not JSON", read_text("{\"format\": "), {format_id, {path, "not valid JSON"}});
  expect_error<format_error>("number overflow", read_text("{\"format\": 1e999}"), {format_id, {path, "not valid JSON"}});
  expect_error<qroar::invalid_argument>("wrong format", edited([](nlohmann::json& j) { j["format"] = "other"; }), {invalid_id, {path}});
  expect_error<qroar::invalid_argument>("format a number", edited([](nlohmann::json& j) { j["format"] = 3; }), {invalid_id, {path}});
  expect_error<qroar::invalid_argument>("version 2", edited([](nlohmann::json& j) { j["version"] = 2; }), {invalid_id, {"version"}});
  expect_error<qroar::invalid_argument>("n_layers 1e300", edited([](nlohmann::json& j) { j["model"]["n_layers"] = 1e300; }),
                                        {invalid_id, {"n_layers"}});
  expect_error<qroar::invalid_argument>("another model", edited([](nlohmann::json& j) { j["model"]["n_heads"] = 4; }),
                                        {invalid_id, {"another model shape"}});
  expect_error<qroar::invalid_argument>("last_pair INT_MAX", edited([](nlohmann::json& j) { j["bands"][1]["last_pair"] = 2147483647; }),
                                        {invalid_id, {"bands"}});
  expect_error<qroar::invalid_argument>("bands not contiguous", edited([](nlohmann::json& j) { j["bands"][1]["first_pair"] = 0; }),
                                        {invalid_id, {"contiguous"}});
  expect_error<qroar::invalid_argument>("factor 0", edited([](nlohmann::json& j) { j["units"][0]["query"][0] = 0.0; }),
                                        {invalid_id, {"factors"}});
  expect_error<qroar::invalid_argument>("factor a string", edited([](nlohmann::json& j) { j["units"][0]["query"][0] = "1"; }),
                                        {invalid_id, {"malformed"}});
  expect_error<qroar::invalid_argument>("units missing", edited([](nlohmann::json& j) { j.erase("units"); }), {invalid_id, {"malformed"}});
  expect_error<qroar::invalid_argument>("unknown variant", edited([](nlohmann::json& j) { j["variant"] = "sideways"; }),
                                        {invalid_id, {"sideways"}});
  expect_error<qroar::io_error>("missing file", [&] { (void)qroar::read_band_scales(tmp.file("none.json"), c); }, {io_id, {"none.json"}});
  // the variant label must match the factors (issue 21): query_only keys are 1, symmetric keys are 1 / query
  expect_error<qroar::invalid_argument>("query_only with a key factor", edited([](nlohmann::json& j) {
                                          j["variant"] = "query_only";
                                          j["units"][0]["key"][1] = 2.0;
                                        }),
                                        {invalid_id, {path, "query_only", "unit 0 band 1", "key factor 2"}});
  expect_error<qroar::invalid_argument>("symmetric without reciprocals", edited([](nlohmann::json& j) {
                                          j["units"][0]["query"][0] = 2.0;
                                          j["units"][0]["key"][0] = 2.0;
                                        }),
                                        {invalid_id, {path, "symmetric", "unit 0 band 0", "reciprocal"}});
  REQUIRE_NOTHROW(edited([](nlohmann::json& j) {  // reciprocals written with 17 digits pass
    j["units"][0]["query"][0] = 3.0;
    j["units"][0]["key"][0] = 1.0 / 3.0;
  })());
}

TEST_CASE("hostile RoPE config JSON") {
  auto parse = [](const std::string& text) {
    return [text] { (void)qroar::parse_hf_rope(nlohmann::json::parse(text), "rope.json"); };
  };
  expect_error<format_error>("rope_type a number", parse(R"({"head_dim": 8, "rope_scaling": {"rope_type": 5}})"), {format_id, {"rope.json"}});
  expect_error<format_error>("longrope without lists",
                             parse(R"({"head_dim": 8, "max_position_embeddings": 4096, "rope_scaling": {"rope_type": "longrope", "factor": 2}})"),
                             {format_id, {"short_factor"}});
  expect_error<qroar::invalid_argument>("unknown type", parse(R"({"head_dim": 8, "rope_scaling": {"rope_type": "spiral"}})"),
                                        {invalid_id, {"spiral"}});
  expect_error<qroar::invalid_argument>("factor a string", parse(R"({"head_dim": 8, "rope_scaling": {"type": "linear", "factor": "2"}})"),
                                        {invalid_id, {"factor"}});
  expect_error<qroar::invalid_argument>("negative factor", parse(R"({"head_dim": 8, "rope_scaling": {"type": "linear", "factor": -1}})"),
                                        {invalid_id, {"factor"}});
  expect_error<qroar::invalid_argument>("partial_rotary_factor 2", parse(R"({"head_dim": 8, "partial_rotary_factor": 2})"),
                                        {invalid_id, {"partial_rotary_factor"}});
  expect_error<qroar::invalid_argument>("yarn without L0", parse(R"({"head_dim": 8, "rope_scaling": {"type": "yarn", "factor": 4}})"),
                                        {invalid_id, {"original"}});
  expect_error<qroar::invalid_argument>("huge max_position_embeddings", parse(R"({"head_dim": 8, "max_position_embeddings": 1e30})"),
                                        {invalid_id, {"max_position_embeddings"}});
  // silent wrong meaning (issue 21): each of these evaluated with plain RoPE or full rotary before
  expect_error<format_error>("rope_scaling a string", parse(R"({"head_dim": 8, "rope_scaling": "yarn"})"),
                             {format_id, {"rope.json", "'rope_scaling' must be a JSON object or null", "yarn"}});
  expect_error<format_error>("rope_parameters a list", parse(R"({"head_dim": 8, "rope_parameters": [1, 2, 3]})"),
                             {format_id, {"'rope_parameters'"}});
  expect_error<qroar::invalid_argument>("partial_rotary_factor 0.001", parse(R"({"head_dim": 64, "partial_rotary_factor": 0.001})"),
                                        {invalid_id, {"partial_rotary_factor", "leaves 0 rotary channels"}});
  expect_error<qroar::invalid_argument>("yarn beta_fast < beta_slow",
                                        parse(R"({"head_dim": 8, "max_position_embeddings": 512,
                                                  "rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": 1, "beta_slow": 32}})"),
                                        {invalid_id, {"beta_fast > beta_slow"}});
  REQUIRE_NOTHROW(parse(R"({"head_dim": 8, "rope_scaling": null})")());  // HF: null means plain RoPE
}

TEST_CASE("a vocabulary larger than the model's embedding is refused") {
  const auto gguf = qroar_test::shared_file("data/models/stories260K/stories260K.gguf");
  if (gguf.empty()) return;
  REQUIRE_NOTHROW(qroar::load_tokenizer("", gguf.string(), 512));
  // invalid_argument (exit 2 in the CLI), like check_tokenizer_fits: the two files do not belong together
  expect_error<qroar::invalid_argument>("512 tokens on 256 rows",
                                        [&] { (void)qroar::load_tokenizer("", gguf.string(), 256); },
                                        {invalid_id, {gguf.string(), "holds 512 tokens", "only 256 rows"}});
  const auto tok = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  expect_error<qroar::invalid_argument>("explicit GGUF tokenizer",
                                        [&] { (void)qroar::load_tokenizer(gguf.string(), tok.string(), 100); },
                                        {invalid_id, {"holds 512 tokens", "only 100 rows"}});
}

TEST_CASE("hostile copies of the real files") {
  // The real tokenizer.bin and GGUF of ../shared, cut in the middle: typed errors naming the file.
  const auto tok = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  const auto gguf = qroar_test::shared_file("data/models/stories260K/stories260K.gguf");
  if (tok.empty() || gguf.empty()) return;
  temp_dir tmp;
  const std::string cut = tmp.file("cut");
  for (const auto& src : {tok, gguf}) {
    const bytes b = read_bytes(src.string());
    for (const std::size_t at : cut_points(b.size(), 32, 48)) {
      write_bytes(cut, bytes(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(at)));
      if (src == tok)
        expect_error<format_error>("tok512 cut at " + std::to_string(at), [&] { (void)qroar::llama2c_tokenizer(cut, 512); }, {format_id, {cut}});
      else
        expect_error<format_error>("gguf cut at " + std::to_string(at), [&] { (void)qroar::gguf_file::open(cut); }, {format_id, {cut}});
    }
  }
}
