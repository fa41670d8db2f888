// SPDX-License-Identifier: MIT
// A Hugging Face tokenizer.json fed to hf_tokenizer, which then encodes a fixed text (with invalid UTF-8 and a
// special-token string) and decodes every id it produced and the first ids of the vocabulary.
#include <qroar/io/hf_tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const auto tok = qroar::hf_tokenizer::from_file(path);
    const std::vector<int> ids =
        tok.encode("Once upon a time, \xC3\xA9t\xC3\xA9  \xF0\x9F\x98\x80 \xFF\x80 42 it's<|end|>\r\n\tab ab", true);
    (void)tok.decode_all(ids);
    for (int id = 0; id < tok.vocab_size() && id < 4096; ++id) (void)tok.decode(tok.bos_id(), id);
  });
  return 0;
}
