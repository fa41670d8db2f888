#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/mapped_file.hpp>
#include <qroar/io/spm_tokenizer.hpp>
#if defined(QROAR_HAS_SENTENCEPIECE)
#include <qroar/io/sentencepiece_tokenizer.hpp>
#endif

#include <cstring>

#include "tokenizer_test_support.hpp"

namespace {

// A throwaway GGUF (v2/v3) metadata walk for these tests only: just the tokenizer.ggml.* keys. The library's
// GGUF reader lives elsewhere; spm_tokenizer deliberately takes plain arrays.
qroar::spm_vocabulary gguf_vocabulary(const std::string& path) {
  const qroar::mapped_file file(path);
  std::uint64_t offset = 0;
  const auto take = [&](std::uint64_t n) {
    const auto* p = file.range(offset, n);
    offset += n;
    return p;
  };
  const auto u32 = [&] {
    std::uint32_t v;
    std::memcpy(&v, take(4), 4);
    return v;
  };
  const auto u64 = [&] {
    std::uint64_t v;
    std::memcpy(&v, take(8), 8);
    return v;
  };
  const auto str = [&] {
    const std::uint64_t n = u64();
    return std::string(reinterpret_cast<const char*>(take(n)), static_cast<std::size_t>(n));
  };
  REQUIRE(std::memcmp(take(4), "GGUF", 4) == 0);
  const std::uint32_t version = u32();
  REQUIRE((version == 2 || version == 3));
  (void)u64();  // tensor count
  const std::uint64_t n_kv = u64();
  static const int scalar_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  const auto scalar = [&](std::uint32_t type) -> double {  // integers, floats and bools of the kinds used here
    REQUIRE((type <= 12 && type != 8 && type != 9));
    const auto* p = take(static_cast<std::uint64_t>(scalar_size[type]));
    switch (type) {
      case 0: return *p;
      case 4: { std::uint32_t v; std::memcpy(&v, p, 4); return v; }
      case 5: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
      case 6: { float v; std::memcpy(&v, p, 4); return v; }
      case 7: return *p != 0;
      case 10: { std::uint64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
      default: return 0;
    }
  };
  qroar::spm_vocabulary v;
  const auto special = [](double id) { return id >= 4294967295.0 ? -1 : static_cast<int>(id); };
  for (std::uint64_t k = 0; k < n_kv; ++k) {
    const std::string key = str();
    const std::uint32_t type = u32();
    if (type == 8) {
      const std::string value = str();
      if (key == "tokenizer.ggml.model") REQUIRE(value == "llama");
    } else if (type == 9) {
      const std::uint32_t elem = u32();
      const std::uint64_t n = u64();
      for (std::uint64_t i = 0; i < n; ++i) {
        if (elem == 8) {
          std::string s = str();
          if (key == "tokenizer.ggml.tokens") v.pieces.push_back(std::move(s));
        } else {
          const double x = scalar(elem);
          if (key == "tokenizer.ggml.scores") v.scores.push_back(static_cast<float>(x));
          if (key == "tokenizer.ggml.token_type") v.types.push_back(static_cast<std::int32_t>(x));
        }
      }
    } else {
      const double x = scalar(type);
      if (key == "tokenizer.ggml.bos_token_id") v.bos_id = special(x);
      if (key == "tokenizer.ggml.eos_token_id") v.eos_id = special(x);
      if (key == "tokenizer.ggml.unknown_token_id") v.unk_id = special(x);
      if (key == "tokenizer.ggml.add_space_prefix") v.add_space_prefix = x != 0;
    }
  }
  REQUIRE(!v.pieces.empty());
  return v;
}

qroar::spm_vocabulary shared_vocabulary(const char* relative) {
  const auto p = qroar_test::shared_file(relative);
  return p.empty() ? qroar::spm_vocabulary{} : gguf_vocabulary(p.string());
}

// Sentences and their ids under gutenberg-3m/tokenizer.model, produced by Debian's python3-sentencepiece 0.1.97,
// independently of qroar:
//   /usr/bin/python3 -c "import sentencepiece as s, json; sp = s.SentencePieceProcessor(
//       model_file='../shared/data/models/gutenberg-3m/tokenizer.model'); print(sp.encode(TEXT))"
// (no BOS; TEXT as written below).
struct python_case {
  const char* text;
  std::vector<int> ids;
  bool has_extra_spaces;  // leading, trailing or repeated U+0020: SentencePiece's normalizer removes them
};
const std::vector<python_case>& gutenberg3m_python_cases() {
  static const std::vector<python_case> cases = {
      {"Once upon a time, there was a little girl named Lily.",
       {617, 1221, 588, 261, 596, 1955, 455, 324, 261, 533, 1209, 295, 393, 278, 515, 746, 1958}, false},
      {"Alice was beginning to get very tired of sitting by her sister on the bank.",
       {1120, 324, 750, 263, 729, 281, 763, 491, 259, 1184, 280, 1884, 389, 350, 1126, 328, 262, 271, 1655, 1958}, false},
      {"Tom said, \"Look!\" 123 caf\xC3\xA9 \xE2\x80\x94 done.\n\nThe end",
       {330, 306, 378, 1955, 386, 1987, 813, 1653, 1936, 1999, 2004, 2009, 1452, 1951, 198, 172, 1936, 2013, 1068, 1958,
        13, 13, 884, 982},
       false},
      {"It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of "
       "a wife.",
       {529, 341, 261, 631, 869, 524, 1942, 1204, 598, 261, 424, 1941, 312, 727, 916, 1955, 320, 261, 264, 997,
        474, 290, 1698, 305, 280, 261, 637, 1797, 494, 1937, 1955, 555, 297, 290, 793, 280, 261, 1379, 1958},
       false},
      {"Section 3(b) of P.L. 94-412 \xE2\x80\x94 \xE2\x80\x9C" "emergency powers\xE2\x80\x9D cost $1,234.56 in FY2016.",
       {361, 419, 305, 1936, 2009, 2007, 1957, 2006, 280, 518, 1958, 1987, 1958, 1936, 2024, 2015, 1972, 2015, 1999,
        2004, 1936, 2013, 351, 482, 269, 1954, 1739, 1423, 1970, 275, 541, 625, 1999, 1955, 2004, 2009, 2015, 1958,
        2021, 2022, 290, 594, 1995, 2004, 2008, 1999, 2022, 1958},
       false},
      {"  Line one.\r\nLine  two,   spaced.\r\n  ",
       {515, 605, 445, 1958, 16, 13, 1987, 605, 677, 1955, 496, 1939, 739, 1958, 16, 13}, true},
      {"na\xC3\xAFve fa\xC3\xA7" "ade \xE2\x80\x94 \xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD\xCE\xB9\xCE\xBA\xCE\xAC, "
       "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E, emoji \xF0\x9F\x99\x82.",
       {295, 1939, 198, 178, 314, 545, 198, 170, 618, 1936, 2013, 1936, 209, 152, 209, 190, 209, 190, 209, 186,
        209, 192, 209, 188, 209, 189, 209, 175, 1955, 1936, 233, 154, 168, 233, 159, 175, 235, 173, 161, 1955,
        1277, 1940, 1979, 1942, 1936, 243, 162, 156, 133, 1958},
       false},
  };
  return cases;
}

}  // namespace

TEST_CASE("spm_tokenizer: stories260K tokenizer_cases over the GGUF-embedded 512 vocabulary, exactly") {
  auto vocab = shared_vocabulary("data/models/stories260K/stories260K.gguf");
  if (vocab.pieces.empty()) return;
  CHECK(vocab.pieces.size() == 512);
  CHECK(vocab.bos_id == 1);
  CHECK(vocab.eos_id == 2);
  CHECK(vocab.unk_id == 0);
  const qroar::spm_tokenizer tok(std::move(vocab));
  for (const auto& c : qroar_test::stories260k_tokenizer_cases()) {
    CAPTURE(c.text);
    CHECK(tok.encode(c.text, c.bos) == c.expected);
    CHECK(tok.decode_all(c.expected) == c.text);
  }
}

TEST_CASE("spm_tokenizer: gutenberg-3m vocabulary against ids from python3-sentencepiece") {
  auto vocab = shared_vocabulary("data/models/gutenberg-3m/model-f32.gguf");
  if (vocab.pieces.empty()) return;
  CHECK(vocab.pieces.size() == 2048);
  const qroar::spm_tokenizer llama_cpp(vocab);  // llama.cpp behaviour: spaces kept as written
  vocab.remove_extra_whitespaces = true;        // the SentencePiece model's normalizer_spec
  const qroar::spm_tokenizer spm(vocab);
  for (const auto& c : gutenberg3m_python_cases()) {
    CAPTURE(c.text);
    CHECK(spm.encode(c.text, false) == c.ids);
    std::vector<int> with_bos{1};
    with_bos.insert(with_bos.end(), c.ids.begin(), c.ids.end());
    CHECK(spm.encode(c.text, true) == with_bos);
    if (c.has_extra_spaces) {
      CHECK(llama_cpp.encode(c.text, false) != c.ids);
    } else {
      CHECK(llama_cpp.encode(c.text, false) == c.ids);
      CHECK(spm.decode_all(with_bos) == c.text);
    }
  }
  CHECK(spm.encode("", false).empty());
  CHECK(spm.encode("   ", true) == std::vector<int>{1});
  CHECK(llama_cpp.encode("", true) == std::vector<int>{1});
}

TEST_CASE("spm_tokenizer: agrees with llama2c_tokenizer (tok512.bin) over the stories260K GGUF vocabulary") {
  auto vocab = shared_vocabulary("data/models/stories260K/stories260K.gguf");
  const auto bin = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  if (vocab.pieces.empty() || bin.empty()) return;
  const qroar::llama2c_tokenizer l2c(bin.string(), 512);
  for (int i = 0; i < 512; ++i) {  // docs/test-data.md: identical pieces (U+2581 written as ' ' in the .bin) and scores
    std::string piece = vocab.pieces[static_cast<std::size_t>(i)];
    for (std::size_t k; (k = piece.find("\xE2\x96\x81")) != std::string::npos;) piece.replace(k, 3, " ");
    if (i >= 3) CHECK(l2c.piece(i) == piece);
    CHECK(l2c.score(i) == vocab.scores[static_cast<std::size_t>(i)]);
  }
  const qroar::spm_tokenizer spm(std::move(vocab));
  CHECK(spm.encode(qroar_test::roundtrip_text(), true) == l2c.encode(qroar_test::roundtrip_text(), true));
  for (const auto& [name, sample] : qroar_test::sample_texts()) {
    CAPTURE(name);
    CHECK(spm.encode(sample, true) == l2c.encode(sample, true));
  }
}

TEST_CASE("spm_tokenizer: decode(encode(x)) round trip") {
  for (const char* file : {"data/models/stories260K/stories260K.gguf", "data/models/gutenberg-3m/model-f32.gguf"}) {
    CAPTURE(file);
    auto vocab = shared_vocabulary(file);
    if (vocab.pieces.empty()) return;
    const qroar::spm_tokenizer tok(std::move(vocab));
    const std::string& text = qroar_test::roundtrip_text();
    CHECK(tok.decode_all(tok.encode(text, true)) == text);
    CHECK(tok.decode_all(tok.encode(text, false)) == " " + text);
    CHECK(tok.decode_all(tok.encode("  two  spaces  ", true)) == "  two  spaces  ");
    for (const auto& [name, sample] : qroar_test::sample_texts()) {
      CAPTURE(name);
      CHECK(tok.decode_all(tok.encode(sample, true)) == sample);
    }
  }
}

TEST_CASE("spm_tokenizer: decode by token type, merges and byte fallback") {
  qroar::spm_vocabulary v;
  v.pieces = {"<unk>", "<s>", "</s>", "<0x41>", "\xE2\x96\x81hi", "x\xE2\x96\x81y", "<user>", "<0x0A>",
              "\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "!"};
  v.scores = {0, 0, 0, 0, -1, -2, 0, 0, -3, -4, -5, -6, -7};
  v.types = {2, 3, 3, 6, 1, 1, 4, 6, 1, 1, 1, 1, 1};
  const qroar::spm_tokenizer tok(v);
  CHECK(tok.decode(1, 4) == "hi");
  CHECK(tok.decode(4, 4) == " hi");
  CHECK(tok.decode(4, 5) == "x y");
  CHECK(tok.decode(4, 3) == "A");
  CHECK(tok.decode(1, 7) == "\n");
  CHECK(tok.decode(4, 1).empty());
  CHECK(tok.decode(4, 2).empty());
  CHECK(tok.decode(4, 0) == "\xE2\x96\x85");
  CHECK(tok.decode(4, 6) == "<user>");
  CHECK_THROWS_AS(tok.decode(4, 13), qroar::invalid_argument);
  // "▁hi!": ▁+h -> ▁h (-6), then ▁h+i -> ▁hi (-1).
  CHECK(tok.encode("hi!", false) == std::vector<int>{4, 12});
  CHECK(tok.encode("hi!", true) == std::vector<int>{1, 4, 12});
  // Byte fallback: A and LF have byte tokens; "z" has none and no one-byte piece -> <unk>.
  CHECK(tok.encode("A\nz", false) == std::vector<int>{8, 3, 7, 0});
  // Without the prefix.
  v.add_space_prefix = false;
  CHECK(qroar::spm_tokenizer(v).encode("hi", false) == std::vector<int>{9, 10});
  // Empty types: "<0xAB>" pieces are byte tokens, the rest normal.
  v.types.clear();
  const qroar::spm_tokenizer untyped(v);
  CHECK(untyped.decode(4, 3) == "A");
  CHECK(untyped.decode(4, 0) == "<unk>");
}

TEST_CASE("spm_tokenizer: invalid vocabularies") {
  qroar::spm_vocabulary v;
  CHECK_THROWS_AS(qroar::spm_tokenizer{v}, qroar::invalid_argument);
  v.pieces = {"<unk>", "<s>", "</s>", "a"};
  v.scores = {0, 0, 0};
  CHECK_THROWS_AS(qroar::spm_tokenizer{v}, qroar::invalid_argument);
  v.scores = {0, 0, 0, 0};
  v.types = {2, 3, 3};
  CHECK_THROWS_AS(qroar::spm_tokenizer{v}, qroar::invalid_argument);
  v.types = {2, 3, 3, 9};
  CHECK_THROWS_AS(qroar::spm_tokenizer{v}, qroar::invalid_argument);
  v.types = {2, 3, 3, 1};
  v.bos_id = 4;
  CHECK_THROWS_AS(qroar::spm_tokenizer{v}, qroar::invalid_argument);
  v.bos_id = -1;
  const qroar::spm_tokenizer no_bos(v);
  CHECK_THROWS_AS(no_bos.encode("a", true), qroar::invalid_argument);
  v.unk_id = -1;
  const qroar::spm_tokenizer no_unk(v);
  CHECK_THROWS_AS(no_unk.encode("b", false), qroar::invalid_argument);
}

#if defined(QROAR_HAS_SENTENCEPIECE)

TEST_CASE("sentencepiece_tokenizer: python3-sentencepiece ids and the SPM tokenizer on real texts") {
  const auto model = qroar_test::shared_file("data/models/gutenberg-3m/tokenizer.model");
  if (model.empty()) return;
  const qroar::sentencepiece_tokenizer sp(model.string());
  CHECK(sp.vocab_size() == 2048);
  CHECK(sp.bos_id() == 1);
  CHECK(sp.eos_id() == 2);
  CHECK(sp.unk_id() == 0);
  for (const auto& c : gutenberg3m_python_cases()) {
    CAPTURE(c.text);
    CHECK(sp.encode(c.text, false) == c.ids);
    if (!c.has_extra_spaces) CHECK(sp.decode_all(sp.encode(c.text, true)) == c.text);
  }

  auto vocab = shared_vocabulary("data/models/gutenberg-3m/model-f32.gguf");
  if (vocab.pieces.empty()) return;
  vocab.remove_extra_whitespaces = true;
  const qroar::spm_tokenizer spm(vocab);
  for (const auto& [name, sample] : qroar_test::sample_texts()) {
    CAPTURE(name);
    const auto expected = sp.encode(sample, true);
    const auto got = spm.encode(sample, true);
    CHECK(got.size() == expected.size());
    CHECK(got == expected);
    CHECK(spm.decode_all(got) == sp.decode_all(expected));
  }
  CHECK(sp.decode(1, 1).empty());
  CHECK(sp.decode(5, 3 + 0x41) == "A");
  CHECK_THROWS_AS(sp.decode(5, 2048), qroar::invalid_argument);
  CHECK_THROWS_AS(qroar::sentencepiece_tokenizer("/nonexistent/tokenizer.model"), qroar::io_error);
  const qroar_test::temp_file junk("junk.model", "not a sentencepiece model");
  CHECK_THROWS_AS(qroar::sentencepiece_tokenizer(junk.path.string()), qroar::format_error);
}

#else

TEST_CASE("sentencepiece_tokenizer: not built") {
  MESSAGE("SKIPPED: libsentencepiece was not found; the sentencepiece_tokenizer tests did not run");
}

#endif
