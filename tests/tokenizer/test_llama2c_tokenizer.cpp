#include <qroar/io/llama2c_tokenizer.hpp>

#include <cstring>

#include "tokenizer_test_support.hpp"

using qroar_test::temp_file;

namespace {

constexpr int tok512_vocab = 512;

std::string tok512_path() {
  const auto p = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  return p.empty() ? std::string() : p.string();
}

// A tokenizer.bin in memory: max_token_length, then {score, len, bytes} per piece.
std::string make_tokenizer_bin(std::int32_t max_len, const std::vector<std::pair<float, std::string>>& pieces) {
  std::string out(4, '\0');
  std::memcpy(&out[0], &max_len, 4);
  for (const auto& [score, piece] : pieces) {
    char head[8];
    const auto len = static_cast<std::int32_t>(piece.size());
    std::memcpy(head, &score, 4);
    std::memcpy(head + 4, &len, 4);
    out.append(head, 8);
    out += piece;
  }
  return out;
}

}  // namespace

TEST_CASE("llama2c_tokenizer: stories260K tokenizer_cases of the reference, exactly") {
  const auto path = tok512_path();
  if (path.empty()) return;
  const qroar::llama2c_tokenizer tok(path, tok512_vocab);
  CHECK(tok.vocab_size() == 512);
  CHECK(tok.max_token_length() == 7);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_id() == 2);
  CHECK(tok.piece(1) == "\n<s>\n");
  CHECK(tok.piece(3) == "<0x00>");
  for (const auto& c : qroar_test::stories260k_tokenizer_cases()) {
    CAPTURE(c.text);
    CHECK(tok.encode(c.text, c.bos) == c.expected);
    // Without BOS the same ids follow.
    CHECK(tok.encode(c.text, false) == std::vector<int>(c.expected.begin() + 1, c.expected.end()));
    CHECK(tok.decode_all(c.expected) == c.text);
  }
}

TEST_CASE("llama2c_tokenizer: run.c details") {
  const auto path = tok512_path();
  if (path.empty()) return;
  const qroar::llama2c_tokenizer tok(path, tok512_vocab);
  SUBCASE("empty text: no dummy prefix") {
    CHECK(tok.encode("", true) == std::vector<int>{1});
    CHECK(tok.encode("", false).empty());
  }
  SUBCASE("dummy prefix is the piece \" \"") {
    const int space = tok.find(" ");
    REQUIRE(space >= 0);
    const auto ids = tok.encode("\n", false);
    CHECK(ids == std::vector<int>{space, 3 + '\n'});
  }
  SUBCASE("byte fallback is byte + 3") {
    // U+1F642 is not in the 512 vocabulary: its four bytes become tokens 0xF0+3 ... 0x82+3.
    const auto ids = tok.encode("\xF0\x9F\x99\x82", false);
    REQUIRE(ids.size() == 5);
    CHECK(ids[1] == 0xF0 + 3);
    CHECK(ids[2] == 0x9F + 3);
    CHECK(ids[3] == 0x99 + 3);
    CHECK(ids[4] == 0x82 + 3);
  }
  SUBCASE("decode strips the space after BOS and turns byte tokens into bytes") {
    const int the = tok.find(" the");
    REQUIRE(the >= 0);
    CHECK(tok.decode(1, the) == "the");
    CHECK(tok.decode(5, the) == " the");
    CHECK(tok.decode(5, 3 + 0xE2) == "\xE2");
    CHECK(tok.decode(1, 3 + ' ') == " ");  // a byte token is not stripped
    CHECK_THROWS_AS(tok.decode(1, 512), qroar::invalid_argument);
    CHECK_THROWS_AS(tok.decode(1, -1), qroar::invalid_argument);
  }
}

TEST_CASE("llama2c_tokenizer: decode(encode(x)) round trip") {
  const auto path = tok512_path();
  if (path.empty()) return;
  const qroar::llama2c_tokenizer tok(path, tok512_vocab);
  const std::string& text = qroar_test::roundtrip_text();
  CHECK(tok.decode_all(tok.encode(text, true)) == text);
  CHECK(tok.decode_all(tok.encode(text, false)) == " " + text);  // the dummy prefix stays without BOS
  CHECK(tok.decode_all(tok.encode("  two  spaces  ", true)) == "  two  spaces  ");
  for (const auto& [name, sample] : qroar_test::sample_texts()) {
    CAPTURE(name);
    const auto ids = tok.encode(sample, true);
    CHECK(ids.size() < sample.size());
    CHECK(tok.decode_all(ids) == sample);
  }
}

