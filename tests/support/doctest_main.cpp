// doctest's main, plus one switch: QROAR_TEST_SKIP_SLOW=1 leaves out the test cases of the suite "slow" (set by
// the sanitizer stage of .ci/run, where instrumented kernels run ~50x slower; the Release stage runs them all).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  doctest::Context context;
  if (const char* skip = std::getenv("QROAR_TEST_SKIP_SLOW"); skip != nullptr && std::string(skip) != "" &&
                                                               std::string(skip) != "0")
    context.addFilter("test-suite-exclude", "slow");
  context.applyCommandLine(argc, argv);
  return context.run();
}
