// SPDX-License-Identifier: MIT
// Quantization module: spec parser, RTN, GPTQ, ggml block formats, KV-cache / activation quantization, the
// equivariance check.
#pragma once

#include "quant/equivariance.hpp"
#include "quant/ggml_blocks.hpp"
#include "quant/ggml_types.hpp"
#include "quant/gptq.hpp"
#include "quant/kv_cache.hpp"
#include "quant/rtn.hpp"
#include "quant/spec.hpp"
#include "quant/weights.hpp"
