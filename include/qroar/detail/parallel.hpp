// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "denormals.hpp"

namespace qroar {
inline namespace v0 {
namespace detail {

#if defined(__linux__)
// CPU bandwidth allowed by a cgroup quota, ceil(quota / period), or 0 when unlimited or unknown. Looks at the
// process's own cgroup and its ancestors: v2 `cpu.max` ("max 100000" or "200000 100000"), v1
// `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1 = unlimited). The paths are parameters for the tests.
inline int cgroup_cpu_quota(const std::string& self_cgroup = "/proc/self/cgroup",
                            const std::string& fs_root = "/sys/fs/cgroup") noexcept {
  auto read_line = [](const std::string& path) {
    std::string out;
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      char buf[256];
      if (std::fgets(buf, sizeof buf, f)) out = buf;
      std::fclose(f);
    }
    return out;
  };
  auto cpus = [](double quota, double period) { return quota > 0 && period > 0 ? static_cast<int>(std::ceil(quota / period)) : 0; };
  int best = 0;
  auto consider = [&](int n) {
    if (n > 0 && (best == 0 || n < best)) best = n;
  };
  std::string v2_path, v1_path;
  if (std::FILE* f = std::fopen(self_cgroup.c_str(), "r")) {
    char buf[1024];
    while (std::fgets(buf, sizeof buf, f)) {
      std::string line(buf);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      const auto c1 = line.find(':'), c2 = line.find(':', c1 == std::string::npos ? 0 : c1 + 1);
      if (c1 == std::string::npos || c2 == std::string::npos) continue;
      const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
      if (line.compare(0, c1, "0") == 0 && controllers.empty()) v2_path = path;
      if (("," + controllers + ",").find(",cpu,") != std::string::npos) v1_path = path;
    }
    std::fclose(f);
  }
  // walk from the process's cgroup up to the root of the mounted hierarchy
  auto walk = [](std::string path, auto&& visit) {
    for (;;) {
      visit(path == "/" ? std::string() : path);
      if (path.empty() || path == "/") break;
      const auto slash = path.find_last_of('/');
      path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
    }
  };
  walk(v2_path.empty() ? "/" : v2_path, [&](const std::string& p) {
    const std::string line = read_line(fs_root + p + "/cpu.max");
    if (line.empty() || line.compare(0, 3, "max") == 0) return;
    double quota = 0, period = 0;
    if (std::sscanf(line.c_str(), "%lf %lf", &quota, &period) == 2) consider(cpus(quota, period));
  });
  walk(v1_path.empty() ? "/" : v1_path, [&](const std::string& p) {
    for (const char* controller : {"/cpu", "/cpu,cpuacct"}) {
      const std::string q = read_line(fs_root + controller + p + "/cpu.cfs_quota_us");
      const std::string t = read_line(fs_root + controller + p + "/cpu.cfs_period_us");
      if (!q.empty() && !t.empty()) consider(cpus(std::atof(q.c_str()), std::atof(t.c_str())));
    }
  });
  return best;
}
#endif

// CPUs this process may actually use: the smallest of std::thread::hardware_concurrency() (every online CPU of
// the host), the scheduler affinity mask (taskset, cpuset) and a cgroup CPU quota (containers, CI runners). A
// container on a large host with a 2-CPU quota reports every host CPU through hardware_concurrency(); starting
// that many threads for fork-join regions of a few microseconds each multiplies the wall time instead of
// dividing it. The environment variable QROAR_NUM_THREADS (a positive integer) overrides the detection.
inline int available_cpus() noexcept {
  static const int count = [] {
    if (const char* env = std::getenv("QROAR_NUM_THREADS")) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      if (end != env && *end == '\0' && v > 0 && v <= 4096) return static_cast<int>(v);
    }
    const unsigned hc = std::thread::hardware_concurrency();
    int n = hc > 0 ? static_cast<int>(hc) : 1;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
      const int c = CPU_COUNT(&set);
      if (c > 0) n = std::min(n, c);
    }
    const int quota = cgroup_cpu_quota();
    if (quota > 0) n = std::min(n, quota);
#endif
    return n;
  }();
  return count;
}

