// SPDX-License-Identifier: MIT
// Search module: band scales, the Q-ROAR search, the scales JSON file, patching quantized GGUF files.
#pragma once

#include "search/band_scales.hpp"
#include "search/patch_gguf.hpp"
#include "search/scales_json.hpp"
#include "search/search.hpp"
#include "search/search_windows.hpp"
