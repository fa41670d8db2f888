// Bounded memory (issue 21, item 9): headers whose parse would cost many times their size are refused by a
// documented limit before the memory is taken (a typed error naming the file, the key or tensor and the offset),
// window lengths beyond max_context_tokens are refused before anything is allocated for them, and an allocation
// that fails while a file is read is an io_error naming the file, never a bare std::bad_alloc. The big files are
// sparse or written at test time in a temporary folder; peak memory is measured in a forked child (VmHWM after
// /proc/self/clear_refs), so that a regression costs the child, not the test process.
#include <doctest/doctest.h>

#include <qroar/io/gguf.hpp>
#include <qroar/io/llama2c_tokenizer.hpp>
#include <qroar/io/load_model.hpp>
#include <qroar/io/read_file.hpp>
#include <qroar/io/safetensors.hpp>
#include <qroar/io/text_tokens.hpp>
#include <qroar/model/perplexity.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostile_testing.hpp"
#include "shared_data.hpp"

using namespace qroar_hostile;

// Under AddressSanitizer the resident set counts shadow memory and the allocator's quarantine, and the shadow
// reservation makes an address-space cap meaningless: the peak-RSS limits and the capped child are checked only in
// uninstrumented builds (the errors themselves are checked in both).
#if defined(__SANITIZE_ADDRESS__)
#define QROAR_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QROAR_TEST_UNDER_ASAN 1
#endif
#endif
#ifndef QROAR_TEST_UNDER_ASAN
#define QROAR_TEST_UNDER_ASAN 0
#endif

namespace {

long long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string f = field;
  while (std::getline(in, line))
    if (line.rfind(f, 0) == 0) return std::atoll(line.c_str() + f.size());
  return -1;
}

