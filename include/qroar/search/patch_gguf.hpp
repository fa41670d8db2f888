// SPDX-License-Identifier: MIT
// Band scales applied to a quantized GGUF after quantization: multiply the stored fp16 block scales of the
// affected W_Q / W_K rows, codes untouched (docs/formulas.md §5.3, item 2).
//
// A ggml block holds consecutive elements of one row (docs/formulas.md §3), and a K-quant super-block of 256 lies inside
// one row too, so scaling row r by g is scaling every block of row r:
//
//   type                 value                          multiply by g          unchanged
//   q8_0 q4_0 q5_0       d * q'                         d                      qs, qh
//   q4_1 q5_1            d * q + m                      d, m                   qs, qh
//   q4_K q5_K            d * sc_k * q - dmin * m_k      d, dmin (super-block)  6-bit sc_k, m_k; qs, qh
//   q6_K                 d * sc_k * (q - 32)            d                      int8 sc_k; ql, qh
//   f32 f16 bf16         x                              x (rounded to the type)
//
// Precision: a scale s becomes fp16(g * s), with g * s a float product. Round to nearest gives
// |fp16(g*s) - g*s| <= 2^-11 |g*s| in the fp16 normal range [2^-14, 65504] (plus 2^-24 for the float product:
// patch_gguf_scale_tolerance), so every dequantized value moves by at most that relative amount of each term it is
// made of; for g = 2^k both products are exact and the patched file dequantizes to exactly 2^k times the original.
// Policy at the range ends:
//   |g * s| > 65504 (fp16 overflow)          numeric_error naming tensor, row, block and field; nothing is written
//   s != 0 and fp16(g * s) == 0 (underflow)  numeric_error as above
//   s normal, fp16(g * s) subnormal          accepted (absolute error <= 2^-25, below any weight's quantization
//                                            step), counted in gguf_patch_report::subnormal_scales with the first
//                                            sites in warnings; gguf_patch_options::refuse_subnormal makes it an error
// f16 / bf16 value tensors: only overflow is refused (individual weights may be tiny).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../detail/half.hpp"
#include "../error.hpp"
#include "../io/gguf.hpp"
#include "../io/gguf_model.hpp"
#include "../quant/ggml_blocks.hpp"
#include "band_scales.hpp"

