// SPDX-License-Identifier: MIT
#pragma once

// Optional: needs PCRE2 and utf8proc through hf_tokenizer.hpp (link qroar::hf_tokenizer).
#include "hf_tokenizer.hpp"

#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "../error.hpp"
#include "gguf.hpp"

namespace qroar {
inline namespace v0 {

// The pre-tokenizer regexes llama.cpp runs for a GGUF `tokenizer.ggml.pre` (src/llama-vocab.cpp,
// llm_tokenizer_bpe), applied in order, each splitting every piece into matches and the text between them
// (HF Split "Isolated"). Empty for a value qroar does not know.
inline std::vector<std::string> gguf_bpe_pre_regexes(const std::string& pre) {
  // The contraction group of the Llama 3 / Qwen2 regexes, written without (?i:...) as llama.cpp writes it.
  const std::string contractions = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
  const std::string gpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "dbrx" ||
      pre == "smaug-bpe")
    return {contractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
  if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2")
    return {contractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" || pre == "codeshell" ||
      pre == "exaone" || pre == "minerva-7b")
    return {R"(\p{N})", gpt2};
  if (pre == "gpt-2" || pre == "phi-2" || pre == "mpt" || pre == "olmo" || pre == "jais")
    return {gpt2};
  if (pre.empty() || pre == "default")
    return {R"([\p{P}\$\+<=>\^~\|]+)", gpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
  return {};
}

// A GGUF vocabulary of type "gpt2" (tokenizer.ggml.model = "gpt2": byte-level BPE) as llama.cpp tokenizes it, run
// by hf_tokenizer on an equivalent tokenizer.json:
//   tokens      <- tokenizer.ggml.tokens (byte-level pieces), merges <- tokenizer.ggml.merges ("a b")
//   token types <- tokenizer.ggml.token_type: control (3) and user-defined (4) tokens are matched whole in the text
//                  before splitting (llama.cpp tokenizer_st_partition with parse_special = true)
//   pre-tokenizer <- tokenizer.ggml.pre (gguf_bpe_pre_regexes); ignore_merges for the Llama 3 family;
//   no normalizer: llama.cpp does not apply Qwen's NFC (HF does; see docs/tokenizers.md)
//   BOS/EOS     <- tokenizer.ggml.{bos,eos}_token_id (llama.cpp's BPE default 11 when absent) and
//                  tokenizer.ggml.add_{bos,eos}_token (default: BOS for the Llama 3 family only).
// Throws format_error for missing or inconsistent arrays, unsupported for an unknown tokenizer.ggml.pre.
inline hf_tokenizer gguf_bpe_tokenizer(const gguf_file& f) {
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2") throw invalid_argument(f.path() + ": tokenizer.ggml.model is '" + model + "', not gpt2");
  const auto* tokens = f.get_array("tokenizer.ggml.tokens", gguf_type::string);
  if (!tokens) throw format_error(f.path(), "", 0, "tokenizer.ggml.tokens is missing or not a string array");
  const auto* merges = f.get_array("tokenizer.ggml.merges", gguf_type::string);
  if (!merges) throw format_error(f.path(), "", 0, "tokenizer.ggml.merges is missing or not a string array");
  const auto& pieces = tokens->strings();
  std::vector<std::int64_t> types;
  if (const auto* t = f.get_array("tokenizer.ggml.token_type")) types = t->to_ints();
  if (!types.empty() && types.size() != pieces.size())
    throw format_error(f.path(), "", 0, "tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                                            " entries for " + std::to_string(pieces.size()) + " tokens");
  const std::string pre = f.get_string("tokenizer.ggml.pre");
  const auto regexes = gguf_bpe_pre_regexes(pre);
  if (regexes.empty()) throw unsupported(f.path() + ": tokenizer.ggml.pre '" + pre + "' is not supported");
  const bool llama3 = pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3";

  nlohmann::json j;
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json added = nlohmann::json::array();
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    vocab[pieces[i]] = i;
    const std::int64_t type = types.empty() ? 1 : types[i];
    if ((type == 3 || type == 4) && !pieces[i].empty())
      added.push_back({{"id", i}, {"content", pieces[i]}, {"special", type == 3}, {"normalized", false}});
  }
  j["model"] = {{"type", "BPE"}, {"vocab", std::move(vocab)}, {"merges", merges->strings()},
                {"ignore_merges", llama3}, {"byte_fallback", false}};
  j["added_tokens"] = std::move(added);
  nlohmann::json splits = nlohmann::json::array();
  for (const auto& r : regexes)
    splits.push_back({{"type", "Split"}, {"pattern", {{"Regex", r}}}, {"behavior", "Isolated"}, {"invert", false}});
  splits.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", std::move(splits)}};
  j["decoder"] = {{"type", "ByteLevel"}};
  const auto special = [&](const char* key) {
    const std::int64_t id = f.get_int(key, 11);
    return id >= 0 && id < static_cast<std::int64_t>(pieces.size()) ? static_cast<int>(id) : -1;
  };
  const int bos = special("tokenizer.ggml.bos_token_id"), eos = special("tokenizer.ggml.eos_token_id");
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token", llama3) && bos >= 0;
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false) && eos >= 0;
  nlohmann::json single = nlohmann::json::array(), special_tokens = nlohmann::json::object();
  if (add_bos) {
    single.push_back({{"SpecialToken", {{"id", "bos"}, {"type_id", 0}}}});
    special_tokens["bos"] = {{"id", "bos"}, {"ids", {bos}}};
  }
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (add_eos) {
    single.push_back({{"SpecialToken", {{"id", "eos"}, {"type_id", 0}}}});
    special_tokens["eos"] = {{"id", "eos"}, {"ids", {eos}}};
  }
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", special_tokens}};
  nlohmann::json config = nlohmann::json::object();
  if (bos >= 0) config["bos_token"] = pieces[static_cast<std::size_t>(bos)];
  if (eos >= 0) config["eos_token"] = pieces[static_cast<std::size_t>(eos)];
  return hf_tokenizer(j, config, f.path());
}

}  // namespace v0
}  // namespace qroar

#endif  // QROAR_HAS_HF_TOKENIZER
