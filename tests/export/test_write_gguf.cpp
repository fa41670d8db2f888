#include <doctest/doctest.h>

#include <qroar/io/gguf_model.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/model/qk_layout.hpp>
#include <qroar/quant/weights.hpp>

#include <cmath>
#include <filesystem>
#include <functional>

#include "export_testing.hpp"
#include "shared_data.hpp"

using qroar_export_test::check_same_weights;
using qroar_export_test::read_bytes;
using qroar_export_test::same_bits;
using qroar_export_test::temp_dir;

namespace {

const char* const stories_bin = "data/models/stories260K/stories260K.bin";
using qroar_test::paths::stories_gguf;
const char* const stories_tok = "data/models/stories260K/tok512.bin";
using qroar_test::paths::gutenberg_bin;
const char* const gutenberg_gguf = "data/models/gutenberg-3m/model-f32.gguf";
using qroar_test::paths::gutenberg_hf;

// The bytes of one tensor of an open GGUF.
std::vector<std::uint8_t> tensor_bytes(const qroar::gguf_file& f, const std::string& name) {
  const auto* ti = f.tensor(name);
  REQUIRE_MESSAGE(ti != nullptr, "missing tensor " << name);
  return std::vector<std::uint8_t>(f.tensor_data(*ti), f.tensor_data(*ti) + ti->size);
}

qroar::gguf_export_options quantized(qroar::ggml_type t) {
  qroar::gguf_export_options o;
  o.storage = qroar::gguf_storage::quantized;
  o.quant_type = t;
  return o;
}

}  // namespace

