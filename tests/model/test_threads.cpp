// How many threads "0 = all available CPUs" means: hardware_concurrency() capped by the affinity mask and by a
// cgroup CPU quota (a 2-CPU container on a large host must not start a thread per host CPU).
#include <doctest/doctest.h>

#include <qroar/detail/parallel.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;

namespace {
struct fake_cgroup_root {
  fs::path dir;
  explicit fake_cgroup_root(const std::string& name) {
    dir = fs::temp_directory_path() / ("qroar-cgroup-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~fake_cgroup_root() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void write(const std::string& relative, const std::string& text) const {
    const fs::path p = dir / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string self() const { return (dir / "self_cgroup").string(); }
  std::string root() const { return (dir / "fs").string(); }
};
}  // namespace

#if defined(__linux__)
TEST_CASE("cgroup v2 cpu.max: quota / period rounded up, the tightest ancestor wins, 'max' is unlimited") {
  fake_cgroup_root t("v2");
  t.write("self_cgroup", "0::/ci/job\n");
  t.write("fs/cpu.max", "max 100000\n");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 0);
  t.write("fs/ci/cpu.max", "400000 100000\n");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 4);
  t.write("fs/ci/job/cpu.max", "150000 100000\n");  // 1.5 CPUs of bandwidth: 2 threads keep both busy
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 2);
}

TEST_CASE("cgroup v2 inside a cgroup namespace: the process path is not mounted, the root file still counts") {
  fake_cgroup_root t("v2ns");
  t.write("self_cgroup", "0::/docker/0123abcd\n");
  t.write("fs/cpu.max", "200000 100000\n");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 2);
}

TEST_CASE("cgroup v1 cfs quota: -1 is unlimited, the cpu controller's path is used") {
  fake_cgroup_root t("v1");
  t.write("self_cgroup", "4:memory:/other\n1:cpu,cpuacct:/runner\n0::/\n");
  t.write("fs/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  t.write("fs/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 0);
  t.write("fs/cpu,cpuacct/runner/cpu.cfs_quota_us", "200000\n");
  t.write("fs/cpu,cpuacct/runner/cpu.cfs_period_us", "100000\n");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 2);
}

TEST_CASE("no cgroup files at all: no quota") {
  fake_cgroup_root t("none");
  CHECK(qroar::detail::cgroup_cpu_quota(t.self(), t.root()) == 0);
}

TEST_CASE("available CPUs never exceed the affinity mask or the host, and are at least 1") {
  const int n = qroar::detail::available_cpus();
  CHECK(n >= 1);
  if (std::getenv("QROAR_NUM_THREADS") == nullptr) {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(n <= CPU_COUNT(&set));
    if (std::thread::hardware_concurrency() > 0) CHECK(n <= static_cast<int>(std::thread::hardware_concurrency()));
    const int quota = qroar::detail::cgroup_cpu_quota();
    if (quota > 0) CHECK(n <= quota);
  }
  CHECK(qroar::detail::resolve_threads(0) == n);
  CHECK(qroar::detail::resolve_threads(3) == 3);
}
#endif

TEST_CASE("parallel_for runs every task once, whatever the thread count") {
  for (int threads : {1, 2, 3, 8}) {
    std::vector<std::atomic<int>> hits(101);
    qroar::detail::parallel_for(101, threads, [&](int i) { hits[static_cast<std::size_t>(i)]++; });
    for (auto& h : hits) CHECK(h.load() == 1);
  }
}
