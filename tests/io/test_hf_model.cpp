#include <doctest/doctest.h>

#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c.hpp>

#include <cmath>
#include <limits>

#include "model_io_testing.hpp"
#include "shared_data.hpp"

using qroar_io_test::read_bytes;
using qroar_io_test::temp_dir;
using qroar_io_test::write_bytes;

namespace fs = std::filesystem;

namespace {

using qroar_test::paths::gutenberg_hf;
using qroar_test::paths::gutenberg_bin;

void write_text(const std::string& path, const std::string& text) {
  write_bytes(path, std::vector<std::uint8_t>(text.begin(), text.end()));
}

// Writes tiny_model() as an HF folder and returns the parsed config.json for editing.
nlohmann::json tiny_folder(const std::string& dir, bool untied = false) {
  qroar::write_hf_model(qroar_io_test::tiny_model(untied), dir);
  return nlohmann::json::parse(read_bytes(dir + "/config.json"));
}

}  // namespace

// MANIFEST in the name: the data description summarized in docs/test-data.md.
TEST_CASE("hf: gutenberg-3m hf/ config matches the MANIFEST") {
  const auto dir = qroar_test::shared_file(gutenberg_hf);
  if (dir.empty()) return;
  const auto m = qroar::load_hf_model(dir.string());
  const auto& c = m.config;
  CHECK(c.dim == 256);
  CHECK(c.hidden_dim == 704);
  CHECK(c.n_layers == 4);
  CHECK(c.n_heads == 4);
  CHECK(c.n_kv_heads == 2);
  CHECK(c.head_size() == 64);
  CHECK(c.vocab_size == 2048);
  CHECK(c.original_ctx == 256);
  CHECK(c.max_position_embeddings == 256);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.norm_eps == 1e-5f);
  CHECK(c.tied_embeddings);
  CHECK(c.layout == qroar::pair_layout::half_split);
  CHECK(c.rope.type == qroar::rope_type::none);
  CHECK(m.output.size() == 0);
  CHECK(m.source_format == "hf");
}

TEST_CASE("hf: gutenberg-3m model.bin (interleaved) and hf/ (half-split) hold the same weights after the row permutation") {
  const auto dir = qroar_test::shared_file(gutenberg_hf);
  const auto bin = qroar_test::shared_file(gutenberg_bin);
  if (dir.empty() || bin.empty()) return;
  const auto hf = qroar::load_hf_model(dir.string());
  const auto ll = qroar::load_llama2c(bin.string());
  REQUIRE(hf.config.head_size() == ll.config.head_size());
  CHECK(qroar_io_test::same_bits(hf.token_embedding, ll.token_embedding));
  CHECK(qroar_io_test::same_bits(hf.final_norm, ll.final_norm));
  const int hd = 64;
  for (std::size_t l = 0; l < hf.layers.size(); ++l) {
    CAPTURE(l);
    const auto& a = hf.layers[l];
    const auto& b = ll.layers[l];
    CHECK(qroar_io_test::same_bits(a.wv, b.wv));
    CHECK(qroar_io_test::same_bits(a.wo, b.wo));
    CHECK(qroar_io_test::same_bits(a.w1, b.w1));
    CHECK(qroar_io_test::same_bits(a.w2, b.w2));
    CHECK(qroar_io_test::same_bits(a.w3, b.w3));
    CHECK(qroar_io_test::same_bits(a.attn_norm, b.attn_norm));
    CHECK(qroar_io_test::same_bits(a.ffn_norm, b.ffn_norm));
    // docs/formulas.md §1.3, written out here independently of permute_qk_rows:
    // interleaved row h*hd + 2j + t  <->  half-split row h*hd + t*hd/2 + j.
    bool q_ok = true, k_ok = true, q_differs = false;
    for (const auto& [half_w, inter_w, heads, ok] :
         {std::tuple<const qroar::tensor&, const qroar::tensor&, int, bool*>{a.wq, b.wq, 4, &q_ok},
          std::tuple<const qroar::tensor&, const qroar::tensor&, int, bool*>{a.wk, b.wk, 2, &k_ok}}) {
      REQUIRE(half_w.rows() == heads * hd);
      for (int h = 0; h < heads; ++h)
        for (int j = 0; j < hd / 2; ++j)
          for (int t = 0; t < 2; ++t) {
            const auto ri = h * hd + 2 * j + t, rh = h * hd + t * hd / 2 + j;
            if (std::memcmp(inter_w.row(ri).data(), half_w.row(rh).data(), sizeof(float) * 256) != 0) *ok = false;
          }
    }
    for (int r = 0; r < 4 * hd; ++r)
      if (std::memcmp(a.wq.row(r).data(), b.wq.row(r).data(), sizeof(float) * 256) != 0) q_differs = true;
    CHECK(q_ok);
    CHECK(k_ok);
    CHECK(q_differs);  // the two files really are in different layouts
  }
  // The library's conversion agrees in both directions, bit for bit.
  auto converted = ll;
  qroar::convert_pair_layout(converted, qroar::pair_layout::half_split);
  CHECK(qroar_io_test::same_weights(converted, hf));
  auto back = hf;
  qroar::convert_pair_layout(back, qroar::pair_layout::interleaved);
  CHECK(qroar_io_test::same_weights(back, ll));
}

