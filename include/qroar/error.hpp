// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace qroar {
inline namespace v0 {

// Bad user input (files, options, specs) is reported with an exception derived from qroar::error.
// Each class has a stable numeric id (like nlohmann::json's exception ids) and what() starts with
// "[qroar.<kind>.<id>]". Messages name the file, the tensor and the byte offset where they apply.
class error : public std::runtime_error {
 public:
  int id() const noexcept { return id_; }

 protected:
  error(int id, const std::string& kind, const std::string& message)
      : std::runtime_error("[qroar." + kind + "." + std::to_string(id) + "] " + message), id_(id) {}

 private:
  int id_;
};

// Invalid options or parameters: a RoPE scaling with factor <= 0, an unknown band spec, a bad quant spec.
class invalid_argument : public error {
 public:
  explicit invalid_argument(const std::string& message, int id = 100) : error(id, "invalid_argument", message) {}
};

// A file that cannot be opened, read or written.
class io_error : public error {
 public:
  explicit io_error(const std::string& message, int id = 200) : error(id, "io_error", message) {}
};

// A file whose content violates its format: truncated, inconsistent sizes, offsets out of range,
// unknown dtypes. `file`, `tensor` (may be empty) and `offset` locate the fault.
class format_error : public error {
 public:
  format_error(const std::string& file, const std::string& tensor_name, std::uint64_t offset, const std::string& what,
               int id = 300)
      : error(id, "format_error", describe(file, tensor_name, offset, what)),
        file_(file), tensor_(tensor_name), offset_(offset) {}

  const std::string& file() const noexcept { return file_; }
  const std::string& tensor() const noexcept { return tensor_; }
  std::uint64_t offset() const noexcept { return offset_; }

 private:
  static std::string describe(const std::string& file, const std::string& tensor_name, std::uint64_t offset,
                              const std::string& what) {
    std::string s = file;
    if (!tensor_name.empty()) s += ": tensor '" + tensor_name + "'";
    s += ": at byte offset " + std::to_string(offset) + ": " + what;
    return s;
  }
  std::string file_, tensor_;
  std::uint64_t offset_;
};

// Valid format, but a model or feature qroar does not support (an architecture, a tensor type).
class unsupported : public error {
 public:
  explicit unsupported(const std::string& message, int id = 400) : error(id, "unsupported", message) {}
};

// Weights or activations that are not finite, or a patch that would overflow fp16 scales.
class numeric_error : public error {
 public:
  explicit numeric_error(const std::string& message, int id = 500) : error(id, "numeric_error", message) {}
};

}  // namespace v0
}  // namespace qroar
