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
#include "temp_files.hpp"

namespace qroar {
inline namespace v0 {

namespace detail {

// The permission bits a new file gets: 0666 without the process umask (read from /proc/self/status, which does
// not change it; elsewhere umask() is set and restored).
inline mode_t new_file_mode() noexcept {
  mode_t mask = 022;
  bool known = false;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "Umask:", 6) == 0) {
        mask = static_cast<mode_t>(std::strtoul(line + 6, nullptr, 8));
        known = true;
        break;
      }
    std::fclose(f);
  }
  if (!known) {
    mask = ::umask(022);
    ::umask(mask);
  }
  return static_cast<mode_t>(0666 & ~mask);
}

// Flushes a folder's entries (a rename into it) to disk. Best effort: file systems that cannot fsync a folder
// (EINVAL) are not an error.
inline void fsync_folder(const std::string& dir) noexcept {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

inline std::string parent_folder(const std::string& path) {
  const std::filesystem::path p(path);
  return p.has_parent_path() ? p.parent_path().string() : std::string(".");
}

// A running 64-bit checksum of a byte stream, independent of how the stream is cut into pieces: what
// atomic_file_writer wrote is compared with what the file holds after fsync, before the rename.
class stream_checksum {
 public:
  void update(const void* data, std::size_t n) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    for (; n > 0 && fill_ != 0; --n) push(*p++);
    for (; n >= 8; n -= 8, p += 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      mix(w);
    }
    for (; n > 0; --n) push(*p++);
  }
  std::uint64_t value() const noexcept {
    std::uint64_t h = h_ ^ (pending_ * 0xff51afd7ed558ccdULL) ^ (length_ * 0xc4ceb9fe1a85ec53ULL);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 29);
  }

 private:
  void push(unsigned char c) noexcept {
    pending_ |= static_cast<std::uint64_t>(c) << (8 * fill_);
    ++length_;
    if (++fill_ == 8) {
      const std::uint64_t w = pending_;
      pending_ = 0;
      fill_ = 0;
      length_ -= 8;
      mix(w);
    }
  }
  void mix(std::uint64_t w) noexcept {
    length_ += 8;
    h_ = (h_ ^ w) * 0x9E3779B97F4A7C15ULL;
    h_ = (h_ << 31) | (h_ >> 33);
  }
  std::uint64_t h_ = 0x243F6A8885A308D3ULL, pending_ = 0, length_ = 0;
  int fill_ = 0;
};

// The checksum of a whole file, read with read(2); throws io_error.
inline std::uint64_t file_checksum(const std::string& path, std::uint64_t* size = nullptr) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path + ": cannot re-open to verify: " + std::strerror(errno));
  stream_checksum c;
  std::vector<char> buf(1 << 16);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw io_error(path + ": cannot read back to verify: " + std::strerror(e));
    }
    if (n == 0) break;
    c.update(buf.data(), static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (size) *size = total;
  return c.value();
}

}  // namespace detail

// Throws unless `path` may be replaced by a new file (checked again right before every write):
//   * invalid_argument when it exists and is not a regular file (a device such as /dev/null, a FIFO, a socket, a
//     folder; a symbolic link is judged by its target: /dev/stdout is refused), or when it is the same file
//     (device and inode) as one of `inputs` or, for an input folder, as one of the files directly inside it;
//   * io_error when its folder does not exist or is not a folder.
inline void check_output_file(const std::string& path, const std::vector<std::string>& inputs = {}) {
  if (path.empty()) throw invalid_argument("empty output path");
  const std::string dir = detail::parent_folder(path);
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0)
    throw io_error(path + ": the output folder " + dir + " cannot be used: " + std::strerror(errno));
  if (!S_ISDIR(ds.st_mode)) throw io_error(path + ": " + dir + " is not a folder");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    struct stat ls {};
    if (::lstat(path.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode)) return;  // a dangling link: replaced, not followed
    if (errno == ENOENT) return;
    throw io_error(path + ": cannot inspect the output path: " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) throw invalid_argument(path + ": the output path is a folder (name a file)");
  if (!S_ISREG(st.st_mode))
    throw invalid_argument(path + ": the output path is not a regular file (a device, FIFO or socket); qroar writes "
                                  "outputs by renaming a new file into place and refuses to replace it");
  for (const auto& in : inputs) {
    struct stat is {};
    if (in.empty() || ::stat(in.c_str(), &is) != 0) continue;
    if (is.st_dev == st.st_dev && is.st_ino == st.st_ino)
      throw invalid_argument("refusing to overwrite the input file " + in + " with the output " + path +
                             " (choose another output path)");
    if (S_ISDIR(is.st_mode) && is.st_dev == st.st_dev) {
      std::error_code ec;
      for (std::filesystem::directory_iterator it(in, ec), end; !ec && it != end; it.increment(ec)) {
        struct stat fs {};
        if (::stat(it->path().c_str(), &fs) == 0 && fs.st_dev == st.st_dev && fs.st_ino == st.st_ino)
          throw invalid_argument("refusing to overwrite the input file " + it->path().string() + " with the output " +
                                 path + " (choose another output path)");
      }
    }
  }
}

