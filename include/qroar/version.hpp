// qroar: Q-ROAR band-wise W_Q/W_K rescaling for RoPE interpolation under quantization.
// SPDX-License-Identifier: MIT
#pragma once

#define QROAR_VERSION_MAJOR 0
#define QROAR_VERSION_MINOR 1
#define QROAR_VERSION_PATCH 0
#define QROAR_VERSION (QROAR_VERSION_MAJOR * 10000 + QROAR_VERSION_MINOR * 100 + QROAR_VERSION_PATCH)

namespace qroar {
inline namespace v0 {
inline constexpr int version_major = QROAR_VERSION_MAJOR;
inline constexpr int version_minor = QROAR_VERSION_MINOR;
inline constexpr int version_patch = QROAR_VERSION_PATCH;
inline constexpr const char* version_string = "0.1.0";
}  // namespace v0
}  // namespace qroar