// Runs `body` (returning 0 when its checks held) in a forked child whose peak-RSS mark is reset first; the child
// fails (exit 100) when its peak grew by `max_growth_mib` or more. Returns the wait status.
template <class Body>
int memory_child(long long max_growth_mib, Body&& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 1;
    try {
      const long long before = status_kib("VmRSS:");
      { std::ofstream("/proc/self/clear_refs") << "5"; }  // VmHWM := current RSS
      code = body();
      const long long growth = status_kib("VmHWM:") - before;
      std::printf("peak RSS growth %lld MiB (limit %lld MiB)\n", growth / 1024, max_growth_mib);
      if (!QROAR_TEST_UNDER_ASAN && before > 0 && growth >= max_growth_mib * 1024) code = 100;
    } catch (...) {
      code = 99;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

// In the child: 0 when `open` throws a format_error with id 300 whose message holds every one of `mentions` (and,
// when `offset` >= 0, at that offset); 10 + which check failed otherwise.
template <class Open>
int refused_as(Open&& open, const std::vector<std::string>& mentions, std::int64_t offset = -1) {
  try {
    open();
  } catch (const qroar::format_error& e) {
    if (e.id() != format_id) return 11;
    for (const auto& m : mentions)
      if (std::string(e.what()).find(m) == std::string::npos) {
        std::printf("message lacks '%s': %s\n", m.c_str(), e.what());
        return 12;
      }
    if (offset >= 0 && e.offset() != static_cast<std::uint64_t>(offset)) return 13;
    return 0;
  } catch (const std::exception& e) {
    std::printf("not a format_error: %s\n", e.what());
    return 14;
  }
  return 15;  // accepted
}

void append_le(std::string& s, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// A GGUF v3 header with no tensors and `keys` keys; each key an array of `count` arrays whose 12-byte elements
// ({uint8, 0}: empty) are left as holes of the sparse file. Returns the file's path.
std::string write_nested_gguf(const temp_dir& tmp, const std::string& name, int keys, std::uint64_t count) {
  const std::string path = tmp.file(name);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  std::string head = "GGUF";
  append_le(head, 3, 4);
  append_le(head, 0, 8);
  append_le(head, static_cast<std::uint64_t>(keys), 8);
  off_t at = 0;
  for (int k = 0; k < keys; ++k) {
    const std::string key = keys == 1 ? "hostile.nested" : "hostile.key" + std::to_string(10 + k);
    append_le(head, key.size(), 8);
    head += key;
    append_le(head, 9, 4);  // array
    append_le(head, 9, 4);  // of arrays
    append_le(head, count, 8);
    REQUIRE(::pwrite(fd, head.data(), head.size(), at) == static_cast<ssize_t>(head.size()));
    at += static_cast<off_t>(head.size() + 12 * count);
    head.clear();
  }
  REQUIRE(::ftruncate(fd, at) == 0);
  ::close(fd);
  return path;
}

}  // namespace

TEST_CASE("memory: a GGUF of 10 million nested empty arrays (120 MB) is refused before it costs 1.4 GB") {
  temp_dir tmp;
  const std::string path = write_nested_gguf(tmp, "nested.gguf", 1, 10000000);
  // key "hostile.nested" at 24, its value type at 46, the array's element type at 50, its length at 54
  const int status = memory_child(64, [&] {
    return refused_as([&] { (void)qroar::gguf_file::open(path); },
                      {path, "metadata key 'hostile.nested'", "max_header_memory"}, 54);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("memory: GGUF keys each under the limit are refused once together they pass max_header_memory") {
  temp_dir tmp;
  // 40 keys of 2^18 empty arrays (~36 MB parsed each, 1.4 GB in all before the limit)
  const std::string path = write_nested_gguf(tmp, "many.gguf", 40, std::uint64_t{1} << 18);
  constexpr long long limit_mib = static_cast<long long>(qroar::gguf_file::max_header_memory >> 20) + 64;
  const int status = memory_child(limit_mib, [&] {
    return refused_as([&] { (void)qroar::gguf_file::open(path); },
                      {path, "metadata key 'hostile.key", "max_header_memory"});
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("memory: a 99 MB safetensors header is refused before its parse costs more than its limit") {
  temp_dir tmp;
  const std::string path = tmp.file("model.safetensors");
  const std::string head = R"({"a":{"dtype":"F32","data_offsets":[0,0],"shape":[)", tail = "0]}}";
  const std::uint64_t n = 99000000;  // under safetensors_max_header_bytes: a valid file if parsed whole
  {
    std::string prefix;
    append_le(prefix, n, 8);
    prefix += head;
    qroar_hostile::bytes b(8 + n, '0');
    std::copy(prefix.begin(), prefix.end(), b.begin());
    for (std::size_t i = prefix.size() + 1; i + tail.size() < b.size(); i += 2) b[i] = ',';  // 0,0,0,...
    std::copy(tail.begin(), tail.end(), b.end() - static_cast<long>(tail.size()));
    write_bytes(path, b);
  }
  // the parse up to the limit, plus the header's mapped pages
  constexpr long long limit_mib = static_cast<long long>(qroar::safetensors_max_header_memory >> 20) + 99 + 64;
  const int status = memory_child(limit_mib, [&] {
    return refused_as([&] { qroar::safetensors_file f(path); },
                      {path, "tensor 'a'", "safetensors_max_header_memory"}, 8);
  });
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("memory: a window longer than max_context_tokens is refused before anything is allocated for it") {
  CHECK_NOTHROW(qroar::check_context_length(qroar::max_context_tokens));
  expect_error<qroar::invalid_argument>("ctx 2^24", [] { qroar::check_context_length(16777216, "--ctx"); },
                                        {invalid_id, {"--ctx 16777216 exceeds the limit of 1048576 tokens"}});
  expect_error<qroar::invalid_argument>("ctx 1", [] { qroar::check_context_length(1); }, {invalid_id, {"at least 2"}});
  qroar::perplexity_options o;
  o.ctx = 16777216;
  expect_error<qroar::invalid_argument>("window_starts", [&] { (void)qroar::window_starts(1LL << 40, o); },
                                        {invalid_id, {"exceeds the limit"}});
  // the estimate grows linearly with the window: 4 bytes per float of the per-token buffers
  qroar::llama_config c;
  c.dim = 64;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.n_layers = 5;
  c.vocab_size = 512;
  c.hidden_dim = 172;
  const std::uint64_t per_token = 4 * (4 * 64 + 2 * 64 + 2 * 32 + 8) + 16;
  CHECK(qroar::window_memory_bytes(c, 1) == per_token);
  CHECK(qroar::window_memory_bytes(c, 16777216) == 16777216 * per_token);
}

TEST_CASE("memory: an allocation that fails while a file is read is an io_error naming the file") {
  expect_error<qroar::io_error>("reading_or_io_error",
                                [] { qroar::reading_or_io_error("some.gguf", "model", []() -> int { throw std::bad_alloc(); }); },
                                {io_id, {"some.gguf: not enough memory to read the model"}});
  const auto model = qroar_test::shared_file("data/models/gutenberg-3m/model-f32.gguf");
  const auto tok = qroar_test::shared_file("data/models/stories260K/tok512.bin");
  const auto text = qroar_test::shared_file("data/text/gutenberg/pg2701-moby-dick.txt");
  if (model.empty() || tok.empty() || text.empty()) return;
  if (QROAR_TEST_UNDER_ASAN) {
    MESSAGE("address-space cap not tested under AddressSanitizer (its shadow reservation)");
    return;
  }
  // Address space capped a little above what the child holds: the 14 MB model maps (or not) but its weights do
  // not fit. Either way a qroar error naming the file, not the bare std::bad_alloc.
  auto capped = [](long long extra_kib, auto&& body, const std::string& path) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const long long vm = status_kib("VmSize:");
      const rlimit lim{static_cast<rlim_t>((vm + extra_kib) * 1024), static_cast<rlim_t>((vm + extra_kib) * 1024)};
      if (vm <= 0 || ::setrlimit(RLIMIT_AS, &lim) != 0) ::_exit(2);
      int code = 3;
      try {
        body();
        code = 4;  // it fitted after all
      } catch (const qroar::error& e) {
        std::printf("%s\n", e.what());
        const std::string what = e.what();
        code = what.find(path + ": not enough memory to read the ") != std::string::npos ? 0 : 5;
      } catch (const std::bad_alloc&) {
        code = 6;  // the bare std::bad_alloc of before
      } catch (...) {
        code = 7;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  };
  const std::string model_path = model.string();
  int status = capped(16 * 1024, [&] { (void)qroar::load_model(model_path); }, model_path);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // a 20 MB text, its tokens asked for in full: mapped (20 MB of address space), then copied for the tokenizer,
  // which 24 MiB more do not hold
  temp_dir tmp;
  const std::string text_path = tmp.file("text.txt");
  {
    const auto book = qroar_io_test::read_bytes(text.string());
    qroar_hostile::bytes big;
    while (big.size() < (std::size_t{20} << 20)) big.insert(big.end(), book.begin(), book.end());
    write_bytes(text_path, big);
  }
  const qroar::llama2c_tokenizer t(tok.string(), 512);
  status = capped(24 * 1024, [&] { (void)qroar::encode_text_file(text_path, t, std::uint64_t{1} << 24); }, text_path);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
