// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// A read-only memory map of a whole file (POSIX). Movable, not copyable. An empty file maps to size 0.
class mapped_file {
 public:
  mapped_file() = default;
  explicit mapped_file(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      throw io_error(path + ": cannot stat: " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw io_error(path + ": not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        throw io_error(path + ": cannot memory-map: " + std::strerror(e));
      }
      data_ = static_cast<const std::uint8_t*>(p);
    }
    ::close(fd);
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      release();
      swap(o);
    }
    return *this;
  }
  ~mapped_file() { release(); }

  const std::uint8_t* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  // Drops this mapping's resident pages that lie wholly inside [offset, offset + length) (madvise MADV_DONTNEED):
  // loaders call it after copying a tensor out, so a tensor's file pages and its copy are not resident together
  // and loading peaks at about the model's size, not twice it. The mapping is read-only and private, so nothing
  // is lost: reading the range again faults the pages back in from the file. Best effort (errors are ignored).
  void evict(std::uint64_t offset, std::uint64_t length) const noexcept {
    if (!data_ || offset >= size_) return;
    length = std::min(length, size_ - offset);
    const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = reinterpret_cast<std::uintptr_t>(data_) + offset;
    const std::uintptr_t first = (begin + page - 1) / page * page, last = (begin + length) / page * page;
    if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }

  // Bounds-checked access to [offset, offset + length): throws format_error naming the file, tensor and offset.
  const std::uint8_t* range(std::uint64_t offset, std::uint64_t length, const std::string& tensor_name = {},
                            const char* what = "data") const {
    if (offset > size_ || length > size_ - offset)
      throw format_error(path_, tensor_name, offset,
                         std::string(what) + " of " + std::to_string(length) + " bytes runs past the end of the file (" +
                             std::to_string(size_) + " bytes)");
    return data_ + offset;
  }

 private:
  void release() noexcept {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  void swap(mapped_file& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(path_, o.path_);
  }
  const std::uint8_t* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::string path_;
};

}  // namespace v0
}  // namespace qroar