TEST_CASE("write_gguf_model: f32 round trip of stories260K.bin, config and weights bit for bit") {
  const auto bin = qroar_test::shared_file(stories_bin);
  if (bin.empty()) return;
  const auto m = qroar::load_llama2c(bin.string());
  temp_dir dir;
  const auto out = dir.file("s260.gguf");
  qroar::write_gguf_model(m, out);
  const auto f = qroar::gguf_file::open(out);
  CHECK(f.version() == 3);
  CHECK(f.architecture() == "llama");
  CHECK(f.get_int("llama.context_length") == 512);  // the trained context, not a converter's default
  CHECK(f.get_int("llama.embedding_length") == 64);
  CHECK(f.get_int("llama.feed_forward_length") == 172);
  CHECK(f.get_int("llama.block_count") == 5);
  CHECK(f.get_int("llama.attention.head_count") == 8);
  CHECK(f.get_int("llama.attention.head_count_kv") == 4);
  CHECK(f.get_int("llama.rope.dimension_count") == 8);
  CHECK(f.get_float("llama.rope.freq_base") == 10000.0);
  CHECK(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")) == 1e-5f);
  CHECK(f.get_int("general.file_type") == 0);
  CHECK_FALSE(f.contains("llama.rope.scaling.type"));
  CHECK_FALSE(f.contains("general.quantization_version"));
  CHECK(f.tensor("output.weight") == nullptr);  // tied
  CHECK(f.tensors().size() == 2 + 9 * 5);
  for (const auto& ti : f.tensors()) CHECK(ti.type == qroar::ggml_type::f32);
  const auto back = qroar::load_gguf_model(out);
  CHECK(back.config.original_ctx == 512);
  CHECK(back.config.tied_embeddings);
  CHECK(back.config.layout == qroar::pair_layout::interleaved);
  check_same_weights(back, m);
}

TEST_CASE("write_gguf_model: the f32 GGUF of the model equals ggml-org's stories260K.gguf tensor by tensor") {
  // The llama2.c file and ggml-org's GGUF hold the same weights (docs/test-data.md), so the tensor bytes must agree.
  const auto bin = qroar_test::shared_file(stories_bin);
  const auto ref = qroar_test::shared_file(stories_gguf);
  if (bin.empty() || ref.empty()) return;
  temp_dir dir;
  const auto out = dir.file("s260.gguf");
  qroar::write_gguf_model(qroar::load_llama2c(bin.string()), out);
  const auto f = qroar::gguf_file::open(out);
  const auto r = qroar::gguf_file::open(ref.string());
  for (const auto& ti : f.tensors()) {
    CAPTURE(ti.name);
    CHECK(tensor_bytes(f, ti.name) == tensor_bytes(r, ti.name));
  }
}

TEST_CASE("write_gguf_model: an HF (half-split) model is written with interleaved W_Q / W_K rows") {
  const auto hf = qroar_test::shared_file(gutenberg_hf);
  const auto ref = qroar_test::shared_file(gutenberg_gguf);
  if (hf.empty() || ref.empty()) return;
  const auto m = qroar::load_hf_model(hf.string());
  REQUIRE(m.config.layout == qroar::pair_layout::half_split);
  temp_dir dir;
  const auto out = dir.file("g3m.gguf");
  qroar::write_gguf_model(m, out);
  // model-f32.gguf is the same model in interleaved order (docs/test-data.md): every tensor byte for byte.
  const auto f = qroar::gguf_file::open(out);
  const auto r = qroar::gguf_file::open(ref.string());
  CHECK(f.tensors().size() == r.tensors().size());
  for (const auto& ti : r.tensors()) {
    CAPTURE(ti.name);
    CHECK(tensor_bytes(f, ti.name) == tensor_bytes(r, ti.name));
  }
  auto back = qroar::load_gguf_model(out);
  CHECK(back.config.original_ctx == 256);
  qroar::convert_pair_layout(back, qroar::pair_layout::half_split);
  check_same_weights(back, m);
}

TEST_CASE("write_gguf_model: quantized storage re-reads as exactly the simulated ggml quantization") {
  struct model_case {
    const char* path;
    std::vector<qroar::ggml_type> types;
  };
  using T = qroar::ggml_type;
  // stories260K rows are 64 or 172 long (no K-quants); gutenberg-3m rows 256 and 704 (ffn_down falls back to q8_0).
  const model_case cases[] = {
      {stories_bin, {T::q8_0, T::q4_0, T::q4_1, T::q5_0, T::q5_1}},
      {gutenberg_bin, {T::q8_0, T::q4_0, T::q4_1, T::q5_0, T::q5_1, T::q4_k, T::q5_k, T::q6_k}},
  };
  for (const auto& mc : cases) {
    const auto path = qroar_test::shared_file(mc.path);
    if (path.empty()) return;
    const auto m = qroar::load_llama2c(path.string());
    for (const auto t : mc.types) {
      CAPTURE(mc.path);
      CAPTURE(qroar::to_string(t));
      temp_dir dir;
      const auto out = dir.file("q.gguf");
      qroar::write_gguf_model(m, out, quantized(t));
      const auto f = qroar::gguf_file::open(out);
      CHECK(f.get_int("general.quantization_version") == 2);
      CHECK(f.tensor("token_embd.weight")->type == T::f32);
      CHECK(f.tensor("blk.0.attn_norm.weight")->type == T::f32);
      CHECK(f.tensor("blk.0.attn_q.weight")->type == qroar::ggml_type_for_row(t, m.config.dim));
      CHECK(f.tensor("blk.0.ffn_down.weight")->type == qroar::ggml_type_for_row(t, m.config.hidden_dim));
      auto simulated = m;
      qroar::weight_quant_spec spec;
      spec.method = qroar::weight_method::ggml;
      spec.ggml = t;
      qroar::quantize_weights(simulated, spec);
      check_same_weights(qroar::load_gguf_model(out), simulated);
    }
  }
}

TEST_CASE("write_gguf_model: quantizing model-f32.gguf reproduces ggml's quantized files byte for byte") {
  // ../shared's ggml-quantized files were made by ggml's reference quantizer with the rule of gguf_storage::quantized
  // (token_embd and norms f32, q8_0 fallback for 704-long rows).
  const auto ref32 = qroar_test::shared_file(gutenberg_gguf);
  if (ref32.empty()) return;
  const auto source = qroar::gguf_file::open(ref32.string());
  const auto m = qroar::llama_model_from_gguf(source);
  for (const char* t : {"q8_0", "q4_0", "q4_K", "q5_K", "q6_K"}) {
    CAPTURE(t);
    const auto ref = qroar_test::shared_file(std::string("data/models/gutenberg-3m/ggml-quantized/gutenberg-3m-") + t + ".gguf");
    temp_dir dir;
    const auto out = dir.file("q.gguf");
    auto o = quantized(qroar::ggml_type_from_string(t));
    o.source = &source;
    qroar::write_gguf_model(m, out, o);
    const auto f = qroar::gguf_file::open(out);
    const auto r = qroar::gguf_file::open(ref.string());
    REQUIRE(f.tensors().size() == r.tensors().size());
    for (std::size_t i = 0; i < r.tensors().size(); ++i) {
      const auto& ti = r.tensors()[i];
      CAPTURE(ti.name);
      CHECK(f.tensors()[i].name == ti.name);  // the source's tensor order is kept
      CHECK(f.tensor(ti.name)->type == ti.type);
      CHECK(tensor_bytes(f, ti.name) == tensor_bytes(r, ti.name));
    }
    // The source's metadata is carried over: tokenizer and general.* keys.
    CHECK(f.get_string("general.name") == "gutenberg-3m");
    CHECK(f.get_array("tokenizer.ggml.tokens")->strings() == source.get_array("tokenizer.ggml.tokens")->strings());
  }
}

TEST_CASE("write_gguf_model: like_source keeps the source's types and copies untouched tensors byte for byte") {
  const auto bin = qroar_test::shared_file(stories_bin);
  if (bin.empty()) return;
  for (const char* t : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1"}) {
    CAPTURE(t);
    const auto ref = qroar_test::shared_file(std::string("data/models/stories260K/ggml-quantized/stories260K-") + t + ".gguf");
    const auto source = qroar::gguf_file::open(ref.string());
    temp_dir dir;
    qroar::gguf_export_options o;
    o.storage = qroar::gguf_storage::like_source;
    o.source = &source;
    // From the float model: every tensor, the classifier copy included (output.weight is quantized in these files),
    // is quantized to the reference's type and equals ggml's bytes.
    const auto from_float = dir.file("f.gguf");
    qroar::write_gguf_model(qroar::load_llama2c(bin.string()), from_float, o);
    const auto f = qroar::gguf_file::open(from_float);
    for (const auto& ti : source.tensors()) {
      CAPTURE(ti.name);
      CHECK(tensor_bytes(f, ti.name) == tensor_bytes(source, ti.name));
    }
    // From the dequantized file itself: nothing is re-quantized.
    const auto m = qroar::llama_model_from_gguf(source);
    const auto again = dir.file("g.gguf");
    qroar::write_gguf_model(m, again, o);
    const auto g = qroar::gguf_file::open(again);
    for (const auto& ti : source.tensors()) {
      CAPTURE(ti.name);
      CHECK(tensor_bytes(g, ti.name) == tensor_bytes(source, ti.name));
    }
  }
}

TEST_CASE("write_gguf_model: f16 and bf16 storage") {
  const auto bin = qroar_test::shared_file(stories_bin);
  if (bin.empty()) return;
  const auto m = qroar::load_llama2c(bin.string());
  for (const auto storage : {qroar::gguf_storage::f16, qroar::gguf_storage::bf16}) {
    CAPTURE(qroar::to_string(storage));
    const bool half = storage == qroar::gguf_storage::f16;
    temp_dir dir;
    const auto out = dir.file("h.gguf");
    qroar::gguf_export_options o;
    o.storage = storage;
    qroar::write_gguf_model(m, out, o);
    const auto f = qroar::gguf_file::open(out);
    CHECK(f.get_int("general.file_type") == (half ? 1 : 32));
    CHECK(f.tensor("token_embd.weight")->type == (half ? qroar::ggml_type::f16 : qroar::ggml_type::bf16));
    CHECK(f.tensor("output_norm.weight")->type == qroar::ggml_type::f32);
    const auto back = qroar::load_gguf_model(out);
    auto round = [&](float x) {
      return half ? qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(x))
                  : qroar::detail::bf16_to_fp32(qroar::detail::fp32_to_bf16(x));
    };
    qroar::tensor expected = m.layers[2].wk.unaryExpr(round);
    CHECK(same_bits(back.layers[2].wk, expected));
    expected = m.token_embedding.unaryExpr(round);
    CHECK(same_bits(back.token_embedding, expected));
    CHECK(same_bits(back.layers[2].ffn_norm, m.layers[2].ffn_norm));
  }
}