namespace qroar {
inline namespace v0 {

// Relative error bound of one patched fp16 scale in the normal range: fp16 round to nearest (2^-11) after a float
// product (2^-24).
inline constexpr double patch_gguf_scale_tolerance = 0x1p-11 + 0x1p-24;
// Absolute error bound of a patched scale whose result is an fp16 subnormal: half the subnormal spacing 2^-24.
inline constexpr double patch_gguf_subnormal_tolerance = 0x1p-25;
// Largest finite fp16 value and smallest normal one.
inline constexpr float fp16_max_value = 65504.0f;
inline constexpr float fp16_min_normal = 0x1p-14f;

struct gguf_patch_options {
  bool refuse_subnormal = false;  // a normal scale that would become subnormal is an error instead of a warning
  // Written as the output's llama.rope.scaling.* keys (set_gguf_rope_scaling with this scaling), replacing the
  // input's; the input's keys are kept when unset.
  std::optional<rope_scaling> record_scaling;
  int original_ctx = 0;  // L0 recorded with record_scaling when it names none (0: the file's)
};

struct gguf_patch_report {
  int tensors = 0;                   // W_Q / W_K weights (and biases) rewritten
  std::uint64_t rows = 0;            // rows whose factor is not 1
  std::uint64_t scales = 0;          // stored fp16 scales (d, m, dmin) multiplied
  std::uint64_t values = 0;          // f32 / f16 / bf16 elements multiplied
  std::uint64_t subnormal_scales = 0;
  double max_scale_rounding = 0.0;   // max |fp16(g s) - g s| / |g s| over patched normal scales
  std::vector<std::string> warnings;
};

namespace detail {
namespace patch_gguf {

// Byte offsets of the fp16 scales of one block of `type` (empty for the plain float types).
inline std::vector<std::size_t> scale_offsets(ggml_type type) {
  switch (type) {
    case ggml_type::q8_0: return {offsetof(block_q8_0, d)};
    case ggml_type::q4_0: return {offsetof(block_q4_0, d)};
    case ggml_type::q5_0: return {offsetof(block_q5_0, d)};
    case ggml_type::q4_1: return {offsetof(block_q4_1, d), offsetof(block_q4_1, m)};
    case ggml_type::q5_1: return {offsetof(block_q5_1, d), offsetof(block_q5_1, m)};
    case ggml_type::q4_k: return {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)};
    case ggml_type::q5_k: return {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)};
    case ggml_type::q6_k: return {offsetof(block_q6_K, d)};
    default: return {};
  }
}
inline const char* scale_name(ggml_type type, std::size_t index) {
  if (index == 0) return "d";
  return type == ggml_type::q4_1 || type == ggml_type::q5_1 ? "m" : "dmin";
}

struct site {
  const std::string* file;
  const std::string* tensor;
  std::int64_t row;
};

inline std::string where(const site& s, std::int64_t block, const char* field) {
  std::string w = *s.file + ": tensor '" + *s.tensor + "': row " + std::to_string(s.row);
  if (block >= 0) w += ", block " + std::to_string(block);
  return w + ", " + field;
}

inline std::uint16_t load_u16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline void store_u16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v & 0xFFu);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

// fp16(g * s) for one stored scale, with the range policy of the file comment.
inline std::uint16_t scale_fp16(std::uint16_t h, float g, const site& s, std::int64_t block, const char* field,
                                const gguf_patch_options& o, gguf_patch_report& r) {
  const float v = fp16_to_fp32(h);
  if (!std::isfinite(v)) throw numeric_error(where(s, block, field) + " is not finite in the input");
  const float x = g * v;
  if (std::fabs(x) > fp16_max_value)
    throw numeric_error(where(s, block, field) + " = " + std::to_string(v) + " times factor " + std::to_string(g) +
                        " = " + std::to_string(x) + " exceeds the fp16 maximum 65504");
  const std::uint16_t out = fp32_to_fp16(x);
  const float back = fp16_to_fp32(out);
  ++r.scales;
  if (v != 0.0f && back == 0.0f)
    throw numeric_error(where(s, block, field) + " = " + std::to_string(v) + " times factor " + std::to_string(g) +
                        " underflows fp16 to zero");
  if (std::fabs(back) < fp16_min_normal) {
    if (back != 0.0f && std::fabs(v) >= fp16_min_normal) {
      if (o.refuse_subnormal)
        throw numeric_error(where(s, block, field) + " = " + std::to_string(v) + " times factor " + std::to_string(g) +
                            " becomes an fp16 subnormal (relative precision below 2^-11)");
      ++r.subnormal_scales;
      if (r.warnings.size() < 8)
        r.warnings.push_back(where(s, block, field) + " became an fp16 subnormal (" + std::to_string(back) + ")");
    }
  } else {
    r.max_scale_rounding = std::max(r.max_scale_rounding, std::fabs(static_cast<double>(back) - x) / std::fabs(x));
  }
  return out;
}

// Multiplies row `row` (n elements of `type` at p) by g: its block scales, or its values for f32 / f16 / bf16.
inline void scale_row(ggml_type type, std::uint8_t* p, std::int64_t n, float g, const site& s,
                      const gguf_patch_options& o, gguf_patch_report& r) {
  switch (type) {
    case ggml_type::f32:
      for (std::int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        const float x = v * g;
        if (std::isfinite(v) && !std::isfinite(x))
          throw numeric_error(where(s, -1, ("element " + std::to_string(i)).c_str()) + " overflows float32");
        std::memcpy(p + 4 * i, &x, 4);
      }
      r.values += static_cast<std::uint64_t>(n);
      return;
    case ggml_type::f16:
    case ggml_type::bf16: {
      const bool half = type == ggml_type::f16;
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint16_t h = load_u16(p + 2 * i);
        const float v = half ? fp16_to_fp32(h) : bf16_to_fp32(h);
        const float x = v * g;
        const std::uint16_t out = half ? fp32_to_fp16(x) : fp32_to_bf16(x);
        const float back = half ? fp16_to_fp32(out) : bf16_to_fp32(out);
        if (std::isfinite(v) && !std::isfinite(back))
          throw numeric_error(where(s, -1, ("element " + std::to_string(i)).c_str()) + " = " + std::to_string(v) +
                              " times factor " + std::to_string(g) + " overflows " + to_string(type));
        store_u16(p + 2 * i, out);
      }
      r.values += static_cast<std::uint64_t>(n);
      return;
    }
    default: break;
  }
  const auto offsets = scale_offsets(type);
  if (offsets.empty())
    throw unsupported(*s.file + ": tensor '" + *s.tensor + "': cannot patch ggml type " + to_string(type));
  const auto& tr = ggml_traits(type);
  const std::int64_t blocks = n / static_cast<std::int64_t>(tr.block_size);
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::uint8_t* block = p + static_cast<std::size_t>(b) * tr.type_size;
    for (std::size_t k = 0; k < offsets.size(); ++k)
      store_u16(block + offsets[k], scale_fp16(load_u16(block + offsets[k]), g, s, b, scale_name(type, k), o, r));
  }
}

}  // namespace patch_gguf
}  // namespace detail

