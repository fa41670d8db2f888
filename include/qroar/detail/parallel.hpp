// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

namespace qroar {
inline namespace v0 {
namespace detail {

// Number of worker threads for `requested` (0 = hardware concurrency).
inline int resolve_threads(int requested) noexcept {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

// Runs fn(i) for i in [0, n) on up to `threads` threads, tasks handed out dynamically. Each task must write
// disjoint memory; since the work of a task never depends on which thread runs it, results are independent
// of the thread count. The first exception thrown by a task is rethrown after all threads joined.
template <class Fn>
void parallel_for(int n, int threads, Fn&& fn) {
  threads = std::min(resolve_threads(threads), n);
  if (threads <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto worker = [&] {
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

}  // namespace detail
}  // namespace v0
}  // namespace qroar
