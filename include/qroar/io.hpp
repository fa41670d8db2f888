// SPDX-License-Identifier: MIT
// I/O module: model files (llama2.c, GGUF, safetensors / Hugging Face folders), tokenizers, RoPE config JSON,
// atomic writers. (qroar/io/sentencepiece_tokenizer.hpp needs libsentencepiece, qroar/io/hf_tokenizer.hpp PCRE2 and utf8proc;
// they are included separately.)
#pragma once

#include "io/atomic_folder.hpp"
#include "io/atomic_write.hpp"
#include "io/bpe_model.hpp"
#include "io/gguf.hpp"
#include "io/gguf_model.hpp"
#include "io/hf_gguf_vocabulary.hpp"
#include "io/hf_model.hpp"
#include "io/llama2c.hpp"
#include "io/llama2c_tokenizer.hpp"
#include "io/load_model.hpp"
#include "io/load_tokenizer.hpp"
#include "io/mapped_file.hpp"
#include "io/read_file.hpp"
#include "io/rope_json.hpp"
#include "io/safetensors.hpp"
#include "io/spm_tokenizer.hpp"
#include "io/temp_files.hpp"
#include "io/text.hpp"
#include "io/text_tokens.hpp"
#include "io/tokenizer.hpp"
#include "io/utf8.hpp"
