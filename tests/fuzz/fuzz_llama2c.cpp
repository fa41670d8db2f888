// SPDX-License-Identifier: MIT
// llama2.c version-0 checkpoints: format detection, header sanity against the file size, and the full load
// (finite-weights check included).
#include <qroar/io/llama2c.hpp>
#include <qroar/io/load_model.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  (void)qroar::is_llama2c_file(path);
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::detect_model_format(path); });
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::load_llama2c(path); });
  return 0;
}
