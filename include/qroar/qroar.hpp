// SPDX-License-Identifier: MIT
// qroar: the whole public API (the SentencePiece wrapper, which needs libsentencepiece, is
// qroar/io/sentencepiece_tokenizer.hpp and linked through qroar::sentencepiece).
#pragma once

#include "config.hpp"
#include "error.hpp"
#include "tensor.hpp"
#include "version.hpp"

#include "rope.hpp"
#include "io.hpp"
#include "model.hpp"
#include "quant.hpp"
#include "diag.hpp"
#include "kernels.hpp"
#include "search.hpp"
