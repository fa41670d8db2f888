// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace qroar {
inline namespace v0 {

// Temporary outputs: every file or folder qroar writes before renaming it into place is named
//   .qroar-tmp-<pid>-<destination name>-XXXXXX
// in the destination's folder, so that
//   * SIGINT, SIGTERM and SIGHUP remove the temporaries of the process (a handler installed on the first
//     registration unlinks the registered paths with async-signal-safe calls only — unlink, then rmdir — restores
//     the previous disposition and re-raises the signal, so the exit status still says "killed by signal");
//   * a leftover of a process that no longer exists (SIGKILL, power loss) is recognisable, and the next write into
//     the same folder removes it (remove_stale_temporaries).
// A signal ignored when the first temporary is registered stays ignored.
inline constexpr const char* temp_marker = ".qroar-tmp-";

namespace detail {

struct temp_slot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 registered
  bool folder = false;
  char path[4096] = {};
};
inline constexpr int temp_slot_count = 64;
inline temp_slot temp_slots[temp_slot_count];
inline struct sigaction temp_previous_actions[3];
inline constexpr int temp_signals[3] = {SIGINT, SIGTERM, SIGHUP};

inline void temp_signal_handler(int sig) {
  const int saved = errno;
  for (int pass = 0; pass < 2; ++pass)  // files first, then the (then empty) folders, newest first
    for (int i = temp_slot_count - 1; i >= 0; --i) {
      temp_slot& s = temp_slots[i];
      if (s.state.load(std::memory_order_acquire) != 2 || s.folder != (pass == 1)) continue;
      if (pass == 0) ::unlink(s.path);
      else ::rmdir(s.path);
    }
  for (int k = 0; k < 3; ++k)
    if (temp_signals[k] == sig) ::sigaction(sig, &temp_previous_actions[k], nullptr);
  errno = saved;
  ::raise(sig);  // delivered when the handler returns: the previous disposition (by default: terminate)
}

// Installs the handler for each signal whose current disposition is neither ignored nor already this handler (so a
// handler installed later by someone else — a test framework — is chained, not lost).
inline void install_temp_signal_handlers() {
  static std::mutex m;
  const std::lock_guard<std::mutex> lock(m);
  for (int k = 0; k < 3; ++k) {
    struct sigaction cur {};
    if (::sigaction(temp_signals[k], nullptr, &cur) != 0) continue;
    if (!(cur.sa_flags & SA_SIGINFO) && (cur.sa_handler == SIG_IGN || cur.sa_handler == temp_signal_handler)) continue;
    temp_previous_actions[k] = cur;
    struct sigaction sa {};
    sa.sa_handler = temp_signal_handler;
    sigemptyset(&sa.sa_mask);
    for (int j = 0; j < 3; ++j) sigaddset(&sa.sa_mask, temp_signals[j]);
    sa.sa_flags = SA_RESTART;
    ::sigaction(temp_signals[k], &sa, nullptr);
  }
}

}  // namespace detail

// Registers `path` (a file, or a folder when `folder`) for removal on SIGINT / SIGTERM / SIGHUP. Returns a slot
// for unregister_temporary, or -1 when the path is too long or every slot is taken (the temporary is then only
// cleaned by a later run).
inline int register_temporary(const std::string& path, bool folder = false) noexcept {
  if (path.size() >= sizeof(detail::temp_slot::path)) return -1;
  detail::install_temp_signal_handlers();
  for (int i = 0; i < detail::temp_slot_count; ++i) {
    int expected = 0;
    auto& s = detail::temp_slots[i];
    if (!s.state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) continue;
    std::memcpy(s.path, path.c_str(), path.size() + 1);
    s.folder = folder;
    s.state.store(2, std::memory_order_release);
    return i;
  }
  return -1;
}

inline void unregister_temporary(int slot) noexcept {
  if (slot >= 0 && slot < detail::temp_slot_count) detail::temp_slots[slot].state.store(0, std::memory_order_release);
}

// The process id recorded in a temporary's name, or 0 when `name` is not a qroar temporary.
inline long temporary_owner(const std::string& name) noexcept {
  const std::string marker = temp_marker;
  if (name.compare(0, marker.size(), marker) != 0) return 0;
  std::size_t i = marker.size();
  long pid = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && pid < 1000000000L) pid = pid * 10 + (name[i++] - '0');
  return i < name.size() && name[i] == '-' ? pid : 0;
}

// Removes the qroar temporaries in `dir` whose process no longer exists (files and folders; symbolic links are
// removed, never followed). Best effort: errors are ignored. Returns how many were removed.
inline int remove_stale_temporaries(const std::string& dir) noexcept {
  int removed = 0;
  DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
  if (!d) return 0;
  try {
    std::string base = dir.empty() ? std::string(".") : dir;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      const long pid = temporary_owner(name);
      if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
      if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to ask)
      const std::string p = base + "/" + name;
      struct stat st {};
      if (::lstat(p.c_str(), &st) != 0) continue;
      std::error_code ec;
      if (S_ISDIR(st.st_mode)) {
        if (std::filesystem::remove_all(p, ec) != static_cast<std::uintmax_t>(-1) && !ec) ++removed;
      } else if (::unlink(p.c_str()) == 0) {
        ++removed;
      }
    }
  } catch (...) {
  }
  ::closedir(d);
  return removed;
}

// A temporary name for `destination_name` in a folder: ".qroar-tmp-<pid>-<name>-XXXXXX" (the name cut to 100
// bytes), ready for mkstemp / mkdtemp.
inline std::string temporary_name_template(const std::string& destination_name) {
  return std::string(temp_marker) + std::to_string(static_cast<long>(::getpid())) + "-" +
         destination_name.substr(0, 100) + "-XXXXXX";
}

}  // namespace v0
}  // namespace qroar
