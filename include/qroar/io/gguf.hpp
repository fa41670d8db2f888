// SPDX-License-Identifier: MIT
// GGUF v2/v3: a validating reader over a memory map, and a writer that reproduces a file it read byte for byte.
//
// Layout (little-endian; ggml/docs/gguf.md, ggml/src/gguf.cpp):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }            string = u64 length + bytes (no terminator)
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   zero padding to `general.alignment` (u32, default 32)
//   data section: tensor bytes at data_start + offset, each offset a multiple of the alignment.
// Arrays are { u32 element_type | u64 count | elements } and may nest.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../quant/ggml_blocks.hpp"
#include "../quant/ggml_types.hpp"
#include "../tensor.hpp"
#include "atomic_write.hpp"
#include "mapped_file.hpp"

namespace qroar {
inline namespace v0 {

// GGUF metadata value types, numbered as in gguf.h.
enum class gguf_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

inline const char* to_string(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::uint8: return "uint8";
    case gguf_type::int8: return "int8";
    case gguf_type::uint16: return "uint16";
    case gguf_type::int16: return "int16";
    case gguf_type::uint32: return "uint32";
    case gguf_type::int32: return "int32";
    case gguf_type::float32: return "float32";
    case gguf_type::boolean: return "bool";
    case gguf_type::string: return "string";
    case gguf_type::array: return "array";
    case gguf_type::uint64: return "uint64";
    case gguf_type::int64: return "int64";
    case gguf_type::float64: return "float64";
  }
  return "unknown";
}

// Bytes of a scalar of type t; 0 for string, array and unknown ids.
inline std::size_t gguf_scalar_size(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::uint8: case gguf_type::int8: case gguf_type::boolean: return 1;
    case gguf_type::uint16: case gguf_type::int16: return 2;
    case gguf_type::uint32: case gguf_type::int32: case gguf_type::float32: return 4;
    case gguf_type::uint64: case gguf_type::int64: case gguf_type::float64: return 8;
    default: return 0;
  }
}

inline bool gguf_is_integer(gguf_type t) noexcept {
  switch (t) {
    case gguf_type::uint8: case gguf_type::int8: case gguf_type::uint16: case gguf_type::int16:
    case gguf_type::uint32: case gguf_type::int32: case gguf_type::uint64: case gguf_type::int64: return true;
    default: return false;
  }
}