TEST_CASE("llama2c_tokenizer: the merge queue makes run.c's choices") {
  // Pieces: " ", "a", "b", "ab", "ba", " a". Scores make "ab" and "ba" tie; run.c takes the leftmost pair.
  const auto bin = make_tokenizer_bin(5, {{0.f, "<unk>"}, {0.f, "<s>"}, {0.f, "</s>"}, {0.f, " "}, {0.f, "a"},
                                          {0.f, "b"}, {-1.f, "ab"}, {-1.f, "ba"}, {-3.f, " a"}});
  const temp_file f("tok_tie.bin", bin);
  const qroar::llama2c_tokenizer tok(f.path.string(), 9);
  // " bab": " " b a b -> pairs "ba"(-1) at 1, "ab"(-1) at 2: leftmost "ba" wins -> " " ba b.
  CHECK(tok.encode("bab", false) == std::vector<int>{3, 7, 5});
  // " aba": " a"(-3) at 0, "ab"(-1) at 1, "ba"(-1) at 2 -> "ab" first -> " " ab a; then nothing merges.
  CHECK(tok.encode("aba", false) == std::vector<int>{3, 6, 4});
  // No byte tokens in this vocabulary: an unknown byte becomes <unk> (0).
  CHECK(tok.encode("c", false) == std::vector<int>{3, 0});
}

TEST_CASE("llama2c_tokenizer: lengths are validated against the file") {
  const auto path = tok512_path();
  if (path.empty()) return;
  const std::string bytes = qroar_test::read_bytes(path);
  SUBCASE("vocab_size larger than the file") {
    CHECK_THROWS_WITH_AS(qroar::llama2c_tokenizer(path, 513), doctest::Contains("runs past the end of the file"),
                         qroar::format_error);
  }
  SUBCASE("vocab_size smaller than the file") {
    CHECK_THROWS_WITH_AS(qroar::llama2c_tokenizer(path, 511), doctest::Contains("larger vocabulary than vocab_size"),
                         qroar::format_error);
  }
  SUBCASE("truncated file") {
    const temp_file f("tok_truncated.bin", bytes.substr(0, 1000));
    try {
      qroar::llama2c_tokenizer(f.path.string(), tok512_vocab);
      FAIL("no error");
    } catch (const qroar::format_error& e) {
      CHECK(e.file() == f.path.string());
      CHECK(e.offset() <= 1000);
    }
  }
  SUBCASE("negative and oversized lengths") {
    const temp_file neg("tok_negative.bin", make_tokenizer_bin(3, {{0.f, "<unk>"}}).replace(8, 4, "\xFF\xFF\xFF\xFF", 4));
    CHECK_THROWS_WITH_AS(qroar::llama2c_tokenizer(neg.path.string(), 1), doctest::Contains("at byte offset 8"),
                         qroar::format_error);
    const temp_file big("tok_big.bin", make_tokenizer_bin(3, {{0.f, "<unk>"}}));
    CHECK_THROWS_WITH_AS(qroar::llama2c_tokenizer(big.path.string(), 1), doctest::Contains("max_token_length = 3"),
                         qroar::format_error);
  }
  SUBCASE("bad arguments and files") {
    CHECK_THROWS_AS(qroar::llama2c_tokenizer(path, 0), qroar::invalid_argument);
    // a one-token vocabulary has no BOS (id 1): encoding with BOS is refused, not read past the pieces
    // (fuzz_llama2c_tokenizer finding), and without BOS the text falls back to <unk>
    const temp_file one("tok_one.bin", make_tokenizer_bin(5, {{0.f, "<unk>"}}));
    const qroar::llama2c_tokenizer tiny_vocab(one.path.string(), 1);
    CHECK_THROWS_AS(tiny_vocab.encode("ab", true), qroar::invalid_argument);
    CHECK(tiny_vocab.encode("ab", false) == std::vector<int>{0, 0});
    CHECK_THROWS_AS(qroar::llama2c_tokenizer("/nonexistent/tokenizer.bin", 512), qroar::io_error);
    const temp_file tiny("tok_tiny.bin", "\x07");
    CHECK_THROWS_AS(qroar::llama2c_tokenizer(tiny.path.string(), 512), qroar::format_error);
  }
}

#if defined(QROAR_HAS_SENTENCEPIECE)
#include <qroar/io/sentencepiece_tokenizer.hpp>

TEST_CASE("llama2c_tokenizer: Llama 2 tokenizer.bin agrees with libsentencepiece on tokenizer.model") {
  const auto bin = qroar_test::shared_file("data/models/llama2-tokenizer/tokenizer.bin");
  const auto model = qroar_test::shared_file("data/models/llama2-tokenizer/tokenizer.model");
  if (bin.empty() || model.empty()) return;
  const qroar::llama2c_tokenizer tok(bin.string(), 32000);
  const qroar::sentencepiece_tokenizer sp(model.string());
  CHECK(tok.max_token_length() == 27);
  CHECK(tok.encode(qroar_test::roundtrip_text(), true) == sp.encode(qroar_test::roundtrip_text(), true));
  for (const auto& [name, sample] : qroar_test::sample_texts()) {
    CAPTURE(name);
    const auto ids = tok.encode(sample, true);
    CHECK(ids == sp.encode(sample, true));
    CHECK(tok.decode_all(ids) == sample);
  }
}
#endif
