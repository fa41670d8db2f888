// Force-included in every test translation unit: qroar's programmer-error assertions throw, so tests
// can check them with CHECK_THROWS_AS(..., qroar_test::assertion_failure).
#pragma once
#include <stdexcept>
#include <string>

namespace qroar_test {
struct assertion_failure : std::logic_error {
  using std::logic_error::logic_error;
};
}  // namespace qroar_test

#define QROAR_ASSERT(cond, msg)                                                                   \
  do {                                                                                            \
    if (!(cond)) throw ::qroar_test::assertion_failure(std::string(#cond) + ": " + (msg));       \
  } while (false)
