// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#include "../error.hpp"
#include "atomic_write.hpp"
#include "temp_files.hpp"

namespace qroar {
inline namespace v0 {

namespace detail {

// Exchanges two paths atomically (Linux renameat2 RENAME_EXCHANGE). Returns false with errno EINVAL / ENOSYS where
// the kernel or the file system cannot.
inline bool exchange_paths(const std::string& a, const std::string& b) noexcept {
#if defined(__linux__) && defined(SYS_renameat2)
  constexpr unsigned rename_exchange = 2;  // RENAME_EXCHANGE (linux/fs.h)
  return ::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), rename_exchange) == 0;
#else
  (void)a;
  (void)b;
  errno = ENOSYS;
  return false;
#endif
}

}  // namespace detail

// Writes a folder atomically as a folder: the files are written into a staging folder beside the destination
// (".qroar-tmp-<pid>-<name>-XXXXXX", temp_files.hpp), which commit() swaps in with one atomic exchange
// (renameat2 RENAME_EXCHANGE) — a reader, a kill or a second writer sees the old folder or the new one, never a
// mix — and only then removes the old folder. Files of an existing destination that the new folder does not hold
// are carried over (hard links, or copies across file systems; symbolic links as links, never followed).
// Where the exchange is not supported (EINVAL / ENOSYS) commit() falls back to two renames (old folder aside, new
// folder in; the old one is put back if the second fails): between them the destination is briefly absent.
// `carry(name)` chooses which of the old files are carried over (default: all of them).
// Refuses (invalid_argument) a destination that is one of `inputs` or holds one of them under a name written here,
// a destination that is not a folder, or one holding anything but files and links (a subfolder, a device).
class atomic_folder_writer {
 public:
  explicit atomic_folder_writer(const std::string& dir, const std::vector<std::string>& inputs = {},
                                std::function<bool(const std::string&)> carry = {})
      : inputs_(inputs) {
    namespace fs = std::filesystem;
    fs::path p = fs::path(dir).lexically_normal();
    if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();
    if (p.empty() || p.filename() == "." || p.filename() == "..") p = fs::absolute(p).lexically_normal();
    if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();
    dest_ = p.string();
    parent_ = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    std::error_code ec;
    fs::create_directories(parent_, ec);
    if (!fs::is_directory(parent_)) throw io_error(dest_ + ": cannot create the output folder's parent " + parent_);
    struct stat st {};
    if (::lstat(dest_.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) throw invalid_argument(dest_ + ": the output folder is a symbolic link (name the folder itself)");
      if (!S_ISDIR(st.st_mode)) throw invalid_argument(dest_ + ": the output path exists and is not a folder");
      exists_ = true;
      for (const auto& in : inputs_) {
        if (!in.empty() && fs::equivalent(dest_, in, ec))
          throw invalid_argument("refusing to overwrite the input model folder " + in + " (choose another folder)");
      }
      for (fs::directory_iterator it(dest_, ec), end; !ec && it != end; it.increment(ec)) {
        struct stat es {};
        if (::lstat(it->path().c_str(), &es) != 0) continue;
        const std::string name = it->path().filename().string();
        if (temporary_owner(name) > 0) continue;
        if (!S_ISREG(es.st_mode) && !S_ISLNK(es.st_mode))
          throw invalid_argument(dest_ + ": the output folder holds " + name +
                                 ", which is not a file; choose a new or an empty folder");
        if (!carry || carry(name)) existing_.push_back(name);
      }
    } else if (errno != ENOENT) {
      throw io_error(dest_ + ": cannot inspect the output folder: " + std::strerror(errno));
    }
    remove_stale_temporaries(parent_);
    std::string tmpl = (fs::path(parent_) / temporary_name_template(p.filename().string())).string();
    if (!::mkdtemp(tmpl.data())) throw io_error(dest_ + ": cannot create a staging folder in " + parent_ + ": " + std::strerror(errno));
    staging_ = tmpl;
    slots_.push_back(register_temporary(staging_, true));
  }
  atomic_folder_writer(const atomic_folder_writer&) = delete;
  atomic_folder_writer& operator=(const atomic_folder_writer&) = delete;
  ~atomic_folder_writer() { abandon(); }

