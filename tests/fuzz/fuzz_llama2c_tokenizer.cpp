// SPDX-License-Identifier: MIT
// llama2.c tokenizer.bin. The vocabulary size comes from the model header in real use; here it is taken from the
// first two input bytes (1..1024), the rest being the file. The tokenizer then encodes a fixed text and decodes
// what it produced.
#include <qroar/io/llama2c_tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const int vocab_size = 1 + ((data[0] | (data[1] << 8)) % 1024);
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data + 2, size - 2);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const qroar::llama2c_tokenizer tok(path, vocab_size);
    const std::vector<int> ids = tok.encode("Once upon a time, \xC3\xA9t\xC3\xA9  \xF0\x9F\x98\x80 \xFF\x80 42\n", true);
    (void)tok.decode_all(ids);
    for (int id = 0; id < tok.vocab_size(); ++id) (void)tok.decode(tok.bos_id(), id);
  });
  return 0;
}