namespace detail {
inline bool gguf_type_known(std::uint32_t id) noexcept { return id <= 12; }

inline std::uint64_t load_le(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}
inline void append_le(std::vector<std::uint8_t>& out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// Interprets the n-byte little-endian pattern `bits` of scalar type t.
inline std::int64_t scalar_as_signed(gguf_type t, std::uint64_t bits) noexcept {
  switch (t) {
    case gguf_type::int8: return static_cast<std::int8_t>(static_cast<std::uint8_t>(bits));
    case gguf_type::int16: return static_cast<std::int16_t>(static_cast<std::uint16_t>(bits));
    case gguf_type::int32: return static_cast<std::int32_t>(static_cast<std::uint32_t>(bits));
    case gguf_type::int64: return static_cast<std::int64_t>(bits);
    default: return static_cast<std::int64_t>(bits);  // unsigned types: caller checks the range
  }
}
inline double scalar_as_double(gguf_type t, std::uint64_t bits) noexcept {
  if (t == gguf_type::float32) {
    const auto b = static_cast<std::uint32_t>(bits);
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (t == gguf_type::float64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  if (t == gguf_type::uint64) return static_cast<double>(bits);
  return static_cast<double>(scalar_as_signed(t, bits));
}
}  // namespace detail

// One metadata value: a scalar, a string, or an array (of scalars, strings or arrays). Scalars keep their
// exact bit pattern, so a value read from a file is written back unchanged (NaN payloads, bool bytes).
// Accessors throw qroar::invalid_argument (id 110) on a type mismatch; an index out of range is a
// programmer error (QROAR_ASSERT).
class gguf_value {
 public:
  gguf_value() = default;  // uint8 0

  static gguf_value u8(std::uint8_t v) { return scalar(gguf_type::uint8, v); }
  static gguf_value i8(std::int8_t v) { return scalar(gguf_type::int8, static_cast<std::uint8_t>(v)); }
  static gguf_value u16(std::uint16_t v) { return scalar(gguf_type::uint16, v); }
  static gguf_value i16(std::int16_t v) { return scalar(gguf_type::int16, static_cast<std::uint16_t>(v)); }
  static gguf_value u32(std::uint32_t v) { return scalar(gguf_type::uint32, v); }
  static gguf_value i32(std::int32_t v) { return scalar(gguf_type::int32, static_cast<std::uint32_t>(v)); }
  static gguf_value u64(std::uint64_t v) { return scalar(gguf_type::uint64, v); }
  static gguf_value i64(std::int64_t v) { return scalar(gguf_type::int64, static_cast<std::uint64_t>(v)); }
  static gguf_value f32(float v) {
    std::uint32_t b;
    std::memcpy(&b, &v, 4);
    return scalar(gguf_type::float32, b);
  }
  static gguf_value f64(double v) {
    std::uint64_t b;
    std::memcpy(&b, &v, 8);
    return scalar(gguf_type::float64, b);
  }
  static gguf_value boolean(bool v) { return scalar(gguf_type::boolean, v ? 1u : 0u); }
  static gguf_value string(std::string v) {
    gguf_value r;
    r.type_ = gguf_type::string;
    r.string_ = std::move(v);
    return r;
  }
  // A scalar of type t from its little-endian bit pattern (the low gguf_scalar_size(t) bytes of bits).
  static gguf_value scalar(gguf_type t, std::uint64_t bits) {
    QROAR_ASSERT(gguf_scalar_size(t) > 0, "not a scalar gguf type");
    gguf_value r;
    r.type_ = t;
    const std::size_t n = gguf_scalar_size(t);
    r.bits_ = n == 8 ? bits : bits & ((std::uint64_t{1} << (8 * n)) - 1);
    return r;
  }
  // An empty array of element_type; fill it with push_back.
  static gguf_value array(gguf_type element_type) {
    gguf_value r;
    r.type_ = gguf_type::array;
    r.element_type_ = element_type;
    return r;
  }
  // Arrays from C++ vectors: element type deduced (std::string, bool, and the fixed-width integer and float
  // types).
  template <class T>
  static gguf_value array_of(const std::vector<T>& values) {
    gguf_value r = array(element_type_of<T>());
    for (const auto& v : values) r.push_back(of(v));
    return r;
  }
  template <class T>
  static gguf_value of(const T& v) {
    constexpr gguf_type t = element_type_of<T>();
    if constexpr (t == gguf_type::string) {
      return string(v);
    } else if constexpr (t == gguf_type::float32) {
      return f32(v);
    } else if constexpr (t == gguf_type::float64) {
      return f64(v);
    } else if constexpr (t == gguf_type::boolean) {
      return boolean(v);
    } else {
      using U = std::make_unsigned_t<T>;
      return scalar(t, static_cast<std::uint64_t>(static_cast<U>(v)));
    }
  }

  // Appends to an array; the value must have the array's element type (arrays of arrays take any array).
  void push_back(gguf_value v) {
    require(type_ == gguf_type::array, "push_back on a non-array");
    if (v.type_ != element_type_) bad_type("array element", element_type_, v.type_);
    if (element_type_ == gguf_type::string) {
      strings_.push_back(std::move(v.string_));
    } else if (element_type_ == gguf_type::array) {
      arrays_.push_back(std::move(v));
    } else {
      detail::append_le(raw_, v.bits_, gguf_scalar_size(element_type_));
    }
    ++count_;
  }

  gguf_type type() const noexcept { return type_; }
  bool is_array() const noexcept { return type_ == gguf_type::array; }
  bool is_string() const noexcept { return type_ == gguf_type::string; }
  bool is_integer() const noexcept { return gguf_is_integer(type_); }
  bool is_float() const noexcept { return type_ == gguf_type::float32 || type_ == gguf_type::float64; }
  bool is_bool() const noexcept { return type_ == gguf_type::boolean; }

  // Scalars.
  std::uint64_t raw_bits() const {
    require(gguf_scalar_size(type_) > 0, "raw_bits of a string or array");
    return bits_;
  }
  // Any integer type whose value fits int64.
  std::int64_t as_int() const {
    if (!is_integer()) bad_type("value", gguf_type::int64, type_);
    if (type_ == gguf_type::uint64 && bits_ > static_cast<std::uint64_t>(INT64_MAX))
      throw invalid_argument("gguf uint64 value " + std::to_string(bits_) + " does not fit int64", 111);
    return detail::scalar_as_signed(type_, bits_);
  }
  // Any non-negative integer.
  std::uint64_t as_uint() const {
    if (!is_integer()) bad_type("value", gguf_type::uint64, type_);
    if (type_ == gguf_type::uint64) return bits_;
    const std::int64_t v = detail::scalar_as_signed(type_, bits_);
    if (v < 0) throw invalid_argument("gguf value " + std::to_string(v) + " is negative", 111);
    return static_cast<std::uint64_t>(v);
  }
  // float32, float64, or any integer converted.
  double as_float() const {
    if (!is_float() && !is_integer()) bad_type("value", gguf_type::float64, type_);
    return detail::scalar_as_double(type_, bits_);
  }
  bool as_bool() const {
    if (!is_bool()) bad_type("value", gguf_type::boolean, type_);
    return bits_ != 0;
  }
  const std::string& as_string() const {
    if (!is_string()) bad_type("value", gguf_type::string, type_);
    return string_;
  }

  // Arrays.
  gguf_type element_type() const {
    require(is_array(), "element_type of a non-array");
    return element_type_;
  }
  std::uint64_t size() const {
    require(is_array(), "size of a non-array");
    return count_;
  }
  gguf_value at(std::uint64_t i) const {
    require(is_array(), "at() on a non-array");
    QROAR_ASSERT(i < count_, "gguf array index out of range");
    if (element_type_ == gguf_type::string) return string(strings_[i]);
    if (element_type_ == gguf_type::array) return arrays_[i];
    const std::size_t n = gguf_scalar_size(element_type_);
    return scalar(element_type_, detail::load_le(raw_.data() + i * n, n));
  }
  std::int64_t int_at(std::uint64_t i) const { return scalar_at(i).as_int(); }
  double float_at(std::uint64_t i) const { return scalar_at(i).as_float(); }
  const std::string& string_at(std::uint64_t i) const {
    if (!is_array() || element_type_ != gguf_type::string) bad_type("array", gguf_type::string, element_type_);
    QROAR_ASSERT(i < count_, "gguf array index out of range");
    return strings_[i];
  }
  const gguf_value& array_at(std::uint64_t i) const {
    if (!is_array() || element_type_ != gguf_type::array) bad_type("array", gguf_type::array, element_type_);
    QROAR_ASSERT(i < count_, "gguf array index out of range");
    return arrays_[i];
  }
  const std::vector<std::string>& strings() const {
    if (!is_array() || element_type_ != gguf_type::string) bad_type("array", gguf_type::string, element_type_);
    return strings_;
  }
  // A numeric array converted element by element.
  std::vector<float> to_floats() const {
    std::vector<float> r;
    for (std::uint64_t i = 0; i < size(); ++i) r.push_back(static_cast<float>(float_at(i)));
    return r;
  }
  std::vector<std::int64_t> to_ints() const {
    std::vector<std::int64_t> r;
    for (std::uint64_t i = 0; i < size(); ++i) r.push_back(int_at(i));
    return r;
  }
  // The packed little-endian elements of a scalar array, exactly as stored in the file.
  const std::vector<std::uint8_t>& raw_elements() const {
    require(is_array() && gguf_scalar_size(element_type_) > 0, "raw_elements of a non-scalar array");
    return raw_;
  }

  friend bool operator==(const gguf_value& a, const gguf_value& b) {
    return a.type_ == b.type_ && a.bits_ == b.bits_ && a.string_ == b.string_ && a.element_type_ == b.element_type_ &&
           a.count_ == b.count_ && a.raw_ == b.raw_ && a.strings_ == b.strings_ && a.arrays_ == b.arrays_;
  }
  friend bool operator!=(const gguf_value& a, const gguf_value& b) { return !(a == b); }

  // Serialised size in bytes (value only, without the type id).
  std::uint64_t byte_size() const {
    if (type_ == gguf_type::string) return 8 + string_.size();
    if (type_ != gguf_type::array) return gguf_scalar_size(type_);
    std::uint64_t n = 4 + 8 + raw_.size();
    for (const auto& s : strings_) n += 8 + s.size();
    for (const auto& a : arrays_) n += a.byte_size();
    return n;
  }
  // Appends the serialised value (without the type id) to out.
  void serialize(std::vector<std::uint8_t>& out) const {
    if (type_ == gguf_type::string) {
      detail::append_le(out, string_.size(), 8);
      out.insert(out.end(), string_.begin(), string_.end());
    } else if (type_ == gguf_type::array) {
      detail::append_le(out, static_cast<std::uint32_t>(element_type_), 4);
      detail::append_le(out, count_, 8);
      out.insert(out.end(), raw_.begin(), raw_.end());
      for (const auto& s : strings_) {
        detail::append_le(out, s.size(), 8);
        out.insert(out.end(), s.begin(), s.end());
      }
      for (const auto& a : arrays_) a.serialize(out);
    } else {
      detail::append_le(out, bits_, gguf_scalar_size(type_));
    }
  }

 private:
  friend class gguf_file;

  template <class T>
  static constexpr gguf_type element_type_of() {
    using U = std::decay_t<T>;
    if constexpr (std::is_same_v<U, std::string> || std::is_same_v<U, const char*>) return gguf_type::string;
    else if constexpr (std::is_same_v<U, bool>) return gguf_type::boolean;
    else if constexpr (std::is_same_v<U, float>) return gguf_type::float32;
    else if constexpr (std::is_same_v<U, double>) return gguf_type::float64;
    else if constexpr (std::is_same_v<U, std::uint8_t>) return gguf_type::uint8;
    else if constexpr (std::is_same_v<U, std::int8_t>) return gguf_type::int8;
    else if constexpr (std::is_same_v<U, std::uint16_t>) return gguf_type::uint16;
    else if constexpr (std::is_same_v<U, std::int16_t>) return gguf_type::int16;
    else if constexpr (std::is_same_v<U, std::uint32_t>) return gguf_type::uint32;
    else if constexpr (std::is_same_v<U, std::int32_t>) return gguf_type::int32;
    else if constexpr (std::is_same_v<U, std::uint64_t>) return gguf_type::uint64;
    else if constexpr (std::is_same_v<U, std::int64_t>) return gguf_type::int64;
    else {
      static_assert(sizeof(U) == 0, "gguf_value: unsupported C++ type (use a fixed-width integer, float, double, bool "
                                    "or std::string)");
      return gguf_type::uint8;
    }
  }
  gguf_value scalar_at(std::uint64_t i) const {
    if (!is_array() || gguf_scalar_size(element_type_) == 0) bad_type("array", gguf_type::float64, element_type_);
    return at(i);
  }
  static void require(bool ok, const char* what) {
    if (!ok) throw invalid_argument(std::string("gguf value: ") + what, 110);
  }
  [[noreturn]] static void bad_type(const char* what, gguf_type want, gguf_type got) {
    throw invalid_argument(std::string("gguf ") + what + " has type " + to_string(got) + ", expected " +
                               to_string(want),
                           110);
  }

  gguf_type type_ = gguf_type::uint8;
  std::uint64_t bits_ = 0;
  std::string string_;
  gguf_type element_type_ = gguf_type::uint8;
  std::uint64_t count_ = 0;
  std::vector<std::uint8_t> raw_;     // scalar elements, packed
  std::vector<std::string> strings_;  // string elements
  std::vector<gguf_value> arrays_;    // nested array elements
};

// One metadata entry, in file order. `offset` is where its key starts in the file (for error messages).
struct gguf_kv {
  std::string key;
  gguf_value value;
  std::uint64_t offset = 0;
};

// One tensor: ne[0] is the row length (contiguous), ne[1..3] the outer dimensions (1 beyond n_dims).
struct gguf_tensor_info {
  std::string name;
  std::uint32_t n_dims = 0;
  std::array<std::int64_t, 4> ne{{1, 1, 1, 1}};
  ggml_type type = ggml_type::f32;
  std::uint64_t offset = 0;       // from the start of the data section, as stored
  std::uint64_t size = 0;         // bytes
  std::uint64_t info_offset = 0;  // where the tensor info record starts in the file

  std::int64_t n_elements() const noexcept { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::int64_t n_rows() const noexcept { return ne[1] * ne[2] * ne[3]; }
  std::uint64_t row_size() const { return ggml_row_size(type, static_cast<std::uint64_t>(ne[0])); }
};

// A GGUF file, memory-mapped and fully validated on open. Movable, not copyable.
//
// open() throws io_error when the file cannot be read and format_error (naming file, tensor, byte offset) for
// any inconsistency: bad magic or version, truncation anywhere, a string or array longer than the rest of the
// file, unknown value or ggml types, nesting deeper than 16, more than 2^20 tensors or keys, duplicate keys
// or tensor names, n_dims > 4, negative dims or an element count overflowing int64, a row length that is not a
// multiple of the block size, a bad general.alignment, tensor offsets that are unaligned, out of range or
// overlapping, a header whose parsed keys, values and tensor infos would take more than max_header_memory bytes
// (naming the key).
class gguf_file {
 public:
  static constexpr std::uint32_t magic = 0x46554747u;  // "GGUF" read as a little-endian u32
  static constexpr std::uint64_t max_tensors = std::uint64_t{1} << 20;
  static constexpr std::uint64_t max_kv = std::uint64_t{1} << 20;
  static constexpr int max_array_depth = 16;
  static constexpr std::uint32_t default_alignment = 32;
  // Memory the parsed header (keys, values, tensor infos) may take: 256 MiB. Counted before each allocation
  // (sizeof the C++ objects plus their heap bytes), so a file of millions of empty nested arrays (12 file bytes,
  // ~150 bytes parsed each) or empty strings is refused in time. Gemma 3's vocabulary (262 144 tokens with
  // scores and types, 514 906 merges) counts ~27 MiB.
  static constexpr std::uint64_t max_header_memory = std::uint64_t{256} << 20;

  static gguf_file open(const std::string& path) {
    gguf_file f;
    f.map_ = mapped_file(path);
    f.parse();
    return f;
  }

  const std::string& path() const noexcept { return map_.path(); }
  std::uint64_t file_size() const noexcept { return map_.size(); }
  std::uint32_t version() const noexcept { return version_; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  // Absolute file offset of the data section.
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  const std::vector<gguf_kv>& metadata() const noexcept { return kv_; }
  const gguf_value* find(const std::string& key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
  }
  bool contains(const std::string& key) const { return find(key) != nullptr; }

  // Typed getters: `fallback` when the key is absent; format_error when it is present with the wrong type.
  std::string get_string(const std::string& key, const std::string& fallback = {}) const {
    const gguf_kv* kv = entry(key);
    if (!kv) return fallback;
    if (!kv->value.is_string()) wrong_type(*kv, "a string");
    return kv->value.as_string();
  }
  // Any integer type that fits int64.
  std::int64_t get_int(const std::string& key, std::int64_t fallback = 0) const {
    const gguf_kv* kv = entry(key);
    if (!kv) return fallback;
    if (!kv->value.is_integer()) wrong_type(*kv, "an integer");
    try {
      return kv->value.as_int();
    } catch (const invalid_argument& e) {
      throw format_error(path(), {}, kv->offset, "metadata key '" + key + "': " + e.what());
    }
  }
  // float32, float64 or an integer.
  double get_float(const std::string& key, double fallback = 0.0) const {
    const gguf_kv* kv = entry(key);
    if (!kv) return fallback;
    if (!kv->value.is_float() && !kv->value.is_integer()) wrong_type(*kv, "a number");
    return kv->value.as_float();
  }
  bool get_bool(const std::string& key, bool fallback = false) const {
    const gguf_kv* kv = entry(key);
    if (!kv) return fallback;
    if (!kv->value.is_bool()) wrong_type(*kv, "a bool");
    return kv->value.as_bool();
  }
  // nullptr when absent; format_error when present but not an array (or not of element_type, if given).
  const gguf_value* get_array(const std::string& key) const {
    const gguf_kv* kv = entry(key);
    if (!kv) return nullptr;
    if (!kv->value.is_array()) wrong_type(*kv, "an array");
    return &kv->value;
  }
  const gguf_value* get_array(const std::string& key, gguf_type element_type) const {
    const gguf_value* v = get_array(key);
    if (v && v->element_type() != element_type)
      wrong_type(*entry(key), (std::string("an array of ") + to_string(element_type)).c_str());
    return v;
  }
  std::string architecture() const { return get_string("general.architecture"); }

  const std::vector<gguf_tensor_info>& tensors() const noexcept { return tensors_; }
  const gguf_tensor_info* tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  // The tensor's `info.size` bytes (validated to lie inside the file).
  const std::uint8_t* tensor_data(const gguf_tensor_info& info) const noexcept {
    return map_.data() + data_offset_ + info.offset;
  }

  // Drops the tensor's resident file pages (mapped_file::evict); its data stays readable.
  void evict(const gguf_tensor_info& info) const noexcept { map_.evict(data_offset_ + info.offset, info.size); }

  // The tensor as floats: (ne1 * ne2 * ne3, ne0), row-major, so ne0 (the input dimension) is the columns.
  // Throws qroar::unsupported for a ggml type qroar cannot dequantize.
  qroar::tensor dequantize(const gguf_tensor_info& info) const {
    if (!ggml_type_is_convertible(info.type))
      throw unsupported(path() + ": tensor '" + info.name + "': cannot dequantize ggml type " + to_string(info.type));
    qroar::tensor t(static_cast<Eigen::Index>(info.n_rows()), static_cast<Eigen::Index>(info.ne[0]));
    if (info.n_elements() == 0) return t;  // ne = {0, 2^40}: no data, and no 2^40 empty rows to walk
    const std::uint64_t row_bytes = info.row_size();
    const std::uint8_t* src = tensor_data(info);
    for (std::int64_t r = 0; r < info.n_rows(); ++r)
      dequantize_row(info.type, src + static_cast<std::uint64_t>(r) * row_bytes, t.data() + r * info.ne[0], info.ne[0]);
    return t;
  }
  qroar::tensor dequantize(const std::string& name) const {
    const gguf_tensor_info* info = tensor(name);
    if (!info) throw invalid_argument(path() + ": no tensor named '" + name + "'");
    return dequantize(*info);
  }

 private:
  gguf_file() = default;

  // Bounds-checked little-endian reader over the map.
  struct cursor {
    explicit cursor(const gguf_file* file) : f(file) {}
    const gguf_file* f;
    std::uint64_t pos = 0;
    std::string tensor;  // context for error messages
    const std::string* key = nullptr;  // the metadata key being read, for error messages
    std::uint64_t memory = 0;          // bytes the parsed header takes so far (max_header_memory)

    [[noreturn]] void fail(std::uint64_t at, const std::string& what) const {
      throw format_error(f->path(), tensor, at, what);
    }
    // Counts `bytes` of memory about to be allocated; format_error naming the key (or tensor) past the limit.
    void charge(std::uint64_t bytes, std::uint64_t at) {
      if (bytes <= max_header_memory - memory) {
        memory += bytes;
        return;
      }
      fail(at, (key ? "metadata key '" + *key + "': " : std::string()) + "the parsed header would take more than " +
                   std::to_string(max_header_memory) + " bytes of memory (max_header_memory)");
    }
    static std::uint64_t string_memory(std::uint64_t n) noexcept {
      return sizeof(std::string) + (n > 15 ? n + 1 : 0);  // short strings live inside the object
    }
    std::uint64_t remaining() const noexcept { return f->map_.size() - pos; }
    const std::uint8_t* take(std::uint64_t n, const char* what) {
      if (n > remaining())
        fail(pos, std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
                      std::to_string(remaining()) + " left");
      const std::uint8_t* p = f->map_.data() + pos;
      pos += n;
      return p;
    }
    std::uint32_t u32(const char* what) { return static_cast<std::uint32_t>(detail::load_le(take(4, what), 4)); }
    std::uint64_t u64(const char* what) { return detail::load_le(take(8, what), 8); }
    std::string str(const char* what) {
      const std::uint64_t at = pos;
      const std::uint64_t n = u64(what);
      if (n > remaining())
        fail(at, std::string(what) + " length " + std::to_string(n) + " exceeds the " + std::to_string(remaining()) +
                     " bytes left in the file");
      charge(string_memory(n), at);
      const auto* p = take(n, what);
      return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    }
  };

  const gguf_kv* entry(const std::string& key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second];
  }
  [[noreturn]] void wrong_type(const gguf_kv& kv, const char* want) const {
    std::string got = to_string(kv.value.type());
    if (kv.value.is_array()) got += std::string(" of ") + to_string(kv.value.element_type());
    throw format_error(path(), {}, kv.offset, "metadata key '" + kv.key + "' has type " + got + ", expected " + want);
  }

  gguf_type read_type(cursor& c, const char* what) {
    const std::uint64_t at = c.pos;
    const std::uint32_t id = c.u32(what);
    if (!detail::gguf_type_known(id)) c.fail(at, std::string("unknown ") + what + " " + std::to_string(id));
    return static_cast<gguf_type>(id);
  }

  gguf_value read_value(cursor& c, gguf_type t, int depth) {
    if (t == gguf_type::string) return gguf_value::string(c.str("string value"));
    if (t != gguf_type::array) {
      const std::size_t n = gguf_scalar_size(t);
      return gguf_value::scalar(t, detail::load_le(c.take(n, "scalar value"), n));
    }
    const std::uint64_t at = c.pos;
    if (depth >= max_array_depth) c.fail(at, "arrays nested deeper than " + std::to_string(max_array_depth));
    const gguf_type et = read_type(c, "array element type");
    const std::uint64_t count_at = c.pos;
    const std::uint64_t count = c.u64("array length");
    // Every element takes at least this many bytes, so a count beyond remaining/min is a lie.
    const std::uint64_t min_size = et == gguf_type::string ? 8 : et == gguf_type::array ? 12 : gguf_scalar_size(et);
    if (count > c.remaining() / min_size)
      c.fail(count_at, "array of " + std::to_string(count) + " " + to_string(et) + " elements exceeds the " +
                           std::to_string(c.remaining()) + " bytes left in the file");
    // the element storage, before it is reserved (strings' heap bytes are counted as they are read)
    const std::uint64_t element_memory =
        et == gguf_type::string ? sizeof(std::string) : et == gguf_type::array ? sizeof(gguf_value) : min_size;
    c.charge(count * element_memory, count_at);
    gguf_value v = gguf_value::array(et);
    v.count_ = count;
    if (et == gguf_type::string) {
      v.strings_.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) v.strings_.push_back(c.str("string array element"));
    } else if (et == gguf_type::array) {
      v.arrays_.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) {
        const gguf_type inner = gguf_type::array;
        v.arrays_.push_back(read_value(c, inner, depth + 1));
      }
    } else {
      const std::uint64_t bytes = count * min_size;
      const std::uint8_t* p = c.take(bytes, "array data");
      v.raw_.assign(p, p + bytes);
    }
    return v;
  }

  void parse() {
    cursor c{this};
    const std::uint32_t m = c.u32("magic");
    if (m != magic) c.fail(0, "not a GGUF file (bad magic)");
    version_ = c.u32("version");
    if (version_ == 1) c.fail(4, "GGUF version 1 is not supported (convert the file to version 3)");
    if (version_ != 2 && version_ != 3) {
      const bool swapped = (version_ & 0xFFFFu) == 0 && version_ != 0;
      c.fail(4, swapped ? "big-endian GGUF is not supported"
                        : "unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
    }
    const std::uint64_t n_tensors = c.u64("tensor count");
    if (n_tensors > max_tensors)
      c.fail(8, "tensor count " + std::to_string(n_tensors) + " exceeds the limit " + std::to_string(max_tensors));
    const std::uint64_t n_kv = c.u64("metadata count");
    if (n_kv > max_kv) c.fail(16, "metadata count " + std::to_string(n_kv) + " exceeds the limit " + std::to_string(max_kv));

    for (std::uint64_t i = 0; i < n_kv; ++i) {
      gguf_kv kv;
      kv.offset = c.pos;
      c.key = nullptr;
      c.charge(2 * sizeof(gguf_kv) + 64, kv.offset);  // the entry (vector growth) and its index node
      kv.key = c.str("metadata key");
      c.key = &kv.key;
      const gguf_type t = read_type(c, "metadata value type");
      kv.value = read_value(c, t, 0);
      if (!kv_index_.emplace(kv.key, kv_.size()).second) c.fail(kv.offset, "duplicate metadata key '" + kv.key + "'");
      c.key = nullptr;
      kv_.push_back(std::move(kv));
    }

    alignment_ = default_alignment;
    if (const gguf_kv* a = entry("general.alignment")) {
      if (a->value.type() != gguf_type::uint32) wrong_type(*a, "uint32");
      const auto v = static_cast<std::uint32_t>(a->value.raw_bits());
      if (v == 0 || (v & (v - 1)) != 0) c.fail(a->offset, "general.alignment " + std::to_string(v) + " is not a power of 2");
      alignment_ = v;
    }

    // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes at least per tensor info.
    if (n_tensors > c.remaining() / 24)
      c.fail(c.pos, std::to_string(n_tensors) + " tensor infos do not fit in the " + std::to_string(c.remaining()) +
                        " bytes left in the file");
    c.charge(n_tensors * (sizeof(gguf_tensor_info) + 64), c.pos);  // the infos and their index nodes
    tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::uint64_t i = 0; i < n_tensors; ++i) {
      gguf_tensor_info ti;
      ti.info_offset = c.pos;
      c.tensor.clear();
      ti.name = c.str("tensor name");
      c.tensor = ti.name;
      const std::uint64_t dims_at = c.pos;
      ti.n_dims = c.u32("n_dims");
      if (ti.n_dims > 4) c.fail(dims_at, "n_dims " + std::to_string(ti.n_dims) + " > 4");
      for (std::uint32_t d = 0; d < ti.n_dims; ++d) {
        const std::uint64_t at = c.pos;
        const auto ne = static_cast<std::int64_t>(c.u64("tensor dimension"));
        if (ne < 0) c.fail(at, "negative dimension " + std::to_string(ne));
        ti.ne[d] = ne;
      }
      // The element count must fit int64 (ggml's check, written without overflowing).
      std::int64_t prod = 1;
      for (std::size_t d = 0; d < 4; ++d) {
        if (ti.ne[d] != 0 && prod > INT64_MAX / ti.ne[d]) c.fail(dims_at, "element count overflows int64");
        prod *= ti.ne[d];
      }
      const std::uint64_t type_at = c.pos;
      const std::uint32_t type_id = c.u32("ggml type");
      const ggml_type_traits* tr = ggml_traits(type_id);
      if (!tr) c.fail(type_at, "unknown ggml type id " + std::to_string(type_id));
      ti.type = static_cast<ggml_type>(type_id);
      if (ti.ne[0] % tr->block_size != 0)
        c.fail(dims_at, "row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " + tr->name +
                            " block size " + std::to_string(tr->block_size));
      // Bytes = row bytes * rows; bounded by the file size below, checked here for overflow.
      const std::uint64_t row_blocks = static_cast<std::uint64_t>(ti.ne[0]) / tr->block_size;
      if (row_blocks > UINT64_MAX / tr->type_size) c.fail(dims_at, "row byte size overflows");
      const std::uint64_t row_bytes = row_blocks * tr->type_size;
      // Rows = ne1 * ne2 * ne3, each product checked: a zero dimension elsewhere makes the element count 0
      // without bounding the other factors (n_rows() must fit int64).
      std::uint64_t rows = 1;
      for (std::size_t d = 1; d < 4; ++d) {
        const auto ne = static_cast<std::uint64_t>(ti.ne[d]);
        if (ne != 0 && rows > INT64_MAX / ne) c.fail(dims_at, "row count overflows int64");
        rows *= ne;
      }
      if (rows != 0 && row_bytes > UINT64_MAX / rows) c.fail(dims_at, "tensor byte size overflows");
      ti.size = row_bytes * rows;
      const std::uint64_t offset_at = c.pos;
      ti.offset = c.u64("tensor offset");
      if (ti.offset % alignment_ != 0)
        c.fail(offset_at, "data offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                              std::to_string(alignment_));
      if (!tensor_index_.emplace(ti.name, tensors_.size()).second) c.fail(ti.info_offset, "duplicate tensor name");
      tensors_.push_back(std::move(ti));
    }
    c.tensor.clear();

    // Data section: starts at the next multiple of the alignment.
    const std::uint64_t end_of_infos = c.pos;
    data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
    const std::uint64_t file_size = map_.size();
    const std::uint64_t data_size = data_offset_ <= file_size ? file_size - data_offset_ : 0;
    std::vector<std::size_t> order(tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (const auto& ti : tensors_) {
      if (ti.offset > data_size || ti.size > data_size - ti.offset)
        throw format_error(path(), ti.name, data_offset_ + ti.offset,
                           "tensor data of " + std::to_string(ti.size) + " bytes at data offset " +
                               std::to_string(ti.offset) + " runs past the end of the file (" +
                               std::to_string(file_size) + " bytes, data section at " + std::to_string(data_offset_) +
                               ")");
    }
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    for (std::size_t i = 1; i < order.size(); ++i) {
      const auto& prev = tensors_[order[i - 1]];
      const auto& cur = tensors_[order[i]];
      if (cur.size > 0 && prev.offset + prev.size > cur.offset)
        throw format_error(path(), cur.name, data_offset_ + cur.offset,
                           "tensor data overlaps tensor '" + prev.name + "'");
    }
  }

  mapped_file map_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<gguf_kv> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<gguf_tensor_info> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

// Builds a GGUF file: metadata in insertion order, tensors in insertion order laid out like ggml's and
// gguf-py's writers (each at the next multiple of the alignment, zero padding, the data section padded to the
// alignment at the end). Written atomically through atomic_file_writer and re-opened with gguf_file before it
// replaces the destination. A file read with gguf_file and passed through from() is reproduced byte for byte
// when its tensors are stored in that canonical layout (as every ggml- or gguf-py-written file is).
class gguf_writer {
 public:
  gguf_writer() = default;

  // Metadata and tensors of `file`; tensor bytes are borrowed from its map, so `file` must outlive write().
  static gguf_writer from(const gguf_file& file) {
    gguf_writer w;
    w.version_ = file.version();
    for (const auto& kv : file.metadata()) w.set(kv.key, kv.value);
    for (const auto& ti : file.tensors()) {
      entry e;
      e.name = ti.name;
      e.n_dims = ti.n_dims;
      e.ne = ti.ne;
      e.type = ti.type;
      e.size = ti.size;
      e.view = file.tensor_data(ti);
      w.tensor_index_.emplace(e.name, w.tensors_.size());
      w.tensors_.push_back(std::move(e));
    }
    return w;
  }

  void set_version(std::uint32_t version) {
    if (version != 2 && version != 3) throw invalid_argument("GGUF version must be 2 or 3");
    version_ = version;
  }
  std::uint32_t version() const noexcept { return version_; }

  // Sets a key: replaces the value in place if present, else appends.
  void set(const std::string& key, gguf_value value) {
    const auto it = kv_index_.find(key);
    if (it != kv_index_.end()) {
      kv_[it->second].second = std::move(value);
    } else {
      kv_index_.emplace(key, kv_.size());
      kv_.emplace_back(key, std::move(value));
    }
  }
  bool remove(const std::string& key) {
    const auto it = kv_index_.find(key);
    if (it == kv_index_.end()) return false;
    kv_.erase(kv_.begin() + static_cast<std::ptrdiff_t>(it->second));
    reindex_kv();
    return true;
  }
  const gguf_value* find(const std::string& key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
  }
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return kv_; }

  // general.alignment (uint32, a power of 2); 32 when the key is absent.
  void set_alignment(std::uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
      throw invalid_argument("GGUF alignment " + std::to_string(alignment) + " is not a power of 2");
    set("general.alignment", gguf_value::u32(alignment));
  }
  std::uint32_t alignment() const {
    const gguf_value* v = find("general.alignment");
    if (!v) return gguf_file::default_alignment;
    if (v->type() != gguf_type::uint32) throw invalid_argument("general.alignment must be a uint32");
    const auto a = static_cast<std::uint32_t>(v->raw_bits());
    if (a == 0 || (a & (a - 1)) != 0) throw invalid_argument("general.alignment is not a power of 2");
    return a;
  }

  // Adds (or replaces, keeping its position) a tensor from raw bytes in `type`; ne = {ne0, ne1, ...}, 1 to 4
  // dims, ne0 contiguous. bytes.size() must equal the type's size for ne.
  void add_tensor(const std::string& name, ggml_type type, const std::vector<std::int64_t>& ne,
                  std::vector<std::uint8_t> bytes) {
    entry e = make_entry(name, type, ne, bytes.size());
    e.owned = std::make_shared<std::vector<std::uint8_t>>(std::move(bytes));
    put(std::move(e));
  }
  // As add_tensor, but borrows `data` (nbytes), which must stay valid until write() returns.
  void add_tensor_view(const std::string& name, ggml_type type, const std::vector<std::int64_t>& ne, const void* data,
                       std::uint64_t nbytes) {
    entry e = make_entry(name, type, ne, nbytes);
    e.view = static_cast<const std::uint8_t*>(data);
    put(std::move(e));
  }
  // Quantizes prod(ne) floats (row-major, ne0 contiguous) to `type` with qroar::quantize_row (ggml's reference
  // quantizers) and adds them. `type` must satisfy ggml_type_is_convertible.
  void add_tensor_quantized(const std::string& name, ggml_type type, const std::vector<std::int64_t>& ne,
                            const float* values) {
    if (!ggml_type_is_convertible(type)) throw unsupported(std::string("cannot quantize to ggml type ") + to_string(type));
    std::array<std::int64_t, 4> d{{1, 1, 1, 1}};
    check_dims(name, type, ne, d);
    const std::int64_t rows = d[1] * d[2] * d[3];
    const std::uint64_t row_bytes = ggml_row_size(type, static_cast<std::uint64_t>(d[0]));
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(row_bytes * static_cast<std::uint64_t>(rows)));
    for (std::int64_t r = 0; r < rows; ++r)
      quantize_row(type, values + r * d[0], bytes.data() + static_cast<std::uint64_t>(r) * row_bytes, d[0]);
    add_tensor(name, type, ne, std::move(bytes));
  }
  bool remove_tensor(const std::string& name) {
    const auto it = tensor_index_.find(name);
    if (it == tensor_index_.end()) return false;
    tensors_.erase(tensors_.begin() + static_cast<std::ptrdiff_t>(it->second));
    tensor_index_.clear();
    for (std::size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
    return true;
  }
  std::size_t tensor_count() const noexcept { return tensors_.size(); }
  // Reorders the tensors (and so their data offsets) by `less(name_a, name_b)`, stably.
  template <class Less>
  void sort_tensors(Less less) {
    std::stable_sort(tensors_.begin(), tensors_.end(), [&](const entry& a, const entry& b) { return less(a.name, b.name); });
    tensor_index_.clear();
    for (std::size_t i = 0; i < tensors_.size(); ++i) tensor_index_.emplace(tensors_[i].name, i);
  }
  // Name and type of every tensor, in file order.
  std::vector<std::pair<std::string, ggml_type>> tensor_types() const {
    std::vector<std::pair<std::string, ggml_type>> out;
    out.reserve(tensors_.size());
    for (const auto& t : tensors_) out.emplace_back(t.name, t.type);
    return out;
  }

  // The header (magic through the padding before the data section) as it will be written.
  std::vector<std::uint8_t> header() const {
    const std::uint64_t align = alignment();
    std::vector<std::uint8_t> out;
    detail::append_le(out, gguf_file::magic, 4);
    detail::append_le(out, version_, 4);
    detail::append_le(out, tensors_.size(), 8);
    detail::append_le(out, kv_.size(), 8);
    for (const auto& kv : kv_) {
      detail::append_le(out, kv.first.size(), 8);
      out.insert(out.end(), kv.first.begin(), kv.first.end());
      detail::append_le(out, static_cast<std::uint32_t>(kv.second.type()), 4);
      kv.second.serialize(out);
    }
    std::uint64_t offset = 0;
    for (const auto& t : tensors_) {
      detail::append_le(out, t.name.size(), 8);
      out.insert(out.end(), t.name.begin(), t.name.end());
      detail::append_le(out, t.n_dims, 4);
      for (std::uint32_t d = 0; d < t.n_dims; ++d) detail::append_le(out, static_cast<std::uint64_t>(t.ne[d]), 8);
      detail::append_le(out, static_cast<std::uint32_t>(t.type), 4);
      detail::append_le(out, offset, 8);
      offset += pad(t.size, align);
    }
    out.resize(static_cast<std::size_t>(pad(out.size(), align)), 0);
    return out;
  }

  // Writes the file atomically (see atomic_file_writer; `inputs` are paths it refuses to overwrite), then
  // re-opens the temporary file with gguf_file to validate it before renaming it into place.
  void write(const std::string& path, const std::vector<std::string>& inputs = {}) const {
    const std::uint64_t align = alignment();
    const std::vector<std::uint8_t> head = header();
    const long faults_before = detail::mapping_faults.load();  // a source file truncated while copied
    atomic_file_writer out(path, inputs);
    out.write(head.data(), head.size());
    for (const auto& t : tensors_) {
      const std::uint8_t* p = t.owned ? t.owned->data() : t.view;
      if (t.size > 0) out.write(p, static_cast<std::size_t>(t.size));
      out.write_zeros(static_cast<std::size_t>(pad(t.size, align) - t.size));
    }
    const std::size_t n_tensors = tensors_.size();
    check_no_mapping_faults(faults_before, path);
    out.commit([n_tensors](const std::string& temp) {
      const gguf_file check = gguf_file::open(temp);
      if (check.tensors().size() != n_tensors) throw io_error(temp + ": written GGUF does not read back");
    });
  }

 private:
  struct entry {
    std::string name;
    std::uint32_t n_dims = 0;
    std::array<std::int64_t, 4> ne{{1, 1, 1, 1}};
    ggml_type type = ggml_type::f32;
    std::uint64_t size = 0;
    const std::uint8_t* view = nullptr;
    std::shared_ptr<const std::vector<std::uint8_t>> owned;
  };

  static std::uint64_t pad(std::uint64_t n, std::uint64_t align) { return n + (align - n % align) % align; }

  static void check_dims(const std::string& name, ggml_type type, const std::vector<std::int64_t>& ne,
                         std::array<std::int64_t, 4>& d) {
    if (ne.empty() || ne.size() > 4) throw invalid_argument("tensor '" + name + "': 1 to 4 dimensions expected");
    const ggml_type_traits* tr = ggml_traits(static_cast<std::uint32_t>(type));
    if (!tr) throw invalid_argument("tensor '" + name + "': unknown ggml type");
    // Both the element count and the row count (ne1 * ne2 * ne3) must fit int64; a zero dimension does not
    // bound the others.
    std::int64_t prod = 1;
    std::int64_t rows = 1;
    for (std::size_t i = 0; i < ne.size(); ++i) {
      if (ne[i] < 0) throw invalid_argument("tensor '" + name + "': negative dimension");
      if (ne[i] != 0 && prod > INT64_MAX / ne[i]) throw invalid_argument("tensor '" + name + "': too many elements");
      if (i > 0 && ne[i] != 0 && rows > INT64_MAX / ne[i])
        throw invalid_argument("tensor '" + name + "': too many rows");
      prod *= ne[i];
      if (i > 0) rows *= ne[i];
      d[i] = ne[i];
    }
    if (static_cast<std::uint64_t>(d[0]) / tr->block_size > UINT64_MAX / tr->type_size)
      throw invalid_argument("tensor '" + name + "': row byte size overflows");
    if (d[0] % tr->block_size != 0)
      throw invalid_argument("tensor '" + name + "': row length " + std::to_string(d[0]) + " is not a multiple of the " +
                             tr->name + " block size " + std::to_string(tr->block_size));
  }
  static entry make_entry(const std::string& name, ggml_type type, const std::vector<std::int64_t>& ne,
                          std::uint64_t nbytes) {
    entry e;
    e.name = name;
    e.type = type;
    e.n_dims = static_cast<std::uint32_t>(ne.size());
    check_dims(name, type, ne, e.ne);
    const std::uint64_t row_size = ggml_row_size(type, static_cast<std::uint64_t>(e.ne[0]));
    const auto rows = static_cast<std::uint64_t>(e.ne[1] * e.ne[2] * e.ne[3]);
    if (rows != 0 && row_size > UINT64_MAX / rows) throw invalid_argument("tensor '" + name + "': byte size overflows");
    const std::uint64_t expected = row_size * rows;
    if (nbytes != expected)
      throw invalid_argument("tensor '" + name + "': " + std::to_string(nbytes) + " bytes given, " +
                             std::to_string(expected) + " expected for " + to_string(type));
    e.size = nbytes;
    return e;
  }
  void put(entry e) {
    const auto it = tensor_index_.find(e.name);
    if (it != tensor_index_.end()) {
      tensors_[it->second] = std::move(e);
    } else {
      tensor_index_.emplace(e.name, tensors_.size());
      tensors_.push_back(std::move(e));
    }
  }
  void reindex_kv() {
    kv_index_.clear();
    for (std::size_t i = 0; i < kv_.size(); ++i) kv_index_.emplace(kv_[i].first, i);
  }

  std::uint32_t version_ = 3;
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<entry> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace v0
}  // namespace qroar
