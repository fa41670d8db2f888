// SPDX-License-Identifier: MIT
// safetensors reader: header length, JSON, dtypes, shapes, offsets; then every tensor converted to float.
#include <qroar/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const qroar::safetensors_file f(path);
    for (const auto& t : f.tensors()) {
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.read(t.name); });
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.read_matrix(t.name); });
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.read_vector(t.name); });
    }
  });
  return 0;
}