TEST_CASE("write_gguf_model: RoPE scaling keys") {
  const auto bin = qroar_test::shared_file(stories_bin);
  if (bin.empty()) return;
  auto m = qroar::load_llama2c(bin.string());
  temp_dir dir;
  SUBCASE("linear") {
    m.config.rope = qroar::rope_scaling::linear(4.0);
    m.config.rope.original_ctx = 512;
    qroar::write_gguf_model(m, dir.file("l.gguf"));
    const auto f = qroar::gguf_file::open(dir.file("l.gguf"));
    CHECK(f.get_string("llama.rope.scaling.type") == "linear");
    CHECK(f.get_float("llama.rope.scaling.factor") == 4.0);
    CHECK(f.get_int("llama.rope.scaling.original_context_length") == 512);
    const auto back = qroar::llama_model_from_gguf(f);
    CHECK(back.config.rope.type == qroar::rope_type::linear);
    CHECK(back.config.rope.factor == 4.0);
    CHECK(back.config.original_ctx == 512);
  }
  SUBCASE("yarn-ggml keeps the parameters llama.cpp reads; context_length is s x L0") {
    m.config.rope = qroar::rope_scaling::yarn_ggml(8.0, 512);
    m.config.rope.attn_factor = 1.25;
    qroar::write_gguf_model(m, dir.file("y.gguf"));
    const auto back = qroar::load_gguf_model(dir.file("y.gguf"));
    const auto& r = back.config.rope;
    CHECK(r.type == qroar::rope_type::yarn_ggml);
    CHECK(r.factor == 8.0);
    CHECK(r.original_ctx == 512);
    CHECK(r.beta_fast == 32.0);
    CHECK(r.beta_slow == 1.0);
    CHECK(r.ext_factor == 1.0);
    CHECK(r.attn_factor == 1.25);
    CHECK(qroar::gguf_file::open(dir.file("y.gguf")).get_int("llama.context_length") == 8 * 512);
  }
  SUBCASE("yarn-ggml betas or ext_factor llama.cpp would ignore are refused, naming them") {
    for (const auto& [name, set] : std::vector<std::pair<std::string, std::function<void(qroar::rope_scaling&)>>>{
             {"beta_fast", [](qroar::rope_scaling& r) { r.beta_fast = 16.0; }},
             {"beta_slow", [](qroar::rope_scaling& r) { r.beta_slow = 2.0; }},
             {"ext_factor", [](qroar::rope_scaling& r) { r.ext_factor = 0.5; }}}) {
      m.config.rope = qroar::rope_scaling::yarn_ggml(8.0, 512);
      set(m.config.rope);
      try {
        qroar::write_gguf_model(m, dir.file("n.gguf"));
        FAIL("written: " << name);
      } catch (const qroar::unsupported& e) {
        CHECK(std::string(e.what()).find(name) != std::string::npos);
      }
      CHECK_FALSE(std::filesystem::exists(dir.file("n.gguf")));
    }
  }
  SUBCASE("ntk is recorded as llama.cpp's freq_base and read back as ntk") {
    m.config.rope = qroar::rope_scaling::ntk(4.0);
    m.config.rope.original_ctx = 512;
    qroar::write_gguf_model(m, dir.file("ntk.gguf"));
    const auto f = qroar::gguf_file::open(dir.file("ntk.gguf"));
    // b' = b * s^(d/(d-2)) with d = 8 rotary dims: 10000 * 4^(4/3), as a float.
    CHECK(f.get_float("llama.rope.freq_base") == static_cast<float>(10000.0 * std::pow(4.0, 8.0 / 6.0)));
    CHECK(f.get_int("llama.context_length") == 4 * 512);
    CHECK_FALSE(f.contains("llama.rope.scaling.type"));
    const auto back = qroar::llama_model_from_gguf(f);
    CHECK(back.config.rope.type == qroar::rope_type::ntk);
    CHECK(back.config.rope.factor == 4.0);
    CHECK(back.config.rope_theta == m.config.rope_theta);
    CHECK(back.config.original_ctx == 512);
    // A freq_base edited after qroar wrote the keys: the file means two things, refused.
    const auto source = qroar::gguf_file::open(dir.file("ntk.gguf"));
    auto w = qroar::gguf_writer::from(source);
    w.set("llama.rope.freq_base", qroar::gguf_value::f32(500000.0f));
    w.write(dir.file("ntk-edited.gguf"), {dir.file("ntk.gguf")});
    CHECK_THROWS_AS(qroar::load_gguf_model(dir.file("ntk-edited.gguf")), qroar::format_error);
  }
  SUBCASE("HF yarn with its defaults is written as GGUF yarn") {
    m.config.rope = qroar::rope_scaling::yarn(4.0, 512);
    qroar::write_gguf_model(m, dir.file("h.gguf"));
    const auto back = qroar::load_gguf_model(dir.file("h.gguf"));
    CHECK(back.config.rope.type == qroar::rope_type::yarn_ggml);
    CHECK(back.config.rope.factor == 4.0);
    CHECK(back.config.rope.ext_factor == 1.0);
    CHECK(back.config.rope.attn_factor == 1.0);
  }
  SUBCASE("scalings GGUF cannot hold are refused before anything is written") {
    for (auto r : {qroar::rope_scaling::dynamic(4.0, 512), qroar::rope_scaling::llama3(8.0, 512)}) {
      m.config.rope = r;
      CHECK_THROWS_AS(qroar::write_gguf_model(m, dir.file("n.gguf")), qroar::unsupported);
      CHECK_FALSE(std::filesystem::exists(dir.file("n.gguf")));
    }
    m.config.rope = qroar::rope_scaling::yarn(4.0, 512);
    m.config.rope.mscale = 0.707;
    CHECK_THROWS_AS(qroar::write_gguf_model(m, dir.file("n.gguf")), qroar::unsupported);
  }
  SUBCASE("a source's stale scaling keys are replaced") {
    m.config.rope = qroar::rope_scaling::linear(4.0);
    qroar::write_gguf_model(m, dir.file("l.gguf"));
    const auto src = qroar::gguf_file::open(dir.file("l.gguf"));
    m.config.rope = qroar::rope_scaling::none();
    qroar::gguf_export_options o;
    o.source = &src;
    qroar::write_gguf_model(m, dir.file("n.gguf"), o);
    const auto f = qroar::gguf_file::open(dir.file("n.gguf"));
    CHECK_FALSE(f.contains("llama.rope.scaling.type"));
    CHECK_FALSE(f.contains("llama.rope.scaling.factor"));
  }
}

