// SPDX-License-Identifier: MIT
// Builds the seed corpora of the fuzz harnesses at test time: small copies of the real files in ../shared/data
// (never committed) plus tiny valid files made with qroar's own writers, one folder per harness.
// Usage: fuzz_seeds <shared-dir> <source-dir> <output-dir>
#include <qroar/io/gguf.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/llama2c.hpp>
#include <qroar/io/safetensors.hpp>
#include <qroar/search/band_scales.hpp>
#include <qroar/search/scales_json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>

namespace fs = std::filesystem;

namespace {

std::vector<char> read_prefix(const fs::path& p, std::size_t max_bytes) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> bytes(max_bytes);
  in.read(bytes.data(), static_cast<std::streamsize>(max_bytes));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

void put(const fs::path& p, const std::string& prefix, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A copy of a real file, cut at max_bytes (the harness's -max_len); silently skipped when absent.
void copy_real(const fs::path& from, const fs::path& to, std::size_t max_bytes, const std::string& prefix = {}) {
  if (!fs::exists(from)) {
    std::cerr << "fuzz_seeds: " << from << " is absent, seed skipped\n";
    return;
  }
  put(to, prefix, read_prefix(from, max_bytes));
}

std::string le32(std::uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
  return s;
}

// dim 8, 2 heads (head_dim 4), 1 KV head, hidden 12, 1 layer, vocab 16, seq_len 8.
qroar::llama_model tiny_model(bool tied) {
  qroar::llama_model m;
  auto& c = m.config;
  c.dim = 8;
  c.hidden_dim = 12;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 16;
  c.original_ctx = 8;
  c.max_position_embeddings = 8;
  c.tied_embeddings = tied;
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 0.5f);
  auto fill = [&](qroar::tensor& t, int r, int k) {
    t.resize(r, k);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = n(rng);
  };
  auto ones = [](qroar::vector& v, int k) { v = qroar::vector::Ones(k); };
  fill(m.token_embedding, 16, 8);
  m.layers.resize(1);
  auto& L = m.layers[0];
  ones(L.attn_norm, 8);
  fill(L.wq, 8, 8);
  fill(L.wk, 4, 8);
  fill(L.wv, 4, 8);
  fill(L.wo, 8, 8);
  ones(L.ffn_norm, 8);
  fill(L.w1, 12, 8);
  fill(L.w2, 8, 12);
  fill(L.w3, 12, 8);
  ones(m.final_norm, 8);
  if (!tied) fill(m.output, 16, 8);
  return m;
}

// The tiny model as a llama GGUF whose tensors use `type`, with the first 16 tokens of the real vocabulary when
// `vocab_source` exists.
void tiny_gguf(const qroar::llama_model& m, qroar::ggml_type type, const fs::path& vocab_source, const fs::path& to) {
  qroar::gguf_writer w;
  w.set("general.architecture", qroar::gguf_value::string("llama"));
  const auto& c = m.config;
  w.set("llama.embedding_length", qroar::gguf_value::u32(static_cast<std::uint32_t>(c.dim)));
  w.set("llama.feed_forward_length", qroar::gguf_value::u32(static_cast<std::uint32_t>(c.hidden_dim)));
  w.set("llama.block_count", qroar::gguf_value::u32(static_cast<std::uint32_t>(c.n_layers)));
  w.set("llama.attention.head_count", qroar::gguf_value::u32(static_cast<std::uint32_t>(c.n_heads)));
  w.set("llama.attention.head_count_kv", qroar::gguf_value::u32(static_cast<std::uint32_t>(c.n_kv_heads)));
  w.set("llama.context_length", qroar::gguf_value::u32(8));
  w.set("llama.rope.freq_base", qroar::gguf_value::f32(10000.0f));
  w.set("llama.attention.layer_norm_rms_epsilon", qroar::gguf_value::f32(1e-5f));
  w.set("llama.rope.scaling.type", qroar::gguf_value::string("yarn"));
  w.set("llama.rope.scaling.factor", qroar::gguf_value::f32(2.0f));
  w.set("tokenizer.ggml.model", qroar::gguf_value::string("llama"));
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  if (fs::exists(vocab_source)) {
    const auto real = qroar::gguf_file::open(vocab_source.string());
    const auto* t = real.get_array("tokenizer.ggml.tokens", qroar::gguf_type::string);
    const auto* s = real.get_array("tokenizer.ggml.scores", qroar::gguf_type::float32);
    for (std::uint64_t i = 0; t && i < 16 && i < t->size(); ++i) {
      tokens.push_back(t->string_at(i));
      scores.push_back(s ? static_cast<float>(s->float_at(i)) : 0.0f);
      types.push_back(i < 3 ? 3 : 1);
    }
  }
  while (tokens.size() < 16) {
    tokens.push_back(std::string(1, static_cast<char>('a' + tokens.size())));
    scores.push_back(-static_cast<float>(tokens.size()));
    types.push_back(1);
  }
  w.set("tokenizer.ggml.tokens", qroar::gguf_value::array_of(tokens));
  w.set("tokenizer.ggml.scores", qroar::gguf_value::array_of(scores));
  w.set("tokenizer.ggml.token_type", qroar::gguf_value::array_of(types));
  w.set("tokenizer.ggml.bos_token_id", qroar::gguf_value::u32(1));
  w.set("tokenizer.ggml.eos_token_id", qroar::gguf_value::u32(2));
  auto add = [&](const std::string& name, const qroar::tensor& t, bool vec) {
    std::vector<std::int64_t> ne{t.cols()};
    if (!vec) ne.push_back(t.rows());
    const qroar::ggml_type ty = vec || (t.cols() % 32 != 0) ? qroar::ggml_type::f32 : type;
    w.add_tensor_quantized(name, ty, ne, t.data());
  };
  auto addv = [&](const std::string& name, const qroar::vector& v) {
    const qroar::tensor t = v.transpose();
    add(name, t, true);
  };
  add("token_embd.weight", m.token_embedding, false);
  const auto& L = m.layers[0];
  addv("blk.0.attn_norm.weight", L.attn_norm);
  add("blk.0.attn_q.weight", L.wq, false);
  add("blk.0.attn_k.weight", L.wk, false);
  add("blk.0.attn_v.weight", L.wv, false);
  add("blk.0.attn_output.weight", L.wo, false);
  addv("blk.0.ffn_norm.weight", L.ffn_norm);
  add("blk.0.ffn_gate.weight", L.w1, false);
  add("blk.0.ffn_down.weight", L.w2, false);
  add("blk.0.ffn_up.weight", L.w3, false);
  addv("output_norm.weight", m.final_norm);
  if (m.output.size() > 0) add("output.weight", m.output, false);
  w.write(to.string());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: fuzz_seeds <shared-dir> <source-dir> <output-dir>\n";
    return 2;
  }
  const fs::path data = fs::path(argv[1]) / "data" / "models";
  const fs::path source = argv[2];
  const fs::path out = argv[3];
  constexpr std::size_t max_len = 1 << 16;  // the harnesses' -max_len
  try {
    for (const char* h : {"gguf", "gguf_vocab", "safetensors", "hf_folder", "llama2c", "llama2c_tokenizer", "token_ids",
                          "quant_spec", "scales_json", "rope_json", "hf_tokenizer"})
      fs::create_directories(out / h);
    const fs::path real_gguf = data / "stories260K" / "stories260K.gguf";

    // GGUF: tiny llama models in several tensor types, real files cut at max_len.
    const qroar::llama_model tied = tiny_model(true), untied = tiny_model(false);
    tiny_gguf(tied, qroar::ggml_type::f32, real_gguf, out / "gguf" / "tiny-f32.gguf");
    tiny_gguf(untied, qroar::ggml_type::f16, real_gguf, out / "gguf" / "tiny-f16.gguf");
    copy_real(real_gguf, out / "gguf" / "stories260K.gguf", max_len);
    copy_real(data / "stories260K" / "ggml-quantized" / "stories260K-q4_0.gguf", out / "gguf" / "stories260K-q4_0.gguf", max_len);
    copy_real(data / "gutenberg-3m" / "ggml-quantized" / "gutenberg-3m-q4_K.gguf", out / "gguf" / "g3m-q4_K.gguf", max_len);
    fs::copy_file(out / "gguf" / "tiny-f32.gguf", out / "gguf_vocab" / "tiny.gguf", fs::copy_options::overwrite_existing);
    copy_real(real_gguf, out / "gguf_vocab" / "stories260K.gguf", max_len);

    // safetensors and HF folders: tiny models written by write_hf_model (F32, F16, BF16), the real config.json.
    const fs::path tmp = out / "tmp-hf";
    int k = 0;
    for (const auto dtype : {qroar::safetensors_dtype::f32, qroar::safetensors_dtype::f16, qroar::safetensors_dtype::bf16}) {
      const fs::path dir = tmp / std::to_string(k);
      fs::remove_all(dir);
      qroar::write_hf_model(k == 1 ? untied : tied, dir.string(), dtype);
      const std::string st = slurp(dir / "model.safetensors"), cfg = slurp(dir / "config.json");
      put(out / "safetensors" / ("tiny-" + std::to_string(k) + ".safetensors"), st, {});
      put(out / "hf_folder" / ("tiny-" + std::to_string(k)), le32(static_cast<std::uint32_t>(cfg.size())) + cfg + st, {});
      put(out / "rope_json" / ("tiny-config-" + std::to_string(k) + ".json"), cfg, {});
      ++k;
    }
    const fs::path real_cfg = data / "gutenberg-3m" / "hf" / "config.json";
    copy_real(data / "gutenberg-3m" / "hf" / "model.safetensors", out / "safetensors" / "gutenberg-3m.safetensors", max_len);
    if (fs::exists(real_cfg)) {
      const std::string cfg = slurp(real_cfg);
      put(out / "hf_folder" / "real-config", le32(static_cast<std::uint32_t>(cfg.size())) + cfg +
                                                 slurp(out / "safetensors" / "tiny-0.safetensors"), {});
      put(out / "rope_json" / "gutenberg-3m-config.json", cfg, {});
    }
    fs::remove_all(tmp);

    // tokenizer.json: the tiny byte-level one of the CLI tests.
    copy_real(source / "tests" / "cli" / "data" / "tiny_tokenizer", out / "hf_tokenizer" / "tiny_tokenizer.json", max_len);

    // RoPE configs: every scaling type in HF form.
    copy_real(source / "tests" / "cli" / "data" / "yarn2_config.json", out / "rope_json" / "yarn2_config.json", max_len);
    const std::vector<qroar::rope_scaling> scalings = {
        qroar::rope_scaling::linear(2.0), qroar::rope_scaling::ntk(4.0), qroar::rope_scaling::dynamic(2.0, 1024),
        qroar::rope_scaling::yarn(4.0, 512), qroar::rope_scaling::llama3(8.0, 512),
        qroar::rope_scaling::longrope({1.0, 1.0}, {2.0, 3.0}, 4.0, 512)};
    int r = 0;
    for (const auto& sc : scalings) {
      nlohmann::ordered_json j = {{"head_dim", 4}, {"max_position_embeddings", 2048}, {"rope_theta", 10000.0}};
      j["rope_scaling"] = qroar::hf_rope_scaling_json(sc, 512);
      put(out / "rope_json" / ("scaling-" + std::to_string(r++) + ".json"), j.dump(), {});
    }

    // llama2.c checkpoints and tokenizers.
    qroar::write_llama2c(tied, (out / "llama2c" / "tiny-tied.bin").string());
    qroar::write_llama2c(untied, (out / "llama2c" / "tiny-untied.bin").string());
    copy_real(data / "stories260K" / "stories260K.bin", out / "llama2c" / "stories260K.bin", max_len);
    const std::string vocab512("\x00\x02", 2), vocab1024("\xff\x03", 2);  // harness: vocab = 1 + u16 % 1024
    copy_real(data / "stories260K" / "tok512.bin", out / "llama2c_tokenizer" / "tok512", max_len, std::string("\xff\x01", 2));
    copy_real(data / "llama2-tokenizer" / "tokenizer.bin", out / "llama2c_tokenizer" / "llama2-1024", max_len, vocab1024);
    (void)vocab512;

    // Token ids, quant specs, band scales.
    copy_real(fs::path(argv[1]) / "reference" / "windows" / "s260_hidden_512.txt", out / "token_ids" / "s260_hidden_512.txt", 4096);
    put(out / "token_ids" / "small.txt", "1 2 3\n\t4 511 0\r\n", {});
    int q = 0;
    for (const char* spec : {"rtn:w4:g32:sym", "rtn:w8:channel:asym:clip:fp16", "rtn:w3:tensor", "gptq:w4:g128:act-order:damp0.02",
                             "gptq:w2", "ggml:q4_0", "ggml:q6_K", "kv:k4v4:token:g32:post-rope:asym", "kv:k8:channel:g64:pre-rope",
                             "act:q8k8:token:g32", "rtn:w4:g32:sym+kv:k4:token:g8:post-rope+act:k8:token:g16", "none"})
      put(out / "quant_spec" / ("spec-" + std::to_string(q++)), spec, {});
    qroar::llama_config c = tied.config;
    c.dim = 64;
    c.hidden_dim = 172;
    c.n_layers = 5;
    c.n_heads = 8;
    c.n_kv_heads = 4;
    c.vocab_size = 512;
    c.original_ctx = 512;
    const auto inv = qroar::inverse_frequencies(qroar::rope_scaling::none(), c.rope_geometry());
    int b = 0;
    for (const auto g : {qroar::scale_granularity::global, qroar::scale_granularity::per_layer,
                         qroar::scale_granularity::per_layer_kv_head}) {
      for (const auto v : {qroar::scale_variant::symmetric, qroar::scale_variant::independent}) {
        qroar::band_scales s(qroar::bands_equal(b % 2 ? 2 : 4, inv, c.original_ctx), v, g, c.n_layers, c.n_kv_heads);
        for (int u = 0; u < s.units(); ++u) s.set(u, 0, 1.0 + 0.1 * u, 0.9);
        qroar::write_band_scales((out / "scales_json" / ("scales-" + std::to_string(b++) + ".json")).string(), s, c,
                                 {{"note", "fuzz seed"}});
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
