// SPDX-License-Identifier: MIT
// RoPE settings of a config.json (parse_hf_rope: rope_scaling / rope_parameters, every scaling type) and the
// whole Llama config (parse_hf_llama_config), from a JSON file as the CLI's --rope-config reads it.
#include <qroar/io/hf_model.hpp>
#include <qroar/io/rope_json.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const nlohmann::json j = qroar::detail::hf_io::parse_json_file(path);
    qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::parse_hf_rope(j, path); });
    qroar_fuzz::expect_only_qroar_errors([&] { (void)qroar::parse_hf_llama_config(j, path); });
  });
  return 0;
}