TEST_CASE("hf: writing the llama2.c model as an HF folder reproduces hf/ tensor for tensor") {
  const auto dir = qroar_test::shared_file(gutenberg_hf);
  const auto bin = qroar_test::shared_file(gutenberg_bin);
  if (dir.empty() || bin.empty()) return;
  temp_dir tmp;
  const auto ll = qroar::load_llama2c(bin.string());
  const std::string out = tmp.file("hf-out");
  qroar::write_hf_model(ll, out);
  const qroar::safetensors_file mine(out + "/model.safetensors");
  const qroar::safetensors_file ref((dir / "model.safetensors").string());
  REQUIRE(mine.tensors().size() == ref.tensors().size());
  for (const auto& t : ref.tensors()) {
    CAPTURE(t.name);
    REQUIRE(mine.contains(t.name));
    CHECK(mine.info(t.name).shape == t.shape);
    CHECK(std::memcmp(mine.raw(t.name), ref.raw(t.name), t.end - t.begin) == 0);
  }
  const auto re = qroar::load_hf_model(out);
  CHECK(qroar_io_test::same_weights(re, qroar::load_hf_model(dir.string())));
  CHECK(re.config.original_ctx == 256);
  CHECK(re.config.norm_eps == 1e-5f);
  const auto cfg = nlohmann::json::parse(read_bytes(out + "/config.json"));
  CHECK(cfg["rms_norm_eps"].dump() == "1e-05");
  CHECK(cfg["rope_scaling"].is_null());
  CHECK(cfg["tie_word_embeddings"] == true);
  // And back to llama2.c: byte-identical to model.bin except the freq_cis table, which is recomputed.
  qroar::write_llama2c(re, tmp.file("back.bin"));
  CHECK(qroar_io_test::same_weights(qroar::load_llama2c(tmp.file("back.bin")), ll));
}

TEST_CASE("hf: round trips in F32 (identical), F16 and BF16 (rounded), tied and untied") {
  temp_dir tmp;
  for (bool untied : {false, true}) {
    CAPTURE(untied);
    const auto m = qroar_io_test::tiny_model(untied, 7);
    const std::string d32 = tmp.file(untied ? "u32" : "t32");
    qroar::write_hf_model(m, d32);
    auto r = qroar::load_hf_model(d32);
    CHECK(r.config.layout == qroar::pair_layout::half_split);
    CHECK(r.config.tied_embeddings == !untied);
    CHECK(r.config.original_ctx == 32);
    CHECK(r.config.head_size() == 4);
    qroar::convert_pair_layout(r, qroar::pair_layout::interleaved);
    CHECK(qroar_io_test::same_weights(r, m));
    // The HF model written again is byte-identical (fixed point).
    const auto h = qroar::load_hf_model(d32);
    qroar::write_hf_model(h, d32 + "-again");
    CHECK(read_bytes(d32 + "-again/model.safetensors") == read_bytes(d32 + "/model.safetensors"));
    CHECK(read_bytes(d32 + "-again/config.json") == read_bytes(d32 + "/config.json"));

    for (auto dtype : {qroar::safetensors_dtype::f16, qroar::safetensors_dtype::bf16}) {
      const std::string d = tmp.file(std::string(untied ? "u" : "t") + qroar::to_string(dtype));
      qroar::write_hf_model(m, d, dtype);
      auto q = qroar::load_hf_model(d);
      qroar::convert_pair_layout(q, qroar::pair_layout::interleaved);
      auto rounded = m;
      auto round = [dtype](auto& t) {
        for (Eigen::Index i = 0; i < t.size(); ++i)
          t.data()[i] = dtype == qroar::safetensors_dtype::f16
                            ? qroar::detail::fp16_to_fp32(qroar::detail::fp32_to_fp16(t.data()[i]))
                            : qroar::detail::bf16_to_fp32(qroar::detail::fp32_to_bf16(t.data()[i]));
      };
      round(rounded.token_embedding);
      round(rounded.final_norm);
      round(rounded.output);
      for (auto& l : rounded.layers) {
        for (auto* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w1, &l.w2, &l.w3}) round(*t);
        round(l.attn_norm);
        round(l.ffn_norm);
      }
      CHECK(qroar_io_test::same_weights(q, rounded));
      CHECK(nlohmann::json::parse(read_bytes(d + "/config.json"))["torch_dtype"] ==
            (dtype == qroar::safetensors_dtype::f16 ? "float16" : "bfloat16"));
    }
  }
}