TEST_CASE("write_gguf_model: a llama2.c vocabulary embedded as tokenizer.ggml.* equals ggml-org's") {
  const auto bin = qroar_test::shared_file(stories_bin);
  const auto tok = qroar_test::shared_file(stories_tok);
  const auto ref = qroar_test::shared_file(stories_gguf);
  if (bin.empty() || tok.empty() || ref.empty()) return;
  const auto m = qroar::load_llama2c(bin.string());
  const auto vocab = qroar::spm_vocabulary_from_llama2c(qroar::llama2c_tokenizer(tok.string(), 512));
  const auto expected = qroar::gguf_vocabulary(qroar::gguf_file::open(ref.string()));
  CHECK(vocab.pieces == expected.pieces);
  CHECK(vocab.scores == expected.scores);
  CHECK(vocab.types == expected.types);
  temp_dir dir;
  qroar::gguf_export_options o;
  o.vocabulary = &vocab;
  qroar::write_gguf_model(m, dir.file("t.gguf"), o);
  const auto back = qroar::gguf_vocabulary(qroar::gguf_file::open(dir.file("t.gguf")));
  CHECK(back.pieces == vocab.pieces);
  CHECK(back.scores == vocab.scores);
  CHECK(back.types == vocab.types);
  CHECK(back.bos_id == 1);
  CHECK(back.eos_id == 2);
  CHECK(back.unk_id == 0);
  // The embedded tokenizer encodes like the GGUF reference's.
  const qroar::spm_tokenizer a(back), b(expected);
  const std::string text = "Once upon a time, there was a little girl named Lily.";
  CHECK(a.encode(text, true) == b.encode(text, true));
  // A vocabulary of another size is refused.
  auto small = vocab;
  small.pieces.pop_back();
  small.scores.pop_back();
  small.types.pop_back();
  o.vocabulary = &small;
  CHECK_THROWS_AS(qroar::write_gguf_model(m, dir.file("u.gguf"), o), qroar::invalid_argument);
}