  const std::string& destination() const noexcept { return dest_; }
  const std::string& staging() const noexcept { return staging_; }

  // The staging path of the file `name` of the new folder (registered for removal on a signal). Refuses a name
  // under which the destination holds one of the inputs.
  std::string file(const std::string& name) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw invalid_argument(dest_ + ": bad file name '" + name + "' in an output folder");
    if (exists_) check_output_file(dest_ + "/" + name, inputs_);
    written_.insert(name);
    const std::string path = staging_ + "/" + name;
    slots_.push_back(register_temporary(path));
    return path;
  }

  // Carries the old folder's other files over, swaps the new folder in, removes the old one.
  void commit() {
    namespace fs = std::filesystem;
    if (staging_.empty()) throw io_error(dest_ + ": the folder write was abandoned");
    for (const auto& name : existing_) {
      if (written_.count(name)) continue;
      const std::string from = dest_ + "/" + name, to = file(name);
      struct stat es {};
      if (::lstat(from.c_str(), &es) != 0) continue;  // gone meanwhile
      if (S_ISLNK(es.st_mode)) {
        std::string target(4096, '\0');
        const ssize_t n = ::readlink(from.c_str(), target.data(), target.size() - 1);
        if (n < 0 || ::symlink(target.substr(0, static_cast<std::size_t>(n)).c_str(), to.c_str()) != 0)
          fail("cannot carry over the link " + from);
      } else if (::link(from.c_str(), to.c_str()) != 0) {
        std::error_code ec;
        if (!fs::copy_file(from, to, ec) || ec) fail("cannot carry over " + from);
      }
    }
    detail::fsync_folder(staging_);
    bool done = false;
    if (!exists_ && std::rename(staging_.c_str(), dest_.c_str()) == 0) {
      done = true;
      forget();
    }
    if (!done && detail::exchange_paths(staging_, dest_)) {
      done = true;  // staging_ now names the old folder
    } else if (!done && (errno == EINVAL || errno == ENOSYS || errno == ENOENT)) {
      if (errno == ENOENT) {
        if (std::rename(staging_.c_str(), dest_.c_str()) != 0) fail("cannot rename the new folder into place");
        forget();
      } else {
        // two renames: the old folder aside (a registered temporary), the new one in, the old one back on failure
        std::string aside = (fs::path(parent_) / temporary_name_template(fs::path(dest_).filename().string() + "-old")).string();
        if (!::mkdtemp(aside.data())) fail("cannot name a place for the old folder");
        ::rmdir(aside.c_str());
        if (std::rename(dest_.c_str(), aside.c_str()) != 0) fail("cannot move the old folder aside");
        if (std::rename(staging_.c_str(), dest_.c_str()) != 0) {
          const int e = errno;
          std::rename(aside.c_str(), dest_.c_str());
          errno = e;
          fail("cannot rename the new folder into place");
        }
        staging_ = aside;
      }
      done = true;
    } else if (!done) {
      fail("cannot swap the new folder into place");
    }
    abandon();  // the old folder (now at the staging path), if any
    detail::fsync_folder(parent_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    const int e = errno;
    abandon();
    throw io_error(dest_ + ": " + what + ": " + std::strerror(e));
  }
  void forget() noexcept {
    for (int s : slots_) unregister_temporary(s);
    slots_.clear();
    staging_.clear();
  }
  void abandon() noexcept {
    if (!staging_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(staging_, ec);
    }
    forget();
  }
  std::string dest_, parent_, staging_;
  std::vector<std::string> inputs_, existing_;
  std::set<std::string> written_;
  std::vector<int> slots_;
  bool exists_ = false;
};

}  // namespace v0
}  // namespace qroar