// Number of worker threads for `requested` (0 = available_cpus()).
inline int resolve_threads(int requested) noexcept {
  return requested > 0 ? requested : available_cpus();
}

// Runs fn(i) for i in [0, n) on `threads` freshly started threads (tasks handed out dynamically): the fallback
// of parallel_for when the shared pool is busy with another thread's region. Each task must write disjoint
// memory; since the work of a task never depends on which thread runs it, results are independent of the thread
// count. The first exception thrown by a task is rethrown after all threads joined.
template <class Fn>
void spawn_parallel_for(int n, int threads, Fn&& fn) {
  const flush_denormals_scope denormals;  // the calling thread, for the region (denormals.hpp)
  threads = std::min(resolve_threads(threads), n);
  if (threads <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto worker = [&] {
    flush_denormals();
    for (;;) {
      const int i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n || failed.load(std::memory_order_relaxed)) return;
      try {
        fn(i);
      } catch (...) {
        if (!failed.exchange(true)) failure = std::current_exception();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads - 1));
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// A persistent fork-join pool. A forward pass runs ~60 short parallel regions per window (a few microseconds to
// a few milliseconds each); starting threads for each, or putting helpers to sleep between regions, makes every
// region pay a wake-up: a futex round trip, and on a virtual machine whose idle vCPU halted, a host reschedule
// that can take milliseconds. So helpers spin (pause, then yield) for `spin_duration` after their last task and
// only then block, and the thread that opens a region never waits for a sleeping helper:
//  - a region is one 64-bit word, (generation | task count | next task); a task is claimed by a CAS on that word,
//    so a helper that arrives late, or from an older region, cannot claim anything of the wrong region;
//  - the opener runs tasks itself and then waits only for claimed tasks to complete.
// Contract (as for spawn_parallel_for): tasks write disjoint memory and their work never depends on the thread
// that runs them, so results are independent of the thread count; the first exception is rethrown after the
// region. A region opened from inside a task runs serially on that thread; while another thread owns the pool,
// spawn_parallel_for is used.
class fork_join_pool {
 public:
  static constexpr std::chrono::microseconds spin_duration{2000};

  static fork_join_pool& instance() {
    static fork_join_pool pool;
    return pool;
  }

  template <class Fn>
  void run(int n, int threads, Fn& fn) {
    const flush_denormals_scope denormals;  // the calling thread, for the region (denormals.hpp)
    const int helpers = std::min(resolve_threads(threads), n) - 1;
    if (helpers <= 0 || in_task()) {
      for (int i = 0; i < n; ++i) fn(i);
      return;
    }
    std::unique_lock<std::mutex> owner(owner_, std::try_to_lock);
    if (!owner.owns_lock()) {
      spawn_parallel_for(n, threads, fn);
      return;
    }
    grow(helpers);
    for (int first = 0; first < n; first += max_tasks) {  // regions of at most max_tasks tasks
      const int count = std::min(max_tasks, n - first);
      auto invoke = [&fn, first](int i) { fn(first + i); };
      region(count, helpers, invoke);
    }
  }

  ~fork_join_pool() {
    stop_.store(true, std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> lk(sleep_m_);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  fork_join_pool(const fork_join_pool&) = delete;
  fork_join_pool& operator=(const fork_join_pool&) = delete;

 private:
  // state_ = generation (28 bits) | task count (18 bits) | next task (18 bits)
  static constexpr int index_bits = 18;
  static constexpr std::uint64_t index_mask = (std::uint64_t{1} << index_bits) - 1;
  static constexpr int max_tasks = static_cast<int>(index_mask);
  static std::uint64_t generation_of(std::uint64_t s) noexcept { return s >> (2 * index_bits); }
  static int count_of(std::uint64_t s) noexcept { return static_cast<int>((s >> index_bits) & index_mask); }
  static int next_of(std::uint64_t s) noexcept { return static_cast<int>(s & index_mask); }

  fork_join_pool() = default;

  static bool& in_task() noexcept {
    thread_local bool flag = false;
    return flag;
  }

  void grow(int helpers) {
    while (static_cast<int>(workers_.size()) < helpers) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { worker(index); });
    }
  }

  template <class Invoke>
  void region(int count, int helpers, Invoke& invoke) {
    job_ = [](void* ctx, int i) { (*static_cast<Invoke*>(ctx))(i); };
    job_ctx_ = &invoke;
    failure_ = nullptr;
    failed_.store(false, std::memory_order_relaxed);
    completed_.store(0, std::memory_order_relaxed);
    wanted_.store(helpers, std::memory_order_relaxed);
    const std::uint64_t generation = (generation_of(state_.load(std::memory_order_relaxed)) + 1) & 0xFFFFFFFu;
    state_.store((generation << (2 * index_bits)) | (static_cast<std::uint64_t>(count) << index_bits),
                 std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lk(sleep_m_); }
      wake_.notify_all();
    }
    claim_tasks(generation);
    // wait for tasks claimed by helpers: they are running, so this is short; yield if it is not
    for (int spins = 0; completed_.load(std::memory_order_acquire) < count; ++spins) {
      if (spins < 4096) cpu_relax();
      else std::this_thread::yield();
    }
    job_ = nullptr;
    if (failure_) std::rethrow_exception(failure_);
  }

  // Claims and runs tasks of region `generation` until none is left; returns whether it ran any.
  bool claim_tasks(std::uint64_t generation) {
    bool ran = false;
    in_task() = true;
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (generation_of(s) != generation || next_of(s) >= count_of(s)) break;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      ran = true;
      if (!failed_.load(std::memory_order_relaxed)) {
        try {
          job_(job_ctx_, next_of(s));
        } catch (...) {
          std::lock_guard<std::mutex> lk(failure_m_);
          if (!failed_.exchange(true)) failure_ = std::current_exception();
        }
      }
      completed_.fetch_add(1, std::memory_order_acq_rel);
      s = state_.load(std::memory_order_acquire);
    }
    in_task() = false;
    return ran;
  }

  void worker(int index) {
    flush_denormals();  // helpers are qroar's own threads: for good
    std::uint64_t seen = 0;
    auto last_work = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      if (stop_.load(std::memory_order_relaxed)) return;
      const std::uint64_t s = state_.load(std::memory_order_acquire);
      const std::uint64_t generation = generation_of(s);
      if (generation != seen) {
        seen = generation;
        spins = 0;
        if (index < wanted_.load(std::memory_order_relaxed) && claim_tasks(generation))
          last_work = std::chrono::steady_clock::now();
        continue;
      }
      if (spins < 256) {
        cpu_relax();
        continue;
      }
      if ((spins & 63) != 0 || std::chrono::steady_clock::now() - last_work < spin_duration) {
        std::this_thread::yield();
        continue;
      }
      // idle for spin_duration: sleep until the next region
      std::unique_lock<std::mutex> lk(sleep_m_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lk, [&] {
        return stop_.load(std::memory_order_seq_cst) ||
               generation_of(state_.load(std::memory_order_seq_cst)) != seen;
      });
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      last_work = std::chrono::steady_clock::now();
      spins = 0;
    }
  }

  std::mutex owner_, sleep_m_, failure_m_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> state_{0};
  std::atomic<int> completed_{0}, wanted_{0}, sleepers_{0};
  std::atomic<bool> failed_{false}, stop_{false};
  void (*job_)(void*, int) = nullptr;
  void* job_ctx_ = nullptr;
  std::exception_ptr failure_;
};

// Runs fn(i) for i in [0, n) on up to `threads` threads (0 = available_cpus()) of the shared fork-join pool.
template <class Fn>
void parallel_for(int n, int threads, Fn&& fn) {
  if (n <= 0) return;
  fork_join_pool::instance().run(n, threads, fn);
}

}  // namespace detail
}  // namespace v0
}  // namespace qroar
