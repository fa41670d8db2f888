// SPDX-License-Identifier: MIT
// Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.cpp): the only accepted outcome of a hostile input is
// success or an exception derived from qroar::error. Any other exception escapes LLVMFuzzerTestOneInput and
// libFuzzer reports it as a crash ("deadly signal" after std::terminate), like a sanitizer report or a
// QROAR_ASSERT abort.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qroar/error.hpp>

namespace qroar_fuzz {

// A regular in-memory file (memfd) reachable by path as /proc/self/fd/N: the file-based readers open and map it
// like any file, without touching the disk. One per process, rewritten for every input.
class memory_file {
 public:
  explicit memory_file(const char* name = "qroar-fuzz") {
    fd_ = ::memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~memory_file() { ::close(fd_); }
  memory_file(const memory_file&) = delete;
  memory_file& operator=(const memory_file&) = delete;

  // Replaces the content with data[0, size).
  const std::string& set(const std::uint8_t* data, std::size_t size) {
    if (::ftruncate(fd_, 0) != 0 || (size > 0 && ::pwrite(fd_, data, size, 0) != static_cast<ssize_t>(size))) {
      std::perror("memory_file");
      std::abort();
    }
    return path_;
  }
  const std::string& path() const noexcept { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// A private folder for harnesses that need named files (a Hugging Face folder); removed at exit.
class scratch_folder {
 public:
  scratch_folder() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (base ? base : "/tmp")) +
                       "/qroar-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~scratch_folder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  scratch_folder(const scratch_folder&) = delete;
  scratch_folder& operator=(const scratch_folder&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

inline const std::string& scratch_dir() {
  static const scratch_folder folder;
  return folder.path();
}

inline void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

// Runs fn; qroar::error is an expected outcome, anything else propagates to libFuzzer.
template <class F>
void expect_only_qroar_errors(F&& fn) {
  try {
    fn();
  } catch (const qroar::error&) {
  }
}

}  // namespace qroar_fuzz
