// Whether a test case of this executable skipped for lack of ../shared (set by shared_file): the executable then
// exits with skip_return_code when nothing failed, which CTest (SKIP_RETURN_CODE) reports as "Skipped", not
// "Passed".
#pragma once

namespace qroar_test {

inline constexpr int skip_return_code = 77;

inline bool& skipped_for_missing_shared() {
  static bool skipped = false;
  return skipped;
}

}  // namespace qroar_test
