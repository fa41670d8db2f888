// SPDX-License-Identifier: MIT
// Model module: LLaMA config and weights, the forward pass, perplexity evaluation, pair-layout conversion.
#pragma once

#include "model/forward.hpp"
#include "model/llama_config.hpp"
#include "model/llama_weights.hpp"
#include "model/perplexity.hpp"
#include "model/qk_layout.hpp"
