// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {

// Size limits of the files qroar reads whole into memory (a JSON document is parsed into a tree several times its
// size, a text is tokenized): config.json, --rope-config and band-scales JSON; texts (--text, --dev, --calib ...).
inline constexpr std::uint64_t max_json_bytes = std::uint64_t{64} << 20;  // 64 MiB
inline constexpr std::uint64_t max_text_bytes = std::uint64_t{1} << 30;   // 1 GiB

// Returns read(); a std::bad_alloc thrown by it (a size no limit caught, or a machine short of memory) becomes an
// io_error naming `path` and `what` was being read, so no bare std::bad_alloc leaves a reader.
template <class Read>
auto reading_or_io_error(const std::string& path, const char* what, Read&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const std::bad_alloc&) {
    throw io_error(path + ": not enough memory to read the " + what);
  }
}

// Reads a whole regular file of at most `max_bytes` bytes. Throws io_error naming the file when it cannot be
// opened or read, when it is not a regular file (/dev/zero, a FIFO, a link to either: these would be read forever),
// when it is larger than `max_bytes` (`what` names the kind of file in the message), or when the memory for it
// cannot be had.
inline std::string read_regular_file(const std::string& path, std::uint64_t max_bytes, const char* what = "file") {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw io_error(path + ": not a regular file (a device, FIFO or socket cannot be read as a " + what + ")");
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    throw io_error(path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) +
                   "-byte limit for a " + what);
  }
  std::string out;
  try {
    out.resize(static_cast<std::size_t>(size));
  } catch (const std::bad_alloc&) {
    ::close(fd);
    throw io_error(path + ": not enough memory to read its " + std::to_string(size) + " bytes");
  }
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw io_error(path + ": read failed: " + std::strerror(e));
    }
    if (n == 0) break;  // shrank meanwhile
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

}  // namespace v0
}  // namespace qroar
