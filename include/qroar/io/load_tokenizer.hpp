// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "../error.hpp"
#include "gguf.hpp"
#include "llama2c_tokenizer.hpp"
#include "read_file.hpp"
#include "spm_tokenizer.hpp"
#include "tokenizer.hpp"
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
#include "sentencepiece_tokenizer.hpp"
#endif
#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
#include "gguf_bpe_tokenizer.hpp"
#include "hf_tokenizer.hpp"
#endif

namespace qroar {
inline namespace v0 {

// The llama/SPM vocabulary embedded in a GGUF file (tokenizer.ggml.*).
inline spm_vocabulary gguf_vocabulary(const gguf_file& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "llama")
    throw unsupported(f.path() + ": embedded tokenizer '" + model + "' is not supported (only the llama/SPM vocabulary)");
  spm_vocabulary v;
  const auto* tokens = f.get_array("tokenizer.ggml.tokens", gguf_type::string);
  if (!tokens) throw format_error(f.path(), "", 0, "tokenizer.ggml.tokens is missing or not a string array");
  v.pieces = tokens->strings();
  if (const auto* scores = f.get_array("tokenizer.ggml.scores", gguf_type::float32)) v.scores = scores->to_floats();
  else v.scores.assign(v.pieces.size(), 0.0f);
  if (const auto* types = f.get_array("tokenizer.ggml.token_type")) {
    for (auto t : types->to_ints()) v.types.push_back(static_cast<std::int32_t>(t));
  } else {
    v.types.assign(v.pieces.size(), 1);
  }
  // Special ids are uint32 in GGUF; 0xFFFFFFFF (or anything out of range) means "none" (-1).
  auto special = [&](const char* key, std::int64_t fallback) {
    const std::int64_t id = f.get_int(key, fallback);
    return id >= 0 && id < static_cast<std::int64_t>(v.pieces.size()) ? static_cast<int>(id) : -1;
  };
  v.bos_id = special("tokenizer.ggml.bos_token_id", 1);
  v.eos_id = special("tokenizer.ggml.eos_token_id", 2);
  v.unk_id = special("tokenizer.ggml.unknown_token_id", 0);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
  return v;
}

namespace detail {
// A vocabulary larger than the model's embedding would map the extra ids to nothing (or text to unk): refused
// with invalid_argument, like check_tokenizer_fits (both files may be fine; they do not belong together).
inline std::unique_ptr<tokenizer> fits_model(std::unique_ptr<tokenizer> t, const std::string& path, int vocab_size) {
  if (vocab_size > 0 && t->vocab_size() > vocab_size)
    throw invalid_argument("tokenizer and model do not belong together: the tokenizer " + path + " holds " +
                           std::to_string(t->vocab_size()) + " tokens, the model's embedding only " +
                           std::to_string(vocab_size) + " rows (their vocabularies differ)");
  return t;
}
}  // namespace detail

// What a tokenizer file is, from its first bytes (never its name):
//   '{' after optional white space      -> Hugging Face tokenizer.json
//   magic "GGUF"                         -> a GGUF file's embedded vocabulary
//   0x0A (protobuf field 1, a string)    -> SentencePiece model (tokenizer.model)
//   anything else                        -> llama2.c tokenizer.bin
enum class tokenizer_file_kind { hf_json, gguf, sentencepiece, llama2c };

// Throws io_error when `path` cannot be read.
inline tokenizer_file_kind detect_tokenizer_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path + ": cannot open");
  char head[64] = {};
  in.read(head, sizeof head);
  const auto n = static_cast<std::size_t>(in.gcount());
  std::size_t i = 0;
  while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n')) ++i;
  if (i < n && head[i] == '{') return tokenizer_file_kind::hf_json;
  if (n >= 4 && head[0] == 'G' && head[1] == 'G' && head[2] == 'U' && head[3] == 'F') return tokenizer_file_kind::gguf;
  if (n >= 1 && head[0] == 0x0A) return tokenizer_file_kind::sentencepiece;
  return tokenizer_file_kind::llama2c;
}

