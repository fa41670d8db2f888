// SPDX-License-Identifier: MIT
// One entry point for every model format qroar reads.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include "../config.hpp"
#include "../error.hpp"
#include "../model/llama_weights.hpp"
#include "gguf_model.hpp"
#include "hf_model.hpp"
#include "llama2c.hpp"
#include "mapped_file.hpp"
#include "read_file.hpp"

namespace qroar {
inline namespace v0 {

enum class model_format { hf_folder, gguf, llama2c, unknown };

inline const char* to_string(model_format f) noexcept {
  switch (f) {
    case model_format::hf_folder: return "hf";
    case model_format::gguf: return "gguf";
    case model_format::llama2c: return "llama2c";
    case model_format::unknown: return "unknown";
  }
  return "?";
}

struct model_load_options {
  // Overrides the trained context (config.original_ctx, and the RoPE scaling's L0 when it has one) recorded in
  // the file; 0 keeps the file's. Needed for GGUF files whose llama.context_length is not the training context.
  int original_ctx = 0;
};

// What load_model would read at `path`, from the file system and the first bytes only:
//   a directory, or config.json / *.safetensors / *.safetensors.index.json inside one -> hf_folder
//   magic "GGUF"                                                                        -> gguf
//   a plausible llama2.c version-0 header (or the "ak42" magic of versions 1/2), or a .bin name -> llama2c
// Throws io_error when `path` does not exist or cannot be read.
inline model_format detect_model_format(const std::string& path) {
  namespace fs = std::filesystem;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)  // the reason: "No such file or directory", "Permission denied", ...
    throw io_error(path + ": cannot open: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    if (::access(path.c_str(), R_OK | X_OK) != 0)
      throw io_error(path + ": cannot read the folder: " + std::strerror(errno));
    return model_format::hf_folder;
  }
  const fs::path p(path);
  const std::string name = p.filename().string();
  auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (name == "config.json" || ends_with(".safetensors") || ends_with(".safetensors.index.json"))
    return model_format::hf_folder;
  const mapped_file file(path);
  if (file.size() >= 4) {
    const std::uint32_t magic = detail::model_io::read_u32_le(file.data());
    if (magic == 0x46554747u) return model_format::gguf;       // "GGUF"
    if (magic == 0x616b3432u) return model_format::llama2c;    // "ak42": llama2.c v1/v2, rejected by load_llama2c
  }
  if (file.size() >= llama2c_header_bytes) {
    try {
      llama2c_file_size(read_llama2c_header(file), path);
      return model_format::llama2c;
    } catch (const error&) {
    }
  }
  if (ends_with(".bin")) return model_format::llama2c;
  return model_format::unknown;
}

// Loads a LLaMA-family model from a Hugging Face folder, a GGUF file or a llama2.c checkpoint (see
// detect_model_format). A path to a file inside an HF folder loads the folder. Errors are those of
// load_hf_model, load_gguf_model and load_llama2c, plus unsupported for a file of no known format.
// A std::bad_alloc while loading is an io_error naming the path (reading_or_io_error).
inline llama_model load_model(const std::string& path, const model_load_options& options = {});

namespace detail {
inline llama_model load_model_unchecked(const std::string& path, const model_load_options& options) {
  namespace fs = std::filesystem;
  const long faults_before = detail::mapping_faults.load();  // a file truncated while read: io_error, not SIGBUS
  llama_model m;
  switch (detect_model_format(path)) {
    case model_format::hf_folder: {
      std::error_code ec;
      const fs::path p(path);
      const std::string dir = fs::is_directory(p, ec) ? path : (p.has_parent_path() ? p.parent_path().string() : ".");
      m = load_hf_model(dir);
      break;
    }
    case model_format::gguf: {
      gguf_load_options o;
      o.original_ctx = options.original_ctx;
      m = load_gguf_model(path, o);
      break;
    }
    case model_format::llama2c:
      m = load_llama2c(path);
      break;
    case model_format::unknown:
      throw unsupported(path + ": unknown model format (expected a Hugging Face folder, a .gguf file or a llama2.c "
                               "version-0 checkpoint)");
  }
  if (options.original_ctx > 0) {
    m.config.original_ctx = options.original_ctx;
    if (m.config.rope.type != rope_type::none) m.config.rope.original_ctx = options.original_ctx;
  }
  check_no_mapping_faults(faults_before, path);
  return m;
}
}  // namespace detail

inline llama_model load_model(const std::string& path, const model_load_options& options) {
  return reading_or_io_error(path, "model", [&] { return detail::load_model_unchecked(path, options); });
}

}  // namespace v0
}  // namespace qroar
