// doctest's main, plus the skip status (exit 77 when test cases skipped for lack of ../shared and none failed) and
// one switch: QROAR_TEST_SKIP_SLOW=1 leaves out the test cases of the suite "slow" (set by
// the sanitizer stage of .ci/run, where instrumented kernels run ~50x slower; the Release stage runs them all).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "skip_status.hpp"

int main(int argc, char** argv) {
  doctest::Context context;
  if (const char* skip = std::getenv("QROAR_TEST_SKIP_SLOW"); skip != nullptr && std::string(skip) != "" &&
                                                               std::string(skip) != "0")
    context.addFilter("test-suite-exclude", "slow");
  context.applyCommandLine(argc, argv);
  const int rc = context.run();
  // nothing failed, but a test case could not run without ../shared: CTest's SKIP_RETURN_CODE reports it skipped
  if (rc == 0 && !context.shouldExit() && qroar_test::skipped_for_missing_shared()) {
    std::fprintf(stderr, "*** SKIPPED: test cases that need ../shared did not run (exit %d) ***\n",
                 qroar_test::skip_return_code);
    return qroar_test::skip_return_code;
  }
  return rc;
}
