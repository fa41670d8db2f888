// SPDX-License-Identifier: MIT
// safetensors: reader and writer (format of huggingface/safetensors, safetensors/src/tensor.rs).
//
//   bytes 0..8        N, little-endian uint64: length of the JSON header
//   bytes 8..8+N      JSON object, UTF-8, padded with spaces; keys are tensor names plus an optional
//                     "__metadata__" (string -> string). Each tensor: {"dtype": "F32", "shape": [r, c],
//                     "data_offsets": [begin, end]}, offsets relative to the data section.
//   bytes 8+N..       the data section: tensors packed back to back, row-major, little-endian,
//                     covering the section exactly (no gaps, no overlaps).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "../detail/half.hpp"
#include "../detail/model_io.hpp"
#include "../error.hpp"
#include "../tensor.hpp"
#include "atomic_write.hpp"
#include "mapped_file.hpp"

namespace qroar {
inline namespace v0 {

// The float dtypes qroar reads and writes.
enum class safetensors_dtype { f32, f16, bf16 };

inline const char* to_string(safetensors_dtype t) noexcept {
  switch (t) {
    case safetensors_dtype::f32: return "F32";
    case safetensors_dtype::f16: return "F16";
    case safetensors_dtype::bf16: return "BF16";
  }
  return "?";
}

inline std::size_t element_bytes(safetensors_dtype t) noexcept { return t == safetensors_dtype::f32 ? 4 : 2; }

// Largest accepted JSON header, as the reference implementation (MAX_HEADER_SIZE = 100 000 000).
inline constexpr std::uint64_t safetensors_max_header_bytes = 100000000;
// Memory the parsed header may take: 128 MiB, counted per JSON element before it is kept (an object member
// ~96 bytes, an array element 32, containers 64, strings' heap bytes; malloc overhead included). A header of
// small numbers (2 bytes of text, 32 parsed) or members is refused once it reaches this, instead of costing
// 20-40 x its size. A real tensor entry (~100 bytes of text) counts ~600, so the limit holds ~200 000 tensors.
inline constexpr std::uint64_t safetensors_max_header_memory = std::uint64_t{128} << 20;

// One tensor as described by the header.
struct safetensors_tensor {
  std::string name;
  std::string dtype;                 // as stored: "F32", "F16", "BF16", "I64", ...
  std::vector<std::uint64_t> shape;  // empty for a scalar
  std::uint64_t begin = 0;           // byte range [begin, end) inside the data section
  std::uint64_t end = 0;

  std::uint64_t elements() const noexcept {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;  // validated not to overflow when the file was opened
    return n;
  }
};

namespace detail {
namespace safetensors_io {

// Element size of every dtype of the safetensors specification with a whole number of bytes; 0 for others.
inline std::uint64_t dtype_bytes(const std::string& dtype) noexcept {
  static const std::unordered_map<std::string, std::uint64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2},  {"BF16", 2}, {"I32", 4}, {"U32", 4},     {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace safetensors_io
}  // namespace detail

// A memory-mapped safetensors file whose header has been validated: every tensor has a known dtype, a shape
// whose byte size matches its data_offsets, and the tensors tile the data section exactly.
// Errors: io_error (cannot open), format_error (header length over the cap or past the end, invalid JSON, bad
// field types, sizes inconsistent with shape x dtype, offsets outside the data section, overlaps or gaps;
// names the tensor and the absolute byte offset), unsupported (a dtype qroar does not know, naming the tensor).
class safetensors_file {
 public:
  explicit safetensors_file(const std::string& path, std::uint64_t max_header_bytes = safetensors_max_header_bytes)
      : file_(path) {
    detail::model_io::require_little_endian_host(path);
    const std::uint64_t n = detail::model_io::read_u64_le(file_.range(0, 8, "", "safetensors header length"));
    if (n > max_header_bytes)
      throw format_error(path, "", 0, "safetensors header length " + std::to_string(n) + " exceeds the limit " +
                                          std::to_string(max_header_bytes));
    if (n > file_.size() - 8)
      throw format_error(path, "", 0, "safetensors header length " + std::to_string(n) + " runs past the end of the file (" +
                                          std::to_string(file_.size()) + " bytes)");
    data_offset_ = 8 + n;
    const auto* text = reinterpret_cast<const char*>(file_.data() + 8);
    if (n == 0 || text[0] != '{') throw format_error(path, "", 8, "safetensors header is not a JSON object");
    nlohmann::json header;
    std::uint64_t memory = 0;
    std::string entry;  // the top-level key being parsed, for the message
    auto count = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using ev = nlohmann::json::parse_event_t;
      auto heap = [](const nlohmann::json& j) -> std::uint64_t {
        if (!j.is_string()) return 0;
        const auto len = j.get_ref<const std::string&>().size();
        return len > 15 ? len + 17 : 0;
      };
      std::uint64_t bytes = 0;
      switch (event) {
        case ev::object_start:
        case ev::array_start: bytes = 64; break;
        case ev::key:
          bytes = 96 + heap(parsed);
          if (depth == 1) entry = parsed.get<std::string>();
          break;
        case ev::value: bytes = 32 + heap(parsed); break;
        default: break;
      }
      if (bytes > safetensors_max_header_memory - memory)
        throw format_error(path, entry, 8, "parsing the " + std::to_string(n) + "-byte safetensors header would take more than " +
                                               std::to_string(safetensors_max_header_memory) +
                                               " bytes of memory (safetensors_max_header_memory)");
      memory += bytes;
      return true;
    };
    try {
      header = nlohmann::json::parse(text, text + n, count);
    } catch (const nlohmann::json::parse_error& e) {
      throw format_error(path, "", 8 + (e.byte > 0 ? e.byte - 1 : 0), std::string("safetensors header is not valid JSON: ") + e.what());
    } catch (const nlohmann::json::exception& e) {
      throw format_error(path, "", 8, std::string("safetensors header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) throw format_error(path, "", 8, "safetensors header is not a JSON object");
    parse(header);
  }

  const std::string& path() const noexcept { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // All tensors, in data order.
  const std::vector<safetensors_tensor>& tensors() const noexcept { return tensors_; }
  // Absolute offset of the data section (8 + header length).
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  // Throws format_error when the file has no tensor `name`.
  const safetensors_tensor& info(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw format_error(path(), name, 0, "no such tensor in the file");
    return tensors_[it->second];
  }

  // The stored bytes of `name`.
  const std::uint8_t* raw(const std::string& name) const {
    const auto& t = info(name);
    return file_.range(data_offset_ + t.begin, t.end - t.begin, name);
  }

  // All elements of `name` converted to float (F32, F16, BF16). Others: unsupported naming the tensor.
  std::vector<float> read(const std::string& name) const {
    const auto& t = info(name);
    std::vector<float> out(static_cast<std::size_t>(t.elements()));
    convert(t, out.data());
    return out;
  }

  // A 2-D tensor as a (rows, cols) matrix; format_error when `name` is not 2-D.
  tensor read_matrix(const std::string& name) const {
    const auto& t = info(name);
    if (t.shape.size() != 2)
      throw format_error(path(), name, data_offset_ + t.begin,
                         "expected a 2-D tensor, the shape is " + detail::safetensors_io::shape_string(t.shape));
    tensor m(static_cast<Eigen::Index>(t.shape[0]), static_cast<Eigen::Index>(t.shape[1]));
    convert(t, m.data());
    return m;
  }

  // A 1-D tensor; format_error when `name` is not 1-D.
  vector read_vector(const std::string& name) const {
    const auto& t = info(name);
    if (t.shape.size() != 1)
      throw format_error(path(), name, data_offset_ + t.begin,
                         "expected a 1-D tensor, the shape is " + detail::safetensors_io::shape_string(t.shape));
    vector v(static_cast<Eigen::Index>(t.shape[0]));
    convert(t, v.data());
    return v;
  }

 private:
  void convert(const safetensors_tensor& t, float* out) const {
    const std::uint8_t* p = file_.range(data_offset_ + t.begin, t.end - t.begin, t.name);
    const std::uint64_t n = t.elements();
    if (n == 0) return;
    if (t.dtype == "F32") {
      std::memcpy(out, p, static_cast<std::size_t>(n) * 4);
      file_.evict(data_offset_ + t.begin, t.end - t.begin);  // the copy replaces the file pages
    } else if (t.dtype == "F16" || t.dtype == "BF16") {
      const bool half = t.dtype == "F16";
      for (std::uint64_t i = 0; i < n; ++i) {
        const auto h = static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
        out[i] = half ? detail::fp16_to_fp32(h) : detail::bf16_to_fp32(h);
      }
      file_.evict(data_offset_ + t.begin, t.end - t.begin);
    } else {
      throw unsupported(path() + ": tensor '" + t.name + "': dtype " + t.dtype + " is not supported (F32, F16, BF16 are)");
    }
  }

  void parse(const nlohmann::json& header) {
    namespace st = detail::safetensors_io;
    const std::string& file = path();
    const std::uint64_t data_size = file_.size() - data_offset_;
    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const nlohmann::json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) throw format_error(file, "", 8, "__metadata__ must be an object of strings");
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string()) throw format_error(file, "", 8, "__metadata__ value '" + m.key() + "' must be a string");
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      if (!v.is_object()) throw format_error(file, name, 8, "tensor entry must be an object");
      safetensors_tensor t;
      t.name = name;
      const auto dt = v.find("dtype");
      const auto sh = v.find("shape");
      const auto off = v.find("data_offsets");
      if (dt == v.end() || !dt->is_string()) throw format_error(file, name, 8, "'dtype' missing or not a string");
      if (sh == v.end() || !sh->is_array()) throw format_error(file, name, 8, "'shape' missing or not a list");
      if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
          !(*off)[1].is_number_unsigned())
        throw format_error(file, name, 8, "'data_offsets' must be two non-negative integers");
      t.dtype = dt->get<std::string>();
      const std::uint64_t esize = st::dtype_bytes(t.dtype);
      if (esize == 0) throw unsupported(file + ": tensor '" + name + "': unknown safetensors dtype '" + t.dtype + "'");
      std::uint64_t elements = 1;
      for (const auto& d : *sh) {
        if (!d.is_number_unsigned()) throw format_error(file, name, 8, "'shape' entries must be non-negative integers");
        const auto dv = d.get<std::uint64_t>();
        // Dimensions become Eigen indices (int64); [0, 2^64-1] has 0 elements but no valid matrix shape.
        if (dv > static_cast<std::uint64_t>(INT64_MAX))
          throw format_error(file, name, 8, "shape " + sh->dump() + ": dimension " + std::to_string(dv) + " exceeds 2^63 - 1");
        if (!detail::model_io::checked_mul(elements, dv, elements))
          throw format_error(file, name, 8, "shape " + sh->dump() + " overflows 64 bits");
        t.shape.push_back(dv);
      }
      std::uint64_t bytes = 0;
      if (!detail::model_io::checked_mul(elements, esize, bytes))
        throw format_error(file, name, 8, "shape " + sh->dump() + " x " + t.dtype + " overflows 64 bits");
      t.begin = (*off)[0].get<std::uint64_t>();
      t.end = (*off)[1].get<std::uint64_t>();
      const std::uint64_t at = t.begin <= data_size ? data_offset_ + t.begin : data_offset_;
      if (t.end < t.begin) throw format_error(file, name, at, "data_offsets end < begin");
      if (t.end > data_size)
        throw format_error(file, name, at, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                               ") run past the data section (" + std::to_string(data_size) + " bytes)");
      if (t.end - t.begin != bytes)
        throw format_error(file, name, at, "data_offsets span " + std::to_string(t.end - t.begin) + " bytes, shape " +
                                               st::shape_string(t.shape) + " x " + t.dtype + " needs " + std::to_string(bytes));
      tensors_.push_back(std::move(t));
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const safetensors_tensor& a, const safetensors_tensor& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t expected = 0;
    const safetensors_tensor* previous = nullptr;
    for (const auto& t : tensors_) {
      if (t.begin < expected)
        throw format_error(file, t.name, data_offset_ + t.begin,
                           "overlaps tensor '" + previous->name + "' (which ends at data offset " + std::to_string(expected) + ")");
      if (t.begin > expected)
        throw format_error(file, t.name, data_offset_ + t.begin,
                           "gap of " + std::to_string(t.begin - expected) + " bytes before this tensor");
      expected = t.end;
      previous = &t;
    }
    if (expected != data_size)
      throw format_error(file, "", data_offset_ + expected,
                         "the tensors cover " + std::to_string(expected) + " of the " + std::to_string(data_size) +
                             " bytes of the data section");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }

  mapped_file file_;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<safetensors_tensor> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
};

// A float tensor to write. `data` is row-major with shape[0] * shape[1] * ... elements; it must outlive the call.
struct safetensors_entry {
  std::string name;
  std::vector<std::uint64_t> shape;
  const float* data = nullptr;

  static safetensors_entry matrix(std::string name, const tensor& t) {
    return {std::move(name), {static_cast<std::uint64_t>(t.rows()), static_cast<std::uint64_t>(t.cols())}, t.data()};
  }
  static safetensors_entry vec(std::string name, const vector& v) {
    return {std::move(name), {static_cast<std::uint64_t>(v.size())}, v.data()};
  }
};

// The header write_safetensors produces: "__metadata__" first (when not empty), then the tensors sorted by name,
// each {"dtype", "shape", "data_offsets"} in that key order, compact, padded with spaces to a multiple of 8 bytes
// (as huggingface/safetensors serialize does when all tensors share one dtype).
inline std::string safetensors_header(const std::vector<safetensors_entry>& sorted, safetensors_dtype dtype,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) meta[kv.first] = kv.second;
    header["__metadata__"] = meta;
  }
  std::uint64_t offset = 0;
  for (const auto& e : sorted) {
    std::uint64_t n = 1;
    for (auto d : e.shape) n *= d;
    const std::uint64_t bytes = n * element_bytes(dtype);
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = to_string(dtype);
    entry["shape"] = e.shape;
    entry["data_offsets"] = {offset, offset + bytes};
    header[e.name] = entry;
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// Writes float tensors as a safetensors file in one dtype, atomically (atomic_file_writer), refusing to overwrite any
// of `inputs`. Values are rounded to nearest even for F16 / BF16. Throws invalid_argument (empty, duplicate or
// reserved names, null data), numeric_error (a value that is not finite after the conversion, e.g. > 65504 in F16,
// naming the tensor and element). The written header is re-read and checked before the rename.
inline void write_safetensors(const std::string& path, std::vector<safetensors_entry> tensors, safetensors_dtype dtype,
                              const std::map<std::string, std::string>& metadata = {},
                              const std::vector<std::string>& inputs = {}) {
  detail::model_io::require_little_endian_host(path);
  std::sort(tensors.begin(), tensors.end(),
            [](const safetensors_entry& a, const safetensors_entry& b) { return a.name < b.name; });
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& e = tensors[i];
    if (e.name.empty() || e.name == "__metadata__")
      throw invalid_argument(path + ": invalid safetensors tensor name '" + e.name + "'");
    if (i > 0 && tensors[i - 1].name == e.name) throw invalid_argument(path + ": duplicate tensor name '" + e.name + "'");
    std::uint64_t n = 1;
    for (auto d : e.shape)
      if (!detail::model_io::checked_mul(n, d, n)) throw invalid_argument(path + ": tensor '" + e.name + "': shape overflows");
    if (n > 0 && e.data == nullptr) throw invalid_argument(path + ": tensor '" + e.name + "' has no data");
  }
  auto as_written = [dtype](float x) -> float {
    if (dtype == safetensors_dtype::f16) return detail::fp16_to_fp32(detail::fp32_to_fp16(x));
    if (dtype == safetensors_dtype::bf16) return detail::bf16_to_fp32(detail::fp32_to_bf16(x));
    return x;
  };
  for (const auto& e : tensors) {
    std::uint64_t n = 1, cols = e.shape.empty() ? 1 : e.shape.back();
    for (auto d : e.shape) n *= d;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!std::isfinite(as_written(e.data[i])))
        throw numeric_error(path + ": tensor '" + e.name + "': element " + std::to_string(i) + " (row " +
                            std::to_string(cols ? i / cols : 0) + ", column " + std::to_string(cols ? i % cols : 0) + ") is " +
                            (std::isfinite(e.data[i]) ? "out of the " + std::string(to_string(dtype)) + " range"
                                                      : std::string("not finite")));
    }
  }

  const std::string text = safetensors_header(tensors, dtype, metadata);
  atomic_file_writer out(path, inputs);
  const std::uint64_t n = text.size();
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(n >> (8 * i));
  out.write(len, 8);
  out.write(text.data(), text.size());
  std::vector<std::uint16_t> buffer;
  for (const auto& e : tensors) {
    std::uint64_t count = 1;
    for (auto d : e.shape) count *= d;
    if (dtype == safetensors_dtype::f32) {
      out.write(e.data, static_cast<std::size_t>(count) * 4);
      continue;
    }
    constexpr std::uint64_t chunk = 1 << 16;
    for (std::uint64_t i = 0; i < count; i += chunk) {
      const std::uint64_t k = std::min(chunk, count - i);
      buffer.resize(static_cast<std::size_t>(k));
      for (std::uint64_t j = 0; j < k; ++j)
        buffer[j] = dtype == safetensors_dtype::f16 ? detail::fp32_to_fp16(e.data[i + j]) : detail::fp32_to_bf16(e.data[i + j]);
      out.write(buffer.data(), static_cast<std::size_t>(k) * 2);
    }
  }
  out.commit([&](const std::string& temp) {
    const safetensors_file check(temp);
    bool same = check.tensors().size() == tensors.size() && check.metadata() == metadata;
    for (const auto& e : tensors) same = same && check.contains(e.name) && check.info(e.name).shape == e.shape;
    if (!same) throw io_error(path + ": verification failed: the written header does not re-read to the same tensors");
  });
}

}  // namespace v0
}  // namespace qroar