// The tokenizer embedded in a GGUF file: tokenizer.ggml.model "llama" (SPM, spm_tokenizer) or "gpt2" (byte-level
// BPE, gguf_bpe_tokenizer, needs qroar::hf_tokenizer).
inline std::unique_ptr<tokenizer> gguf_tokenizer(const gguf_file& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model == "gpt2") {
#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
    return std::make_unique<hf_tokenizer>(gguf_bpe_tokenizer(f));
#else
    throw unsupported(f.path() + ": the gpt2 (BPE) vocabulary needs qroar built with PCRE2 and utf8proc "
                      "(libpcre2-dev, libutf8proc-dev)");
#endif
  }
  if (model.empty()) throw format_error(f.path(), "", 0, "no embedded tokenizer (tokenizer.ggml.model is missing)");
  return std::make_unique<spm_tokenizer>(gguf_vocabulary(f));
}

// Opens the tokenizer for a model. With an explicit `tokenizer_path` (recognised by content, see
// detect_tokenizer_file; a folder is searched like a Hugging Face folder): a tokenizer.json (with the
// tokenizer_config.json beside it), a SentencePiece `.model` (needs libsentencepiece), a GGUF (its embedded
// vocabulary) or a llama2.c `tokenizer.bin` (with `vocab_size` entries). Without one: a GGUF model's embedded
// vocabulary; in a Hugging Face folder tokenizer.json (what transformers' fast tokenizer reads) when qroar has
// qroar::hf_tokenizer, else tokenizer.model; for a llama2.c checkpoint, `tokenizer.bin`, `tok<vocab_size>.bin` or
// `tokenizer.model` in the checkpoint's folder. `vocab_size` <= 0 reads it from a llama2.c checkpoint's header.
// A vocabulary of more than `vocab_size` tokens (the model's embedding rows; 0: unknown) is a format_error naming
// both sizes.
// A std::bad_alloc while reading it is an io_error naming the tokenizer (or model) path.
inline std::unique_ptr<tokenizer> load_tokenizer(const std::string& tokenizer_path, const std::string& model_path,
                                                 int vocab_size);

