// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// Writes a file atomically: the bytes go to a temporary file in the destination folder, are flushed to
// disk, optionally verified by `verify(temp_path)` (which throws on a mismatch), and only then renamed
// over `path`. On any failure the temporary file is removed and `path` is left as it was.
// Refuses to overwrite any of `inputs` (a patched model must never replace the file it was read from).
class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::string path, const std::vector<std::string>& inputs = {}) : path_(std::move(path)) {
    namespace fs = std::filesystem;
    for (const auto& in : inputs) {
      std::error_code ec;
      if (fs::exists(path_, ec) && fs::equivalent(path_, in, ec))
        throw invalid_argument("refusing to overwrite the input file " + in + " (choose another output path)");
    }
    const fs::path target(path_);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    std::string tmpl = (dir / ("." + target.filename().string() + ".qroar-tmp-XXXXXX")).string();
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) throw io_error(path_ + ": cannot create a temporary file in " + dir.string() + ": " + std::strerror(errno));
    temp_ = tmpl;
  }
  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  ~atomic_file_writer() { abandon(); }

  void write(const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw io_error(path_ + ": write failed: " + std::strerror(errno));
      }
      p += w;
      n -= static_cast<std::size_t>(w);
      written_ += static_cast<std::uint64_t>(w);
    }
  }
  void write_zeros(std::size_t n) {
    static const char zeros[256] = {};
    while (n > 0) {
      const std::size_t k = n < sizeof zeros ? n : sizeof zeros;
      write(zeros, k);
      n -= k;
    }
  }
  std::uint64_t bytes_written() const noexcept { return written_; }
  const std::string& temp_path() const noexcept { return temp_; }

  // Flushes, verifies and renames into place.
  void commit(const std::function<void(const std::string&)>& verify = {}) {
    if (::fsync(fd_) != 0) throw io_error(path_ + ": fsync failed: " + std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    if (verify) verify(temp_);
    ::chmod(temp_.c_str(), 0644);
    if (std::rename(temp_.c_str(), path_.c_str()) != 0)
      throw io_error(path_ + ": cannot rename the temporary file into place: " + std::strerror(errno));
    temp_.clear();
  }

 private:
  void abandon() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_.empty()) std::remove(temp_.c_str());
    temp_.clear();
  }
  std::string path_;
  std::string temp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

}  // namespace v0
}  // namespace qroar
