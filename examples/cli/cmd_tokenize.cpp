// qroar tokenize: a text file's token ids in the --tokens format, with the model's own tokenizer (no weights loaded).
#include "cli_common.hpp"

#include <fstream>
#include <iostream>
#include <sstream>

#include <qroar/io/atomic_write.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/utf8.hpp>

namespace {

struct tokenize_options {
  std::string model_path, tokenizer_path, text_path, out_path;
  bool no_bos = false, json = false;
};

int run_tokenize(const tokenize_options& o) {
  // --model may itself be a tokenizer file (tokenizer.json, .model, GGUF) or a folder holding one.
  std::string tokenizer_path = o.tokenizer_path;
  if (tokenizer_path.empty() && std::filesystem::is_regular_file(o.model_path)) {
    const auto kind = qroar::detect_tokenizer_file(o.model_path);
    if (kind == qroar::tokenizer_file_kind::hf_json || kind == qroar::tokenizer_file_kind::sentencepiece)
      tokenizer_path = o.model_path;
  }
  const auto tok = qroar::load_tokenizer(tokenizer_path, o.model_path, 0);
  std::ifstream in(o.text_path, std::ios::binary);
  if (!in) throw qroar::io_error(o.text_path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  qroar_cli::require_text(o.text_path, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  const auto ids = tok->encode(text, !o.no_bos);
  std::string out;
  out.reserve(ids.size() * 7);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += (i % 32 == 0) ? '\n' : ' ';
    out += std::to_string(ids[i]);
  }
  if (!ids.empty()) out += '\n';
  if (!o.out_path.empty()) {
    qroar::atomic_file_writer w(o.out_path);
    w.write(out.data(), out.size());
    w.commit();
  }
  if (o.json) {
    nlohmann::ordered_json j;
    j["text"] = o.text_path;
    j["bytes"] = text.size();
    j["replaced_invalid_utf8"] = qroar::sanitize_utf8(text) != text;
    j["tokens"] = ids.size();
    j["vocab_size"] = tok->vocab_size();
    j["bos_id"] = tok->bos_id();
    j["eos_id"] = tok->eos_id();
    if (o.out_path.empty()) j["ids"] = ids;
    else j["output"] = o.out_path;
    std::cout << j.dump() << "\n";
  } else if (o.out_path.empty()) {
    std::cout << out;
  } else {
    std::cerr << "qroar tokenize: " << ids.size() << " tokens from " << text.size() << " bytes -> " << o.out_path << "\n";
  }
  return 0;
}

const qroar_cli::registrar register_tokenize{{"tokenize", [](CLI::App& app, std::function<int()>& run) {
  auto o = std::make_shared<tokenize_options>();
  app.description("Token ids of a text file, in the --tokens format (whitespace-separated decimal ids)");
  app.footer(
      "The file's bytes are tokenized as they are (no Gutenberg stripping, no newline changes); invalid UTF-8 is read "
      "as U+FFFD, one per maximal invalid subsequence, as Hugging Face's front ends read text. The tokenizer's "
      "post-processor decides BOS/EOS; --no-bos drops only those.\n"
      "Example:\n  qroar tokenize --model Llama-3.2-1B/ --text book.txt -o book.ids\n"
      "  qroar eval --model Llama-3.2-1B/ --tokens book.ids --ctx 2048");
  app.add_option("--model", o->model_path, "model (GGUF, llama2.c .bin, Hugging Face folder) or a tokenizer file")
      ->required()
      ->check(qroar_cli::existing_path);
  app.add_option("--tokenizer", o->tokenizer_path, "tokenizer overriding the model's (recognised by content)")
      ->check(CLI::ExistingPath);
  app.add_option("--text", o->text_path, "text file")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--output", o->out_path, "write the ids here (default: stdout)");
  app.add_flag("--no-bos", o->no_bos, "without the special tokens the post-processor adds (BOS/EOS)");
  app.add_flag("--json", o->json, "print one JSON object on stdout (the ids too unless -o)");
  run = [o] { return run_tokenize(*o); };
}}};

}  // namespace