TEST_CASE("hf: RoPE scaling and context fields round-trip through config.json") {
  temp_dir tmp;
  auto base = qroar_io_test::tiny_model();
  base.config.max_position_embeddings = 128;
  int k = 0;
  std::vector<qroar::rope_scaling> cases = {qroar::rope_scaling::linear(4.0), qroar::rope_scaling::dynamic(2.0, 128),
                                            qroar::rope_scaling::yarn(4.0, 32), qroar::rope_scaling::llama3(8.0, 32, 1.0, 4.0),
                                            qroar::rope_scaling::longrope({1.0, 1.5}, {2.0, 3.0}, 4.0, 32)};
  cases[2].beta_fast = 16.0;
  cases[2].mscale = 0.707;
  cases[2].mscale_all_dim = 0.5;
  cases[2].truncate = false;
  cases[4].attention_factor = 1.25;
  for (const auto& sc : cases) {
    const std::string type_name = qroar::to_string(sc.type);
    CAPTURE(type_name);
    auto m = base;
    m.config.rope = sc;
    const std::string d = tmp.file("rope" + std::to_string(k++));
    qroar::write_hf_model(m, d);
    const auto r = qroar::load_hf_model(d);
    const auto& a = r.config.rope;
    CHECK(a.type == sc.type);
    CHECK(a.factor == sc.factor);
    CHECK(a.beta_fast == sc.beta_fast);
    CHECK(a.beta_slow == sc.beta_slow);
    CHECK(a.mscale == sc.mscale);
    CHECK(a.mscale_all_dim == sc.mscale_all_dim);
    CHECK(a.truncate == sc.truncate);
    CHECK(a.low_freq_factor == sc.low_freq_factor);
    CHECK(a.high_freq_factor == sc.high_freq_factor);
    CHECK(a.short_factor == sc.short_factor);
    CHECK(a.long_factor == sc.long_factor);
    CHECK(a.attention_factor == sc.attention_factor);
    CHECK(r.config.max_position_embeddings == 128);
    if (sc.type == qroar::rope_type::dynamic) {
      CHECK(r.config.original_ctx == 128);  // dynamic has no original_max_position_embeddings
    } else {
      CHECK(r.config.original_ctx == 32);
      CHECK(a.original_ctx == 32);
    }
  }
  // No scaling, trained context below max_position_embeddings: a top-level original_max_position_embeddings.
  const std::string d = tmp.file("plain");
  qroar::write_hf_model(base, d);
  const auto r = qroar::load_hf_model(d);
  CHECK(r.config.original_ctx == 32);
  CHECK(r.config.max_position_embeddings == 128);
  auto ggml = base;
  ggml.config.rope = qroar::rope_scaling::yarn_ggml(4.0, 32);
  CHECK_THROWS_AS(qroar::write_hf_model(ggml, tmp.file("ggml")), qroar::unsupported);
  CHECK_FALSE(fs::exists(tmp.file("ggml")));
}

