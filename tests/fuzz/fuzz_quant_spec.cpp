// SPDX-License-Identifier: MIT
// Quantization spec strings (rtn / gptq / ggml / kv / act parts joined with '+').
#include <qroar/quant/spec.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::parse_quant_spec(spec); });
  return 0;
}
