// SPDX-License-Identifier: MIT
// The SentencePiece-style vocabulary embedded in a GGUF file (tokenizer.ggml.*), fed to spm_tokenizer, which then
// encodes a fixed text and decodes every id it produced and every id of the vocabulary.
#include <qroar/io/gguf.hpp>
#include <qroar/io/load_tokenizer.hpp>
#include <qroar/io/spm_tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static qroar_fuzz::memory_file file;
  const std::string& path = file.set(data, size);
  qroar_fuzz::expect_only_qroar_errors([&] {
    const qroar::spm_tokenizer tok(qroar::gguf_vocabulary(qroar::gguf_file::open(path)));
    const std::vector<int> ids = tok.encode("Once upon a time, \xC3\xA9t\xC3\xA9  \xF0\x9F\x98\x80 \xFF\x80 42\n", true);
    (void)tok.decode_all(ids);
    for (int id = 0; id < tok.vocab_size() && id < 4096; ++id) (void)tok.decode(tok.bos_id(), id);
  });
  return 0;
}
