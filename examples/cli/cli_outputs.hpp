// Outputs of the qroar command line: every output location is checked before the work starts (its folder exists,
// it is not a device / FIFO / socket, it is not one of the command's inputs by device and inode), and again right
// before it is written; report files and copies are written like models (qroar/io/atomic_write.hpp).
#pragma once

#include <qroar/io/atomic_folder.hpp>
#include <qroar/io/atomic_write.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace qroar_cli {

// Every input file or folder of the running command (model, tokenizer, texts, token files, calibration, scales,
// RoPE config, dev and validation files): no output may be one of them. Set once by declare_inputs.
inline std::vector<std::string>& command_inputs() {
  static std::vector<std::string> inputs;
  return inputs;
}

inline void declare_inputs(const std::vector<std::string>& paths) {
  for (const auto& p : paths)
    if (!p.empty()) command_inputs().push_back(p);
}

namespace detail {
// The nearest existing ancestor of `path` must be a folder this process may write into.
inline void check_creatable(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path p = fs::absolute(fs::path(path)).lexically_normal();
  while (p.has_parent_path() && p != p.parent_path()) {
    p = p.parent_path();
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) continue;
    if (!S_ISDIR(st.st_mode)) throw qroar::io_error(path + ": " + p.string() + " is not a folder");
    if (::access(p.c_str(), W_OK | X_OK) != 0)
      throw qroar::io_error(path + ": cannot create it in " + p.string() + ": " + std::strerror(errno));
    return;
  }
}
}  // namespace detail

// An output file (search -o, a GGUF or llama2.c model): its folder must exist and be writable, the file itself a
// regular file or absent, and none of the inputs.
inline void check_output_file(const std::string& path) {
  qroar::check_output_file(path, command_inputs());
  const std::string dir = std::filesystem::path(path).has_parent_path() ? std::filesystem::path(path).parent_path().string() : ".";
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw qroar::io_error(path + ": cannot write into " + dir + ": " + std::strerror(errno));
}

// An output folder (a Hugging Face model): absent (then creatable), or a folder that is none of the inputs and
// whose model files are none of the inputs.
inline void check_output_folder(const std::string& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) throw qroar::io_error(dir + ": cannot inspect the output folder: " + std::strerror(errno));
    detail::check_creatable(dir);
    return;
  }
  if (S_ISLNK(st.st_mode)) throw qroar::invalid_argument(dir + ": the output folder is a symbolic link (name the folder itself)");
  if (!S_ISDIR(st.st_mode)) throw qroar::invalid_argument(dir + ": the output path exists and is not a folder");
  std::error_code ec;
  for (const auto& in : command_inputs())
    if (std::filesystem::equivalent(dir, in, ec))
      throw qroar::invalid_argument("refusing to overwrite the input folder " + in + " (choose another output folder)");
  for (const char* name : {"model.safetensors", "config.json", "tokenizer.model"}) {
    const std::string p = (std::filesystem::path(dir) / name).string();
    if (::lstat(p.c_str(), &st) == 0) qroar::check_output_file(p, command_inputs());
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw qroar::io_error(dir + ": cannot write into the output folder: " + std::strerror(errno));
}

// --report DIR: a folder (created now when missing, so that a bad path fails before the work); a file there is
// refused as a report folder.
inline void prepare_report_folder(const std::string& dir) {
  if (dir.empty()) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw qroar::invalid_argument(dir + ": --report needs a folder, and this is not one");
  } else {
    detail::check_creatable(dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw qroar::io_error(dir + ": cannot create the report folder: " + ec.message());
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw qroar::io_error(dir + ": cannot write into the report folder: " + std::strerror(errno));
}

// One report file, written like a model: temporary file + fsync + rename, every error checked (a full disk is an
// io_error, never an empty file), a symbolic link planted under that name is replaced, never followed, and an input
// is never overwritten.
inline void write_text_file(const std::string& dir, const std::string& name, const std::string& text) {
  prepare_report_folder(dir);
  qroar::atomic_file_writer out((std::filesystem::path(dir) / name).string(), command_inputs());
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace qroar_cli