// Transformers' modeling_rope_utils.py, _compute_yarn_parameters: versions 4.45 - 4.5x replace `factor` by
// max_position_embeddings / rope_scaling["original_max_position_embeddings"] whenever the latter is present; later
// versions read `factor` (deriving it only when absent). A config.json written with max_position_embeddings = L0
// made the first run unscaled (factor 1); F x L0 gives every version the written factor.
TEST_CASE("hf: a YaRN config.json states max_position_embeddings = factor x L0 (Transformers derives the factor)") {
  temp_dir tmp;
  auto m = qroar_io_test::tiny_model();
  const int l0 = 32;
  m.config.original_ctx = l0;
  m.config.max_position_embeddings = l0;  // a model loaded from llama2.c: seq_len = L0
  for (const double factor : {2.0, 4.0, 2.5}) {
    CAPTURE(factor);
    m.config.rope = qroar::rope_scaling::yarn(factor, l0);
    const std::string d = tmp.file("yarn" + std::to_string(static_cast<int>(factor * 10)));
    qroar::write_hf_model(m, d);
    const auto j = nlohmann::json::parse(read_bytes(d + "/config.json"));
    const int lmax = j.at("max_position_embeddings").get<int>();
    const int original = j.at("rope_scaling").at("original_max_position_embeddings").get<int>();
    CHECK(original == l0);
    // the factor Transformers 4.45 - 4.5x use, and the one later versions read, are the written one
    CHECK(static_cast<double>(lmax) / original == factor);
    CHECK(j.at("rope_scaling").at("factor").get<double>() == factor);
    // read back: the same frequencies and attention factor as the model's scaling
    const auto back = qroar::load_hf_model(d);
    const auto dims = m.config.rope_geometry();
    CHECK(qroar::inverse_frequencies(back.config.rope, dims) == qroar::inverse_frequencies(m.config.rope, dims));
    CHECK(qroar::attention_factor(back.config.rope, dims) == qroar::attention_factor(m.config.rope, dims));
  }
  // factor x L0 not an integer: no max_position_embeddings gives Transformers that factor
  m.config.rope = qroar::rope_scaling::yarn(2.01, l0);
  CHECK_THROWS_AS(qroar::write_hf_model(m, tmp.file("yarn_fraction")), qroar::unsupported);
  CHECK_FALSE(fs::exists(tmp.file("yarn_fraction")));
  // dynamic NTK: the scaling's Lmax is HF's max_position_embeddings (where the base starts to grow)
  m.config.rope = qroar::rope_scaling::dynamic(2.0, 96);
  m.config.rope.original_ctx = l0;
  qroar::write_hf_model(m, tmp.file("dynamic"));
  CHECK(nlohmann::json::parse(read_bytes(tmp.file("dynamic") + "/config.json")).at("max_position_embeddings") == 96);
}

TEST_CASE("hf: config.json conventions (rope_parameters, defaults, original_max_position_embeddings precedence)") {
  const std::string f = "config.json";
  nlohmann::json cfg = {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 128},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"vocab_size", 100}};
  auto c = qroar::parse_hf_llama_config(cfg, f);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.head_size() == 16);
  CHECK(c.norm_eps == 1e-6f);
  CHECK(c.max_position_embeddings == 2048);
  CHECK(c.original_ctx == 2048);
  CHECK_FALSE(c.tied_embeddings);
  CHECK(c.rope_theta == 10000.0);
  cfg["max_position_embeddings"] = 131072;
  cfg["original_max_position_embeddings"] = 4096;
  c = qroar::parse_hf_llama_config(cfg, f);
  CHECK(c.original_ctx == 4096);
  cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192}};
  cfg["rope_theta"] = 500000.0;
  c = qroar::parse_hf_llama_config(cfg, f);
  CHECK(c.original_ctx == 8192);
  CHECK(c.rope.type == qroar::rope_type::llama3);
  CHECK(c.rope_theta == 500000.0);
  cfg.erase("rope_scaling");
  cfg["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1000000.0}};
  c = qroar::parse_hf_llama_config(cfg, f);
  CHECK(c.rope.type == qroar::rope_type::yarn);
  CHECK(c.rope_theta == 1000000.0);
  CHECK(c.original_ctx == 4096);
}

