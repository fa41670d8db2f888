// SPDX-License-Identifier: MIT
// Token-id files (ASCII decimal ids separated by whitespace), without and with a vocabulary bound.
#include <qroar/io/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::read_token_ids(path); });
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::read_token_ids(path, 512); });
  return 0;
}