// Writes a file atomically: the bytes go to a temporary file in the destination folder (".qroar-tmp-<pid>-<name>-
// XXXXXX", see temp_files.hpp: removed on SIGINT / SIGTERM / SIGHUP, and by the next write into the folder after a
// SIGKILL), are flushed to disk, optionally verified by `verify(temp_path)` (which throws on a mismatch), and only
// then renamed over `path` (the folder is then fsync'ed). On any failure (a write, fsync or close error such as
// ENOSPC, or a file that reads back different from the bytes written: length and stream_checksum) the temporary
// file is removed, io_error is thrown and `path` is left as it was.
// Refuses (check_output_file) a destination that is not a regular file, or that is one of `inputs`.
// The new file gets the mode of the file it replaces, else 0666 without the umask.
class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::string path, const std::vector<std::string>& inputs = {}) : path_(std::move(path)) {
    check_output_file(path_, inputs);
    inputs_ = inputs;
    dir_ = detail::parent_folder(path_);
    remove_stale_temporaries(dir_);
    std::string tmpl =
        (std::filesystem::path(dir_) / temporary_name_template(std::filesystem::path(path_).filename().string())).string();
    fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd_ < 0) throw io_error(path_ + ": cannot create a temporary file in " + dir_ + ": " + std::strerror(errno));
    temp_ = tmpl;
    slot_ = register_temporary(temp_);
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
        const int e = errno;
        abandon();
        throw io_error(path_ + ": write failed: " + std::strerror(e));
      }
      checksum_.update(p, static_cast<std::size_t>(w));
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
    if (fd_ < 0) throw io_error(path_ + ": the write was abandoned");
    struct stat old {};
    const mode_t mode = ::stat(path_.c_str(), &old) == 0 && S_ISREG(old.st_mode) ? (old.st_mode & 07777) : detail::new_file_mode();
    if (::fchmod(fd_, mode) != 0) fail("cannot set the file mode");
    if (::fsync(fd_) != 0) fail("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close failed");
    std::uint64_t on_disk = 0;
    const std::uint64_t sum = detail::file_checksum(temp_, &on_disk);
    if (on_disk != written_ || sum != checksum_.value()) {
      errno = EIO;
      fail("the file read back differs from what was written");
    }
    if (verify) {
      try {
        verify(temp_);
      } catch (...) {
        abandon();
        throw;
      }
    }
    check_output_file(path_, inputs_);  // the destination may have changed while the data was written
    if (std::rename(temp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place");
    unregister_temporary(slot_);
    slot_ = -1;
    temp_.clear();
    detail::fsync_folder(dir_);
  }

 private:
  [[noreturn]] void fail(const char* what) {
    const int e = errno;
    abandon();
    throw io_error(path_ + ": " + what + ": " + std::strerror(e));
  }
  void abandon() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_.empty()) ::unlink(temp_.c_str());
    temp_.clear();
    unregister_temporary(slot_);
    slot_ = -1;
  }
  std::string path_, dir_;
  std::string temp_;
  std::vector<std::string> inputs_;
  int fd_ = -1;
  int slot_ = -1;
  std::uint64_t written_ = 0;
  detail::stream_checksum checksum_;
};

}  // namespace v0
}  // namespace qroar
