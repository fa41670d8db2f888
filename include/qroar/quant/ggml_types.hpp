// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>

#include "../config.hpp"
#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// ggml tensor types, numbered as in ggml/include/ggml.h (these ids are stored in GGUF tensor infos).
enum class ggml_type : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  bf16 = 30,
};

struct ggml_type_traits {
  const char* name;
  std::uint32_t block_size;  // elements per block (1 for plain float types)
  std::uint32_t type_size;   // bytes per block
  bool supported;            // qroar can dequantize it
};

// Traits of a ggml type id, or nullptr for an id qroar does not know.
inline const ggml_type_traits* ggml_traits(std::uint32_t id) noexcept {
  static const ggml_type_traits f32{"f32", 1, 4, true}, f16{"f16", 1, 2, true}, bf16{"bf16", 1, 2, true},
      q4_0{"q4_0", 32, 18, true}, q4_1{"q4_1", 32, 20, true}, q5_0{"q5_0", 32, 22, true}, q5_1{"q5_1", 32, 24, true},
      q8_0{"q8_0", 32, 34, true}, q8_1{"q8_1", 32, 36, false}, q2_k{"q2_K", 256, 84, false},
      q3_k{"q3_K", 256, 110, false}, q4_k{"q4_K", 256, 144, true}, q5_k{"q5_K", 256, 176, true},
      q6_k{"q6_K", 256, 210, true}, q8_k{"q8_K", 256, 292, false};
  switch (id) {
    case 0: return &f32;
    case 1: return &f16;
    case 2: return &q4_0;
    case 3: return &q4_1;
    case 6: return &q5_0;
    case 7: return &q5_1;
    case 8: return &q8_0;
    case 9: return &q8_1;
    case 10: return &q2_k;
    case 11: return &q3_k;
    case 12: return &q4_k;
    case 13: return &q5_k;
    case 14: return &q6_k;
    case 15: return &q8_k;
    case 30: return &bf16;
    default: return nullptr;
  }
}

inline const ggml_type_traits& ggml_traits(ggml_type t) {
  const auto* tr = ggml_traits(static_cast<std::uint32_t>(t));
  QROAR_ASSERT(tr != nullptr, "unknown ggml type");
  return *tr;
}

inline const char* to_string(ggml_type t) { return ggml_traits(t).name; }

inline ggml_type ggml_type_from_string(const std::string& name) {
  for (std::uint32_t id = 0; id < 40; ++id) {
    const auto* tr = ggml_traits(id);
    if (!tr) continue;
    std::string n = tr->name, lower;
    for (char c : n) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    std::string want;
    for (char c : name) want += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (lower == want) return static_cast<ggml_type>(id);
  }
  throw invalid_argument("unknown ggml type '" + name + "'");
}

// Bytes of one row of n elements; n must be a multiple of the block size (checked by callers that parse files).
inline std::uint64_t ggml_row_size(ggml_type t, std::uint64_t n) {
  const auto& tr = ggml_traits(t);
  QROAR_ASSERT(n % tr.block_size == 0, "row length is not a multiple of the block size");
  return n / tr.block_size * tr.type_size;
}

}  // namespace v0
}  // namespace qroar