TEST_CASE("hf: sharded folders (model.safetensors.index.json) load like a single file") {
  temp_dir tmp;
  const auto m = qroar_io_test::tiny_model(true, 3);
  const std::string single = tmp.file("single");
  qroar::write_hf_model(m, single);
  const qroar::safetensors_file whole(single + "/model.safetensors");
  const std::string sharded = tmp.file("sharded");
  fs::create_directories(sharded);
  fs::copy_file(single + "/config.json", sharded + "/config.json");
  std::vector<std::vector<float>> keep;
  keep.reserve(whole.tensors().size());
  std::vector<qroar::safetensors_entry> a, b;
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  std::size_t i = 0;
  for (const auto& t : whole.tensors()) {
    keep.push_back(whole.read(t.name));
    const bool first = i++ % 2 == 0;
    (first ? a : b).push_back({t.name, t.shape, keep.back().data()});
    index["weight_map"][t.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  qroar::write_safetensors(sharded + "/model-00001-of-00002.safetensors", a, qroar::safetensors_dtype::f32);
  qroar::write_safetensors(sharded + "/model-00002-of-00002.safetensors", b, qroar::safetensors_dtype::bf16);
  write_text(sharded + "/model.safetensors.index.json", index.dump());
  const auto r = qroar::load_hf_model(sharded);
  CHECK(r.config.n_layers == 2);
  CHECK(r.output.rows() == 10);
  // lm_head.weight went to the F32 shard, model.embed_tokens.weight to the BF16 one.
  const auto s = qroar::load_hf_model(single);
  CHECK(qroar_io_test::same_bits(r.output, s.output));
  qroar::tensor rounded = s.token_embedding;
  for (Eigen::Index e = 0; e < rounded.size(); ++e)
    rounded.data()[e] = qroar::detail::bf16_to_fp32(qroar::detail::fp32_to_bf16(rounded.data()[e]));
  CHECK(qroar_io_test::same_bits(r.token_embedding, rounded));
  CHECK_FALSE(qroar_io_test::same_bits(r.token_embedding, s.token_embedding));

  SUBCASE("a shard path leaving the folder") {
    index["weight_map"]["model.norm.weight"] = "../single/model.safetensors";
    write_text(sharded + "/model.safetensors.index.json", index.dump());
    CHECK_THROWS_AS(qroar::load_hf_model(sharded), qroar::format_error);
  }
  SUBCASE("a missing shard") {
    index["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
    write_text(sharded + "/model.safetensors.index.json", index.dump());
    CHECK_THROWS_AS(qroar::load_hf_model(sharded), qroar::io_error);
  }
  SUBCASE("a tensor missing from the index") {
    index["weight_map"].erase("lm_head.weight");
    write_text(sharded + "/model.safetensors.index.json", index.dump());
    CHECK_THROWS_AS(qroar::load_hf_model(sharded), qroar::format_error);
  }
  SUBCASE("a bad index") {
    write_text(sharded + "/model.safetensors.index.json", "{\"weight_map\": [1]}");
    CHECK_THROWS_AS(qroar::load_hf_model(sharded), qroar::format_error);
    write_text(sharded + "/model.safetensors.index.json", "{\"weight_map\": ");
    CHECK_THROWS_AS(qroar::load_hf_model(sharded), qroar::format_error);
  }
}

TEST_CASE("hf: hostile folders throw typed errors") {
  temp_dir tmp;
  const std::string d = tmp.file("m");
  auto cfg = tiny_folder(d);
  const std::string config = d + "/config.json";
  auto with_config = [&](const nlohmann::json& j) { write_text(config, j.dump()); };

  SUBCASE("missing pieces") {
    CHECK_THROWS_AS(qroar::load_hf_model(tmp.file("nowhere")), qroar::io_error);
    fs::remove(config);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::io_error);
    with_config(cfg);
    fs::remove(d + "/model.safetensors");
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::io_error);
  }
  SUBCASE("bad config.json") {
    write_text(config, "{\"hidden_size\": 16,");
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
    write_text(config, "[]");
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
    for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
      CAPTURE(key);
      auto j = cfg;
      j.erase(key);
      with_config(j);
      CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
      j[key] = -4;
      with_config(j);
      CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
      j[key] = "16";
      with_config(j);
      CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
    }
    auto j = cfg;
    j["rope_scaling"] = {{"rope_type", 5}};
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -2.0}};
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);  // a value the file may not hold
  }
  SUBCASE("other architectures") {
    auto j = cfg;
    j["model_type"] = "qwen2";
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::unsupported);
    j = cfg;
    j["architectures"] = {"GPT2LMHeadModel"};
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::unsupported);
    j = cfg;
    j["attention_bias"] = true;
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::unsupported);
    j = cfg;
    j["hidden_act"] = "gelu";
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::unsupported);
  }
  SUBCASE("config and tensors disagree") {
    auto j = cfg;
    j["intermediate_size"] = 25;
    with_config(j);
    try {
      qroar::load_hf_model(d);
      FAIL("expected format_error");
    } catch (const qroar::format_error& e) {
      CHECK(e.tensor() == "model.layers.0.mlp.gate_proj.weight");
    }
    j = cfg;
    j["tie_word_embeddings"] = false;  // no lm_head.weight in the file
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
    j = cfg;
    j["num_hidden_layers"] = 3;
    with_config(j);
    CHECK_THROWS_AS(qroar::load_hf_model(d), qroar::format_error);
  }
  SUBCASE("NaN weights and bias tensors") {
    const qroar::safetensors_file f(d + "/model.safetensors");
    std::vector<std::vector<float>> keep;
    keep.reserve(f.tensors().size() + 1);
    std::vector<qroar::safetensors_entry> entries;
    for (const auto& t : f.tensors()) {
      keep.push_back(f.read(t.name));
      entries.push_back({t.name, t.shape, keep.back().data()});
    }
    const std::string poisoned = tmp.file("poisoned");
    fs::create_directories(poisoned);
    fs::copy_file(config, poisoned + "/config.json");
    auto raw = read_bytes(d + "/model.safetensors");
    const auto& wk = f.info("model.layers.1.self_attn.k_proj.weight");
    qroar_io_test::put_f32(raw, f.data_offset() + wk.begin + 4 * (2 * 16 + 3), std::numeric_limits<float>::infinity());
    write_bytes(poisoned + "/model.safetensors", raw);
    try {
      qroar::load_hf_model(poisoned);
      FAIL("expected numeric_error");
    } catch (const qroar::numeric_error& e) {
      const std::string what = e.what();
      CHECK(what.find("model.layers.1.self_attn.k_proj.weight") != std::string::npos);
      CHECK(what.find("row 2, column 3") != std::string::npos);
    }
    keep.push_back(std::vector<float>(16, 0.0f));
    entries.push_back({"model.layers.0.self_attn.q_proj.bias", {16}, keep.back().data()});
    qroar::write_safetensors(poisoned + "/model.safetensors", entries, qroar::safetensors_dtype::f32);
    CHECK_THROWS_AS(qroar::load_hf_model(poisoned), qroar::unsupported);
    // A weight stored as I32 (same byte size) is unsupported, naming the tensor.
    raw = read_bytes(d + "/model.safetensors");
    std::string text(raw.begin(), raw.end());
    const std::string key = "\"model.layers.1.self_attn.k_proj.weight\":{\"dtype\":\"F32\"";
    const auto at = text.find(key);
    REQUIRE(at != std::string::npos);
    text.replace(at + key.size() - 4, 3, "I32");
    write_text(poisoned + "/model.safetensors", text);
    try {
      qroar::load_hf_model(poisoned);
      FAIL("expected unsupported");
    } catch (const qroar::unsupported& e) {
      CHECK(std::string(e.what()).find("model.layers.1.self_attn.k_proj.weight") != std::string::npos);
    }
  }
}

TEST_CASE("hf: the writer refuses to overwrite its input folder") {
  temp_dir tmp;
  const std::string d = tmp.file("m");
  tiny_folder(d);
  const auto before = read_bytes(d + "/model.safetensors");
  const auto m = qroar::load_hf_model(d);
  CHECK_THROWS_AS(qroar::write_hf_model(m, d), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::write_hf_model(m, d + "/."), qroar::invalid_argument);
  CHECK(read_bytes(d + "/model.safetensors") == before);
  // A llama2.c model refuses to overwrite its own .bin when written there by name.
  const std::string bin = tmp.file("model.bin");
  qroar::write_llama2c(qroar_io_test::tiny_model(), bin);
  auto ll = qroar::load_llama2c(bin);
  ll.source_path = bin;
  CHECK_THROWS_AS(qroar::write_llama2c(ll, bin), qroar::invalid_argument);
}
