// Helpers shared by the llama.cpp test programs (llamacpp_tests.cpp, llamacpp_bpe_tests.cpp): the ../shared data,
// a fresh work folder per case, and running the qroar command line under test. Needs QROAR_SHARED_DIR,
// QROAR_LLAMACPP_WORK_DIR and QROAR_CLI (compile definitions, tests/llamacpp/CMakeLists.txt) and doctest.
#pragma once

#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace llamacpp_testing {

namespace fs = std::filesystem;

// A path under ../shared.
inline fs::path shared(const std::string& rel) { return fs::path(QROAR_SHARED_DIR) / rel; }

// An empty folder `name` under the tests' work folder (whatever an earlier run left there is removed).
inline fs::path work_dir(const std::string& name) {
  const fs::path d = fs::path(QROAR_LLAMACPP_WORK_DIR) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The bytes of a file (empty when it cannot be read).
inline std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// `s` as one POSIX shell word.
inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

struct run_result {
  int exit_code = -1;
  std::string out, err;
};

// The qroar executable under test: this build's, or $QROAR_TEST_CLI (to run the same checks against another build,
// e.g. one from before a fix, to see them fail).
inline std::string qroar_cli() {
  const char* env = std::getenv("QROAR_TEST_CLI");
  return env && *env ? env : QROAR_CLI;
}

// Runs the qroar command line with `args` (each quoted), capturing stdout, and stderr through `dir`/stderr.txt.
inline run_result run_qroar(const std::vector<std::string>& args, const fs::path& dir) {
  std::string cmd = quote(qroar_cli());
  for (const auto& a : args) cmd += " " + quote(a);
  const fs::path err = dir / "stderr.txt";
  cmd += " 2>" + quote(err.string());
  run_result r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read(err);
  return r;
}

}  // namespace llamacpp_testing