TEST_CASE("write_gguf_model: refusals leave no file behind") {
  const auto ref = qroar_test::shared_file(stories_gguf);
  if (ref.empty()) return;
  temp_dir dir;
  const auto copy = dir.file("copy.gguf");
  std::filesystem::copy_file(ref, copy);
  const auto before = read_bytes(copy);
  auto m = qroar::load_gguf_model(copy);
  SUBCASE("over the file the model came from") {
    CHECK_THROWS_AS(qroar::write_gguf_model(m, copy), qroar::invalid_argument);
    CHECK(read_bytes(copy) == before);
  }
  SUBCASE("a non-finite weight names its tensor") {
    m.layers[3].wv(2, 5) = std::nanf("");
    try {
      qroar::write_gguf_model(m, dir.file("nan.gguf"));
      FAIL("no exception");
    } catch (const qroar::numeric_error& e) {
      CHECK(std::string(e.what()).find("blk.3.attn_v.weight") != std::string::npos);
    }
    CHECK_FALSE(std::filesystem::exists(dir.file("nan.gguf")));
  }
  SUBCASE("a weight that overflows f16") {
    m.layers[1].wo(0, 0) = 1e6f;
    qroar::gguf_export_options o;
    o.storage = qroar::gguf_storage::f16;
    CHECK_THROWS_AS(qroar::write_gguf_model(m, dir.file("big.gguf"), o), qroar::numeric_error);
    CHECK_FALSE(std::filesystem::exists(dir.file("big.gguf")));
  }
  SUBCASE("like_source without a source") {
    qroar::gguf_export_options o;
    o.storage = qroar::gguf_storage::like_source;
    CHECK_THROWS_AS(qroar::write_gguf_model(m, dir.file("x.gguf"), o), qroar::invalid_argument);
  }
}
