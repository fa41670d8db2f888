// SPDX-License-Identifier: MIT
// Internals shared by the model readers and writers (io/llama2c.hpp, io/safetensors.hpp, io/hf_model.hpp):
// overflow-checked size arithmetic, the byte-order check and the finite-weights check.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {
namespace detail {
namespace model_io {

// The readers reinterpret little-endian file bytes as host floats and integers.
inline bool host_is_little_endian() noexcept {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

inline void require_little_endian_host(const std::string& file) {
  if (!host_is_little_endian()) throw unsupported(file + ": model files are little-endian; big-endian hosts are not supported");
}

// out = a * b; returns false (out untouched) when the product does not fit in 64 bits.
inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

// out = a + b; returns false (out untouched) on overflow.
inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (b > std::numeric_limits<std::uint64_t>::max() - a) return false;
  out = a + b;
  return true;
}

inline std::uint32_t read_u32_le(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

inline std::int32_t read_i32_le(const std::uint8_t* p) noexcept {
  const std::uint32_t u = read_u32_le(p);
  std::int32_t v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

inline std::uint64_t read_u64_le(const std::uint8_t* p) noexcept {
  return static_cast<std::uint64_t>(read_u32_le(p)) | (static_cast<std::uint64_t>(read_u32_le(p + 4)) << 32);
}

// Throws numeric_error naming `tensor` and the (row, column) of the first NaN or infinity in the row-major
// (rows, cols) block `data`. `file` may be empty (a model in memory).
inline void check_finite(const float* data, std::uint64_t rows, std::uint64_t cols, const std::string& file,
                         const std::string& tensor) {
  const std::uint64_t n = rows * cols;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (!std::isfinite(data[i])) {
      const std::uint64_t r = cols > 0 ? i / cols : 0, c = cols > 0 ? i % cols : 0;
      throw numeric_error((file.empty() ? std::string() : file + ": ") + "tensor '" + tensor + "': element " +
                          std::to_string(i) + " (row " + std::to_string(r) + ", column " + std::to_string(c) +
                          ") is " + (std::isnan(data[i]) ? "NaN" : "infinite"));
    }
  }
}

}  // namespace model_io
}  // namespace detail
}  // namespace v0
}  // namespace qroar
