// SPDX-License-Identifier: MIT
// GGUF reader: gguf_file::open (header, metadata, tensor infos, data layout), the typed getters, the writer's
// header of what was read, dequantization of every tensor, and the llama model mapping.
#include <qroar/io/gguf.hpp>
#include <qroar/io/gguf_model.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const qroar::gguf_file f = qroar::gguf_file::open(path);
    for (const auto& kv : f.metadata()) {
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.get_int(kv.key); });
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.get_float(kv.key); });
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.get_string(kv.key); });
      qroar_fuzz::expect_only_qroar_errors([&] { (void)kv.value.as_uint(); });
      if (kv.value.is_array())
        qroar_fuzz::expect_only_qroar_errors([&] {
          (void)kv.value.to_floats();
          (void)kv.value.to_ints();
        });
    }
    (void)qroar::gguf_writer::from(f).header();
    for (const auto& t : f.tensors())
      qroar_fuzz::expect_only_qroar_errors([&] { (void)f.dequantize(t); });
    (void)qroar::llama_model_from_gguf(f);
  });
  return 0;
}