namespace detail {
inline std::unique_ptr<tokenizer> load_tokenizer_unchecked(const std::string& tokenizer_path,
                                                           const std::string& model_path, int vocab_size) {
  namespace fs = std::filesystem;
  if (vocab_size <= 0 && !model_path.empty() && fs::is_regular_file(model_path)) {
    std::ifstream in(model_path, std::ios::binary);
    std::int32_t header[7] = {};
    if (in.read(reinterpret_cast<char*>(header), sizeof header) && header[5] != INT32_MIN)
      vocab_size = header[5] < 0 ? -header[5] : header[5];  // llama2.c: negative = untied classifier
  }
  auto open_spm_model = [&](const std::string& p) -> std::unique_ptr<tokenizer> {
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
    return std::make_unique<sentencepiece_tokenizer>(p);
#else
    throw unsupported(p + ": SentencePiece .model files need qroar built with libsentencepiece");
#endif
  };
  auto open_hf_json = [&](const std::string& p) -> std::unique_ptr<tokenizer> {
#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
    return std::make_unique<hf_tokenizer>(hf_tokenizer::from_file(p));
#else
    throw unsupported(p + ": tokenizer.json files need qroar built with PCRE2 and utf8proc (libpcre2-dev, "
                      "libutf8proc-dev)");
#endif
  };
  auto open_folder = [&](const std::string& dir) -> std::unique_ptr<tokenizer> {
    const auto json = fs::path(dir) / "tokenizer.json";
    const auto spm = fs::path(dir) / "tokenizer.model";
#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
    if (fs::exists(json)) return open_hf_json(json.string());
#endif
    if (fs::exists(spm)) return open_spm_model(spm.string());
    if (fs::exists(json)) return open_hf_json(json.string());  // throws: the build cannot read it
    throw invalid_argument(dir + ": no tokenizer.json or tokenizer.model in the folder; pass --tokenizer");
  };
  auto open = [&](const std::string& p) -> std::unique_ptr<tokenizer> {
    if (fs::is_directory(p)) return detail::fits_model(open_folder(p), p, vocab_size);
    switch (detect_tokenizer_file(p)) {
      case tokenizer_file_kind::hf_json: return detail::fits_model(open_hf_json(p), p, vocab_size);
      case tokenizer_file_kind::gguf: return detail::fits_model(gguf_tokenizer(gguf_file::open(p)), p, vocab_size);
      case tokenizer_file_kind::sentencepiece: return detail::fits_model(open_spm_model(p), p, vocab_size);
      case tokenizer_file_kind::llama2c: break;
    }
    if (vocab_size <= 0) throw invalid_argument(p + ": a llama2.c tokenizer.bin needs the model's vocabulary size");
    return std::make_unique<llama2c_tokenizer>(p, vocab_size);
  };
  if (!tokenizer_path.empty()) return open(tokenizer_path);
  if (fs::is_directory(model_path)) return detail::fits_model(open_folder(model_path), model_path, vocab_size);
  if (fs::is_regular_file(model_path) && detect_tokenizer_file(model_path) == tokenizer_file_kind::gguf)
    return open(model_path);
  const auto dir = fs::path(model_path).parent_path();
  for (const auto& name :
       {std::string("tokenizer.bin"), "tok" + std::to_string(vocab_size) + ".bin", std::string("tokenizer.model")}) {
    const auto p = (dir.empty() ? fs::path(".") : dir) / name;
    if (fs::exists(p)) return open(p.string());
  }
  throw invalid_argument(model_path + ": no tokenizer found beside the model (tokenizer.bin, tok" +
                         std::to_string(vocab_size) + ".bin or tokenizer.model); pass --tokenizer");
}
}  // namespace detail

inline std::unique_ptr<tokenizer> load_tokenizer(const std::string& tokenizer_path, const std::string& model_path,
                                                 int vocab_size) {
  return reading_or_io_error(tokenizer_path.empty() ? model_path : tokenizer_path, "tokenizer",
                             [&] { return detail::load_tokenizer_unchecked(tokenizer_path, model_path, vocab_size); });
}

// Embedding rows a tokenizer may fall short of (padded vocabularies: Qwen3 151669 tokens in 151936 rows; a
// tokenizer with fewer than this fraction of the rows belongs to another model).
inline constexpr double min_tokenizer_fraction_of_rows = 0.5;

// Throws invalid_argument naming both sizes when `tok` cannot be the tokenizer of a model with `rows` embedding
// rows: a vocabulary far smaller than the rows, or (when `ids` is given) an id beyond them.
inline void check_tokenizer_fits(const tokenizer& tok, int rows, const std::string& tokenizer_name,
                                 const std::string& model_name, const std::vector<int>* ids = nullptr) {
  const std::string sizes = "the tokenizer " + tokenizer_name + " has " + std::to_string(tok.vocab_size()) +
                            " tokens, the model " + model_name + " " + std::to_string(rows) + " embedding rows";
  if (static_cast<double>(tok.vocab_size()) < min_tokenizer_fraction_of_rows * rows)
    throw invalid_argument("tokenizer and model do not belong together: " + sizes);
  if (ids)
    for (std::size_t i = 0; i < ids->size(); ++i)
      if ((*ids)[i] < 0 || (*ids)[i] >= rows)
        throw invalid_argument("tokenizer and model do not belong together: token " + std::to_string(i) + " is id " +
                               std::to_string((*ids)[i]) + ", beyond the embedding rows; " + sizes);
}

}  // namespace v0
}  // namespace qroar
