// SPDX-License-Identifier: MIT
// SIMD kernels (xsimd functors, each with a scalar _ref twin): attention, RMSNorm, SwiGLU, log-sum-exp, GEMM,
// dequantization and quantization of ggml blocks and RTN groups.
#pragma once

#include "kernels/attention.hpp"
#include "kernels/dequantize.hpp"
#include "kernels/gemm.hpp"
#include "kernels/logsumexp.hpp"
#include "kernels/norm.hpp"
#include "kernels/quantize.hpp"
#include "kernels/swiglu.hpp"
