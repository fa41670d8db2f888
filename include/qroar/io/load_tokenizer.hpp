// SPDX-License-Identifier: MIT
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "../error.hpp"
#include "gguf.hpp"
#include "llama2c_tokenizer.hpp"
#include "spm_tokenizer.hpp"
#include "tokenizer.hpp"
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
#include "sentencepiece_tokenizer.hpp"
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
// A vocabulary larger than the model's embedding would map the extra ids to nothing (or text to unk): refused.
inline std::unique_ptr<tokenizer> fits_model(std::unique_ptr<tokenizer> t, const std::string& path, int vocab_size) {
  if (vocab_size > 0 && t->vocab_size() > vocab_size)
    throw format_error(path, "", 0, "the tokenizer's vocabulary holds " + std::to_string(t->vocab_size()) +
                                        " tokens, the model's embedding only " + std::to_string(vocab_size) + " rows");
  return t;
}
}  // namespace detail

// Opens the tokenizer for a model. With an explicit `tokenizer_path`: a SentencePiece `.model` (needs
// libsentencepiece), a `.gguf` (its embedded vocabulary) or a llama2.c `tokenizer.bin` (with `vocab_size`
// entries). Without one: a GGUF model's embedded vocabulary; a Hugging Face folder's tokenizer.model; for a
// llama2.c checkpoint, `tokenizer.bin`, `tok<vocab_size>.bin` or `tokenizer.model` in the checkpoint's folder.
// A vocabulary of more than `vocab_size` tokens (the model's embedding rows; 0: unknown) is a format_error naming
// both sizes.
inline std::unique_ptr<tokenizer> load_tokenizer(const std::string& tokenizer_path, const std::string& model_path,
                                                 int vocab_size) {
  namespace fs = std::filesystem;
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  auto open_spm_model = [&](const std::string& p) -> std::unique_ptr<tokenizer> {
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
    return std::make_unique<sentencepiece_tokenizer>(p);
#else
    throw unsupported(p + ": SentencePiece .model files need qroar built with libsentencepiece");
#endif
  };
  auto open = [&](const std::string& p) -> std::unique_ptr<tokenizer> {
    if (ends_with(p, ".model")) return detail::fits_model(open_spm_model(p), p, vocab_size);
    if (ends_with(p, ".gguf"))
      return detail::fits_model(std::make_unique<spm_tokenizer>(gguf_vocabulary(gguf_file::open(p))), p, vocab_size);
    return detail::fits_model(std::make_unique<llama2c_tokenizer>(p, vocab_size), p, vocab_size);
  };
  if (!tokenizer_path.empty()) return open(tokenizer_path);
  if (fs::is_directory(model_path)) {
    const auto p = fs::path(model_path) / "tokenizer.model";
    if (fs::exists(p)) return detail::fits_model(open_spm_model(p.string()), p.string(), vocab_size);
    throw invalid_argument(model_path + ": no tokenizer.model in the folder; pass --tokenizer");
  }
  if (ends_with(model_path, ".gguf")) return open(model_path);
  const auto dir = fs::path(model_path).parent_path();
  for (const auto& name :
       {std::string("tokenizer.bin"), "tok" + std::to_string(vocab_size) + ".bin", std::string("tokenizer.model")}) {
    const auto p = (dir.empty() ? fs::path(".") : dir) / name;
    if (fs::exists(p)) return open(p.string());
  }
  throw invalid_argument(model_path + ": no tokenizer found beside the model (tokenizer.bin, tok" +
                         std::to_string(vocab_size) + ".bin or tokenizer.model); pass --tokenizer");
}

}  // namespace v0
}  // namespace qroar
