// A progress bar with ETA on stderr; silent when stderr is not a terminal or with --quiet.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace qroar_cli {

class progress_bar {
 public:
  progress_bar(std::string label, bool quiet) : label_(std::move(label)), enabled_(!quiet && ::isatty(2) == 1) {}
  ~progress_bar() { finish(); }

  void update(long long done, long long total) {
    if (!enabled_) return;
    const double elapsed = seconds();
    if (total <= 0) {  // the number of steps is not known in advance (a streamed text): the count alone
      std::fprintf(stderr, "\r%s %lld  %.0fs elapsed   ", label_.c_str(), done, elapsed);
      std::fflush(stderr);
      drawn_ = true;
      return;
    }
    const double frac = static_cast<double>(done) / static_cast<double>(total);
    const int width = 30;
    const int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    const double eta = done > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
    std::fprintf(stderr, "\r%s [%s] %lld/%lld  %.0fs elapsed, ETA %.0fs   ", label_.c_str(), bar.c_str(), done, total,
                 elapsed, eta);
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace qroar_cli
