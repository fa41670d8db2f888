// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <mutex>
#include <cstdint>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../error.hpp"

namespace qroar {
inline namespace v0 {

namespace detail {

// SIGBUS from a mapped file that shrank (another process truncated it while qroar reads it): a handler installed
// with the first mapping replaces the faulting page of a qroar mapping with a page of zeros (mmap MAP_FIXED, a plain
// system call) and counts the fault, so the read goes on and the reader, which checks the count afterwards
// (mapped_file::check_intact, load_model, read_token_ids, the tokenizer and GGUF writers), throws io_error naming
// the file instead of the process being killed. A SIGBUS outside qroar's mappings goes to the previous disposition.
struct mapping_slot {
  std::atomic<std::uintptr_t> begin{0}, end{0};
  std::atomic<int> faults{0};
};
inline constexpr int mapping_slot_count = 256;
inline mapping_slot mapping_slots[mapping_slot_count];
inline std::atomic<long> mapping_faults{0};  // all faults so far, any mapping
inline struct sigaction mapping_previous_action;
inline std::uintptr_t mapping_page_size = 4096;

inline void mapping_sigbus_handler(int sig, siginfo_t* info, void* context) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info ? info->si_addr : nullptr);
  for (auto& s : mapping_slots) {
    const std::uintptr_t b = s.begin.load(std::memory_order_acquire), e = s.end.load(std::memory_order_acquire);
    if (b == 0 || addr < b || addr >= e) continue;
    void* page = reinterpret_cast<void*>(addr & ~(mapping_page_size - 1));
    if (::mmap(page, mapping_page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) break;
    s.faults.fetch_add(1, std::memory_order_relaxed);
    mapping_faults.fetch_add(1, std::memory_order_relaxed);
    return;  // the read is retried and sees zeros
  }
  // not a qroar mapping: the previous handler, or the default action when the access faults again
  if ((mapping_previous_action.sa_flags & SA_SIGINFO) && mapping_previous_action.sa_sigaction) {
    mapping_previous_action.sa_sigaction(sig, info, context);
    return;
  }
  if (mapping_previous_action.sa_handler != SIG_DFL && mapping_previous_action.sa_handler != SIG_IGN &&
      mapping_previous_action.sa_handler) {
    mapping_previous_action.sa_handler(sig);
    return;
  }
  ::signal(sig, SIG_DFL);
}

// Installs the handler unless it is in place (again when someone else, a test framework, replaced it since: the
// replacement becomes the previous disposition).
inline void install_mapping_sigbus_handler() {
  static std::mutex m;
  const std::lock_guard<std::mutex> lock(m);
  mapping_page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  struct sigaction cur {};
  if (::sigaction(SIGBUS, nullptr, &cur) != 0) return;
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == mapping_sigbus_handler) return;
  struct sigaction sa {};
  sa.sa_sigaction = mapping_sigbus_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  ::sigaction(SIGBUS, &sa, &mapping_previous_action);
}

inline int register_mapping(const void* data, std::uint64_t size) noexcept {
  install_mapping_sigbus_handler();
  for (int i = 0; i < mapping_slot_count; ++i) {
    std::uintptr_t expected = 0;
    auto& s = mapping_slots[i];
    const auto b = reinterpret_cast<std::uintptr_t>(data);
    if (!s.begin.compare_exchange_strong(expected, b, std::memory_order_acq_rel)) continue;
    s.faults.store(0, std::memory_order_relaxed);
    s.end.store(b + size, std::memory_order_release);
    return i;
  }
  return -1;  // more than 256 files mapped at once: this one is unprotected
}

inline void unregister_mapping(int slot) noexcept {
  if (slot < 0) return;
  mapping_slots[slot].end.store(0, std::memory_order_release);
  mapping_slots[slot].begin.store(0, std::memory_order_release);
}

}  // namespace detail

// Throws io_error naming `path` when any mapped file faulted past its end since `faults_before` (a value of
// detail::mapping_faults taken before the reading started).
inline void check_no_mapping_faults(long faults_before, const std::string& path) {
  if (detail::mapping_faults.load(std::memory_order_relaxed) != faults_before)
    throw io_error(path + ": the file shrank while it was being read (truncated or replaced in place by another "
                          "process); nothing was loaded");
}

// A read-only memory map of a whole file (POSIX). Movable, not copyable. An empty file maps to size 0.
// A read past the end of a file that another process truncated meanwhile reads zeros instead of killing the
// process with SIGBUS (see detail::mapping_sigbus_handler); check_intact() then throws io_error.
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
      slot_ = detail::register_mapping(data_, size_);
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

  // Whether a read of this mapping faulted because the file shrank (the bytes read as zeros).
  bool faulted() const noexcept {
    return slot_ >= 0 && detail::mapping_slots[slot_].faults.load(std::memory_order_relaxed) > 0;
  }
  // Throws io_error naming the file when it shrank while mapped.
  void check_intact() const {
    if (faulted())
      throw io_error(path_ + ": the file shrank while it was being read (truncated or replaced in place by another "
                             "process)");
  }

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
    detail::unregister_mapping(slot_);
    slot_ = -1;
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  void swap(mapped_file& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(path_, o.path_);
    std::swap(slot_, o.slot_);
  }
  const std::uint8_t* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::string path_;
  int slot_ = -1;
};

}  // namespace v0
}  // namespace qroar
