// SPDX-License-Identifier: MIT
// A Hugging Face folder: the input is split into config.json and model.safetensors. Layout of an input:
// u32 little-endian length n of config.json | n bytes of config.json | model.safetensors (the rest).
#include <qroar/io/hf_model.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  std::size_t n = static_cast<std::size_t>(data[0]) | (static_cast<std::size_t>(data[1]) << 8) |
                  (static_cast<std::size_t>(data[2]) << 16) | (static_cast<std::size_t>(data[3]) << 24);
  data += 4;
  size -= 4;
  if (n > size) n = size;
  const std::string& dir = qroar_fuzz::scratch_dir();
  qroar_fuzz::write_file(dir + "/config.json", data, n);
  qroar_fuzz::write_file(dir + "/model.safetensors", data + n, size - n);
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::load_hf_model(dir); });
  return 0;
}