// Writes `out`: the GGUF `in` (llama architecture, interleaved W_Q / W_K rows as llama.cpp stores them) with the
// band scales `s` folded into blk.N.attn_q / attn_k (and .bias when present) by multiplying stored block scales (see
// the file comment for the formats and the range policy). Row factors come from band_row_factors on the file's
// config (llama_config_from_gguf): row h*hd + 2j + t of W_Q gets the query factor of pair j's band for KV head
// h / n_rep, row k*hd + 2j + t of W_K the key factor of KV head k; factor-1 rows are not touched. Every other byte
// of the file (metadata, other tensors, padding) is copied unchanged, except the RoPE keys when
// options.record_scaling rewrites them (set_gguf_rope_scaling: scaling keys, freq_base, context_length) and a
// general.file_type that does not describe the tensors (set_gguf_file_type). The output is written atomically and
// validated; `in` is never modified.
// Errors: invalid_argument (out names the same file as in; scales made for another model shape), numeric_error
// (fp16 overflow or underflow, naming tensor, row, block and field), unsupported (a W_Q / W_K type qroar cannot
// patch, a non-llama file), format_error (a malformed input).
inline gguf_patch_report patch_gguf_band_scales(const gguf_file& file, const band_scales& s, const std::string& out,
                                                const gguf_patch_options& options = {}) {
  namespace fs = std::filesystem;
  namespace pg = detail::patch_gguf;
  const std::string& in = file.path();
  {
    std::error_code ec, ec_in, ec_out;
    const fs::path a = fs::weakly_canonical(in, ec_in), b = fs::weakly_canonical(out, ec_out);
    const bool same = (fs::exists(out, ec) && fs::equivalent(in, out, ec)) || (!ec_in && !ec_out && a == b) || in == out;
    if (same) throw invalid_argument("refusing to patch " + in + " in place: choose another output path");
  }
  llama_config c = llama_config_from_gguf(file);
  s.validate(c);
  gguf_patch_report report;
  gguf_writer w = gguf_writer::from(file);
  std::vector<float> qf, kf;
  for (int l = 0; l < c.n_layers; ++l) {
    band_row_factors(s, c, l, qf, kf);
    const std::string p = "blk." + std::to_string(l) + ".";
    for (int which = 0; which < 2; ++which) {
      const std::vector<float>& factors = which == 0 ? qf : kf;
      for (const char* suffix : {"weight", "bias"}) {
        const std::string name = p + (which == 0 ? "attn_q." : "attn_k.") + suffix;
        const gguf_tensor_info* ti = file.tensor(name);
        const bool bias = std::string(suffix) == "bias";
        if (!ti) {
          if (bias) continue;
          throw format_error(in, name, 0, "required tensor is missing");
        }
        const auto rows = static_cast<std::int64_t>(factors.size());
        // A weight is (rows, dim) with ne = {dim, rows}; a bias is one row of `rows` elements, one factor each.
        if (bias ? (ti->n_elements() != rows || ti->n_rows() != 1) : (ti->n_rows() != rows || ti->ne[0] != c.dim))
          throw format_error(in, name, ti->info_offset, "shape does not match the model's heads");
        std::vector<std::uint8_t> bytes(file.tensor_data(*ti), file.tensor_data(*ti) + ti->size);
        bool changed = false;
        if (bias) {
          if (ti->type != ggml_type::f32 && ti->type != ggml_type::f16 && ti->type != ggml_type::bf16)
            throw unsupported(in + ": tensor '" + name + "': cannot patch a bias of ggml type " + to_string(ti->type));
          const std::size_t width = ti->type == ggml_type::f32 ? 4 : 2;
          for (std::int64_t r = 0; r < rows; ++r) {
            const float g = factors[static_cast<std::size_t>(r)];
            if (g == 1.0f) continue;
            const pg::site where{&in, &name, r};
            pg::scale_row(ti->type, bytes.data() + static_cast<std::size_t>(r) * width, 1, g, where, options, report);
            changed = true;
          }
        } else {
          const std::uint64_t row_bytes = ti->row_size();
          for (std::int64_t r = 0; r < rows; ++r) {
            const float g = factors[static_cast<std::size_t>(r)];
            if (g == 1.0f) continue;
            const pg::site where{&in, &name, r};
            pg::scale_row(ti->type, bytes.data() + static_cast<std::uint64_t>(r) * row_bytes, ti->ne[0], g, where,
                          options, report);
            ++report.rows;
            changed = true;
          }
        }
        if (!changed) continue;
        std::vector<std::int64_t> ne(ti->ne.begin(), ti->ne.begin() + ti->n_dims);
        w.add_tensor(name, ti->type, ne, std::move(bytes));
        ++report.tensors;
      }
    }
  }
  if (options.record_scaling) {
    llama_config rc = c;
    rc.rope = *options.record_scaling;
    if (options.original_ctx > 0) rc.original_ctx = options.original_ctx;
    if (rc.rope.type != rope_type::none) rc.rope.validate(rc.rope_geometry());
    set_gguf_rope_scaling(w, rc);
  }
  // A general.file_type that does not describe the tensors is corrected (an absent one stays absent).
  set_gguf_file_type(w, /*add_when_missing=*/false);
  w.write(out, {in});
  return report;
}

// Opens `in` and patches it into `out` (see the overload above).
inline gguf_patch_report patch_gguf_band_scales(const std::string& in, const band_scales& s, const std::string& out,
                                                const gguf_patch_options& options = {}) {
  return patch_gguf_band_scales(gguf_file::open(in), s, out, options);
}

}  // namespace v0
}  // namespace qroar
