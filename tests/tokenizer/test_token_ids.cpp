#include <qroar/io/tokenizer.hpp>

#include "tokenizer_test_support.hpp"

using qroar_test::temp_file;

namespace {

// The offset reported for the first bad item of `bytes`, or -1 when it parses.
long long error_offset(const std::string& bytes, int vocab_size = 0) {
  const temp_file f("ids_error.txt", bytes);
  try {
    (void)qroar::read_token_ids(f.path.string(), vocab_size);
  } catch (const qroar::format_error& e) {
    CHECK(e.file() == f.path.string());
    CHECK(std::string(e.what()).find(f.path.string()) != std::string::npos);
    return static_cast<long long>(e.offset());
  }
  return -1;
}

}  // namespace

TEST_CASE("read_token_ids: whitespace-separated decimal ids") {
  const temp_file f("ids_ok.txt", "1 403 407\n261\t378\r\n  432\v0\f7\n\n");
  CHECK(qroar::read_token_ids(f.path.string()) == std::vector<int>{1, 403, 407, 261, 378, 432, 0, 7});
  CHECK(qroar::read_token_ids(f.path.string(), 433) == std::vector<int>{1, 403, 407, 261, 378, 432, 0, 7});

  const temp_file empty("ids_empty.txt", "");
  CHECK(qroar::read_token_ids(empty.path.string()).empty());
  const temp_file blank("ids_blank.txt", " \n\t\r\n");
  CHECK(qroar::read_token_ids(blank.path.string()).empty());

  const temp_file largest("ids_max.txt", "2147483647 0000012");
  CHECK(qroar::read_token_ids(largest.path.string()) == std::vector<int>{2147483647, 12});
}

TEST_CASE("read_token_ids: bad items are format errors at their byte offset") {
  CHECK(error_offset("1 2 x3 4") == 4);
  CHECK(error_offset("1 2 3x 4") == 4);
  CHECK(error_offset("10\n-1") == 3);
  CHECK(error_offset("+5") == 0);
  CHECK(error_offset("1,2") == 0);
  CHECK(error_offset("1 2.0") == 2);
  CHECK(error_offset("7 2147483648") == 2);
  CHECK(error_offset("7 99999999999999999999999") == 2);
  CHECK(error_offset("1 2 3", 3) == 4);   // 3 is out of range for a vocabulary of 3
  CHECK(error_offset("0 1 2", 3) == -1);
  const temp_file f("ids_msg.txt", "5 six");
  CHECK_THROWS_WITH_AS(qroar::read_token_ids(f.path.string()),
                       doctest::Contains("at byte offset 2: token id 'six' is not a non-negative decimal integer"),
                       qroar::format_error);
}

TEST_CASE("read_token_ids: a missing file is an io_error") {
  CHECK_THROWS_AS(qroar::read_token_ids("/nonexistent/qroar/ids.txt"), qroar::io_error);
}
