// SPDX-License-Identifier: MIT
#pragma once

// Optional: needs libsentencepiece (Debian libsentencepiece-dev). With CMake link qroar::sentencepiece, which
// exists when pkg-config finds `sentencepiece` and defines QROAR_HAS_SENTENCEPIECE=1. Without CMake, the
// header is usable when <sentencepiece_processor.h> is on the include path (link -lsentencepiece).
#if !defined(QROAR_HAS_SENTENCEPIECE) && defined(__has_include)
#if __has_include(<sentencepiece_processor.h>)
#define QROAR_HAS_SENTENCEPIECE 1
#endif
#endif

#if !defined(QROAR_HAS_SENTENCEPIECE) || !QROAR_HAS_SENTENCEPIECE
#error "qroar/io/sentencepiece_tokenizer.hpp needs libsentencepiece: install libsentencepiece-dev and link qroar::sentencepiece (it defines QROAR_HAS_SENTENCEPIECE=1); qroar::spm_tokenizer works without it"
#else

#include <sentencepiece_processor.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../error.hpp"
#include "tokenizer.hpp"

namespace qroar {
inline namespace v0 {

// A SentencePiece model file (`tokenizer.model`) through libsentencepiece: encode is
// SentencePieceProcessor::Encode (the model's own normalizer, whitespace handling and BPE or unigram
// algorithm), plus BOS when asked.
class sentencepiece_tokenizer final : public tokenizer {
 public:
  // Throws io_error when the file cannot be opened, format_error (offset 0) when libsentencepiece rejects it.
  explicit sentencepiece_tokenizer(const std::string& model_path)
      : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
    if (!std::ifstream(model_path, std::ios::binary)) throw io_error(model_path + ": cannot open");
    const auto status = processor_->Load(model_path);
    if (!status.ok()) throw format_error(model_path, "", 0, "libsentencepiece cannot load it: " + status.ToString());
  }

  // Throws invalid_argument when libsentencepiece reports an error, or BOS is asked for and the model has none.
  std::vector<int> encode(const std::string& text, bool bos) const override {
    std::vector<int> ids;
    const auto status = processor_->Encode(text, &ids);
    if (!status.ok()) throw invalid_argument("sentencepiece_tokenizer::encode: " + status.ToString());
    if (bos) {
      if (bos_id() < 0) throw invalid_argument("sentencepiece_tokenizer::encode: BOS requested but the model has none");
      ids.insert(ids.begin(), bos_id());
    }
    return ids;
  }

  // byte -> the byte; control -> nothing; unknown -> " ⁇ " (libsentencepiece's default surface); other
  // pieces with U+2581 as ' '. A leading space right after BOS is dropped.
  std::string decode(int prev_token, int token) const override {
    detail::check_token_id(token, vocab_size(), "sentencepiece_tokenizer::decode");
    const std::string& piece = processor_->IdToPiece(token);
    std::string s;
    if (processor_->IsByte(token)) {
      const int b = detail::byte_piece_value(piece);
      s = b >= 0 ? std::string(1, static_cast<char>(b)) : piece;
    } else if (processor_->IsControl(token)) {
      return s;
    } else if (processor_->IsUnknown(token)) {
      s = " \xE2\x81\x87 ";
    } else {
      for (std::size_t i = 0; i < piece.size(); ++i) {
        if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
          s += ' ';
          i += 2;
        } else {
          s += piece[i];
        }
      }
    }
    if (prev_token >= 0 && prev_token == bos_id() && !s.empty() && s[0] == ' ') s.erase(0, 1);
    return s;
  }

  int bos_id() const override { return processor_->bos_id(); }
  int eos_id() const override { return processor_->eos_id(); }
  int vocab_size() const override { return processor_->GetPieceSize(); }
  int unk_id() const { return processor_->unk_id(); }
  const sentencepiece::SentencePieceProcessor& processor() const noexcept { return *processor_; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;  // not movable itself
};

}  // namespace v0
}  // namespace qroar

#endif  // QROAR_HAS_SENTENCEPIECE
