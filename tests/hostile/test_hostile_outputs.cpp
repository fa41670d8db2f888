// Outputs never destroy data (issue 21): non-regular destinations, outputs over inputs, symbolic links planted in
// an output folder, signals and SIGKILL during a write, full disks (RLIMIT_FSIZE), folder outputs swapped in as
// one, modes. Signal and resource-limit cases run in a forked child so that the test process is untouched.
#include <doctest/doctest.h>

#include <qroar/io/atomic_folder.hpp>
#include <qroar/io/atomic_write.hpp>
#include <qroar/io/hf_model.hpp>
#include <qroar/io/temp_files.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostile_testing.hpp"

using namespace qroar_hostile;

namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void write_atomically(const std::string& path, const std::string& text, const std::vector<std::string>& inputs = {}) {
  qroar::atomic_file_writer w(path, inputs);
  w.write(text.data(), text.size());
  w.commit();
}

// Names in `dir` that are qroar temporaries.
std::vector<std::string> temporaries_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(qroar::temp_marker) != std::string::npos) out.push_back(name);
  }
  return out;
}

// Forks; the child runs `body` (which reports readiness by writing one byte to `ready`) and then waits for a
// signal. The parent waits for the byte, sends `sig` and returns the child's wait status.
template <class Body>
int kill_child_mid_write(int sig, Body&& body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    for (const int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);  // not the test framework's crash handler
    try {
      body(fds[1]);
    } catch (...) {
      ::_exit(3);
    }
    for (;;) ::pause();
  }
  ::close(fds[1]);
  char c = 0;
  const ssize_t n = ::read(fds[0], &c, 1);
  ::close(fds[0]);
  CHECK(n == 1);
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

void ready(int fd) {
  const char c = 'r';
  (void)!::write(fd, &c, 1);
}

}  // namespace

TEST_CASE("outputs: a device, FIFO or folder is never replaced") {
  temp_dir tmp;
  const std::string fifo = tmp.file("out.json");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_error<qroar::invalid_argument>("FIFO", [&] { write_atomically(fifo, "{}"); }, {invalid_id, {fifo, "not a regular file"}});
  struct stat st {};
  REQUIRE(::lstat(fifo.c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  // a link to a device (like /dev/stdout -> /proc/self/fd/1) is judged by its target and left as it is
  const std::string link = tmp.file("null-link");
  REQUIRE(::symlink("/dev/null", link.c_str()) == 0);
  expect_error<qroar::invalid_argument>("link to /dev/null", [&] { write_atomically(link, "x"); }, {invalid_id, {"not a regular file"}});
  REQUIRE(::lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  REQUIRE(::lstat("/dev/null", &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  fs::create_directory(tmp.file("folder"));
  expect_error<qroar::invalid_argument>("folder", [&] { write_atomically(tmp.file("folder"), "x"); }, {invalid_id, {"is a folder"}});
  expect_error<qroar::io_error>("missing folder", [&] { write_atomically(tmp.file("missing/dir/s.json"), "x"); },
                                {io_id, {"missing/dir"}});
  CHECK(temporaries_in(tmp.path().string()).empty());
}

TEST_CASE("outputs: an input is refused by device and inode, under any name") {
  temp_dir tmp;
  const std::string in = tmp.file("dev.txt"), alias = tmp.file("alias.txt");
  put(in, "the input text\n");
  REQUIRE(::link(in.c_str(), alias.c_str()) == 0);
  expect_error<qroar::invalid_argument>("hard link of an input", [&] { write_atomically(alias, "new", {in}); },
                                        {invalid_id, {"refusing to overwrite the input file", in}});
  expect_error<qroar::invalid_argument>("same path", [&] { write_atomically(tmp.file("./dev.txt"), "new", {in}); },
                                        {invalid_id, {"refusing"}});
  // a file inside an input folder (a Hugging Face model folder) is an input too
  fs::create_directory(tmp.file("model"));
  put(tmp.file("model/config.json"), "{}");
  expect_error<qroar::invalid_argument>("file of an input folder",
                                        [&] { write_atomically(tmp.file("model/config.json"), "new", {tmp.file("model")}); },
                                        {invalid_id, {"config.json"}});
  CHECK(slurp(in) == "the input text\n");
  CHECK(slurp(tmp.file("model/config.json")) == "{}");
  CHECK(temporaries_in(tmp.path().string()).empty());
}

TEST_CASE("outputs: a symbolic link planted under the output name is replaced, never followed") {
  temp_dir tmp;
  const std::string victim = tmp.file("victim.txt"), planted = tmp.file("report.json");
  put(victim, "precious\n");
  REQUIRE(::symlink(victim.c_str(), planted.c_str()) == 0);
  write_atomically(planted, "{\"report\": 1}\n");
  CHECK(slurp(victim) == "precious\n");
  struct stat st {};
  REQUIRE(::lstat(planted.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(slurp(planted) == "{\"report\": 1}\n");
  // ...unless the link leads to an input: then it is refused
  const std::string planted2 = tmp.file("report2.json");
  REQUIRE(::symlink(victim.c_str(), planted2.c_str()) == 0);
  expect_error<qroar::invalid_argument>("link to an input", [&] { write_atomically(planted2, "x", {victim}); }, {invalid_id, {"refusing"}});
  CHECK(slurp(victim) == "precious\n");
}

TEST_CASE("outputs: modes follow the umask and the replaced file") {
  temp_dir tmp;
  const mode_t old = ::umask(077);
  write_atomically(tmp.file("private"), "x");
  ::umask(027);
  write_atomically(tmp.file("group"), "x");
  ::umask(old);
  struct stat st {};
  REQUIRE(::stat(tmp.file("private").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(tmp.file("group").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  put(tmp.file("readonly"), "old");
  REQUIRE(::chmod(tmp.file("readonly").c_str(), 0444) == 0);
  write_atomically(tmp.file("readonly"), "new");
  REQUIRE(::stat(tmp.file("readonly").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0444);
  CHECK(slurp(tmp.file("readonly")) == "new");
}

TEST_CASE("outputs: a write that fails (file size limit, like a full disk) is an io_error and leaves nothing") {
  temp_dir tmp;
  const std::string out = tmp.file("big.bin");
  put(out, "old contents");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &rl);
    int code = 1;
    try {
      write_atomically(out, std::string(10000, 'x'));
    } catch (const qroar::io_error& e) {
      code = std::string(e.what()).find("write failed") != std::string::npos ? 0 : 2;
    } catch (...) {
      code = 3;
    }
    ::_exit(code);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(slurp(out) == "old contents");
  CHECK(temporaries_in(tmp.path().string()).empty());
}

TEST_CASE("outputs: SIGINT / SIGTERM during a write remove the temporary; a SIGKILL leftover is removed by the next write") {
  temp_dir tmp;
  const std::string out = tmp.file("s.json");
  for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
    CAPTURE(sig);
    const int status = kill_child_mid_write(sig, [&](int fd) {
      auto* w = new qroar::atomic_file_writer(out);  // never committed: the signal arrives mid-write
      w->write("partial", 7);
      ready(fd);
    });
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);  // re-raised: the exit status still says "killed by the signal"
    CHECK(temporaries_in(tmp.path().string()).empty());
    CHECK_FALSE(fs::exists(out));
  }
  const int status = kill_child_mid_write(SIGKILL, [&](int fd) {
    auto* w = new qroar::atomic_file_writer(out);
    w->write("partial", 7);
    auto* f = new qroar::atomic_folder_writer(tmp.file("hf"));
    put(f->file("model.safetensors"), "partial");
    ready(fd);
  });
  CHECK(WIFSIGNALED(status));
  const auto left = temporaries_in(tmp.path().string());
  REQUIRE(left.size() == 2);  // recognisable by name, with the dead process's id
  for (const auto& name : left) CHECK(qroar::temporary_owner(name) > 0);
  write_atomically(out, "done");
  CHECK(temporaries_in(tmp.path().string()).empty());
  CHECK(slurp(out) == "done");
  // a living process's temporaries are left alone
  qroar::atomic_file_writer mine(tmp.file("mine"));
  CHECK(qroar::remove_stale_temporaries(tmp.path().string()) == 0);
  CHECK(temporaries_in(tmp.path().string()).size() == 1);
}

TEST_CASE("outputs: a folder is written as one (old or new, never a mix)") {
  temp_dir tmp;
  const std::string dir = tmp.file("hf");
  fs::create_directory(dir);
  put(dir + "/config.json", "old config");
  put(dir + "/model.safetensors", "old weights");
  put(dir + "/README.md", "the user's notes");
  SUBCASE("an error before the commit leaves the old folder untouched") {
    {
      qroar::atomic_folder_writer f(dir);
      put(f.file("model.safetensors"), "new weights");
    }
    CHECK(slurp(dir + "/model.safetensors") == "old weights");
    CHECK(slurp(dir + "/config.json") == "old config");
  }
  SUBCASE("a kill between the files leaves the old folder whole") {
    const int status = kill_child_mid_write(SIGKILL, [&](int fd) {
      auto* f = new qroar::atomic_folder_writer(dir);
      put(f->file("model.safetensors"), "new weights");
      ready(fd);
    });
    CHECK(WIFSIGNALED(status));
    CHECK(slurp(dir + "/model.safetensors") == "old weights");
    CHECK(slurp(dir + "/config.json") == "old config");
  }
  SUBCASE("SIGTERM before the commit removes the staging folder") {
    const int status = kill_child_mid_write(SIGTERM, [&](int fd) {
      auto* f = new qroar::atomic_folder_writer(dir);
      put(f->file("model.safetensors"), "new weights");
      put(f->file("config.json"), "new config");
      ready(fd);
    });
    CHECK(WIFSIGNALED(status));
    CHECK(temporaries_in(tmp.path().string()).empty());
    CHECK(slurp(dir + "/model.safetensors") == "old weights");
  }
  SUBCASE("the commit swaps the new folder in and keeps the user's other files") {
    qroar::atomic_folder_writer f(dir);
    put(f.file("model.safetensors"), "new weights");
    put(f.file("config.json"), "new config");
    f.commit();
    CHECK(slurp(dir + "/model.safetensors") == "new weights");
    CHECK(slurp(dir + "/config.json") == "new config");
    CHECK(slurp(dir + "/README.md") == "the user's notes");
  }
  // the next writer into the folder's parent removes a dead writer's staging folder
  qroar::atomic_folder_writer next(dir);
  next.commit();
  CHECK(temporaries_in(tmp.path().string()).empty());
}

TEST_CASE("outputs: write_hf_model replaces a folder whole, drops stale weights, copies extra files atomically") {
  temp_dir tmp;
  const std::string dir = tmp.file("hf");
  fs::create_directory(dir);
  put(dir + "/model.safetensors.index.json", "{\"weight_map\": {}}");
  put(dir + "/model-00001-of-00002.safetensors", "stale shard");
  put(dir + "/generation_config.json", "{}");
  const std::string victim = tmp.file("victim.model"), tok = tmp.file("tokenizer-source.model");
  put(victim, "precious");
  put(tok, "sentencepiece bytes");
  REQUIRE(::symlink(victim.c_str(), (dir + "/tokenizer.model").c_str()) == 0);  // planted
  qroar::write_hf_model(tiny_model(), dir, qroar::safetensors_dtype::f32, {{"tokenizer.model", tok}});
  CHECK(slurp(victim) == "precious");
  CHECK(slurp(dir + "/tokenizer.model") == "sentencepiece bytes");
  CHECK_FALSE(fs::exists(dir + "/model.safetensors.index.json"));  // would shadow the new model.safetensors
  CHECK_FALSE(fs::exists(dir + "/model-00001-of-00002.safetensors"));
  CHECK(fs::exists(dir + "/generation_config.json"));
  REQUIRE_NOTHROW(qroar::load_hf_model(dir));
  CHECK(temporaries_in(tmp.path().string()).empty());
  // an extra file that is the folder's own input is refused before anything changes
  const std::string before = slurp(dir + "/config.json");
  expect_error<qroar::invalid_argument>("copy over an input",
                                        [&] { qroar::write_hf_model(tiny_model(), dir, qroar::safetensors_dtype::f32,
                                                                    {{"tokenizer.model", dir + "/tokenizer.model"}}); },
                                        {invalid_id, {"refusing"}});
  CHECK(slurp(dir + "/config.json") == before);
  CHECK(temporaries_in(tmp.path().string()).empty());
}

TEST_CASE("outputs: the read-back checksum does not depend on how the bytes were written, and sees one flipped bit") {
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes += static_cast<char>((i * 37 + 11) & 0xFF);
  qroar::detail::stream_checksum whole, pieces;
  whole.update(bytes.data(), bytes.size());
  for (std::size_t at = 0, k = 1; at < bytes.size(); at += k, k = k % 13 + 1)
    pieces.update(bytes.data() + at, std::min(k, bytes.size() - at));
  CHECK(whole.value() == pieces.value());
  std::string flipped = bytes;
  flipped[517] = static_cast<char>(flipped[517] ^ 0x10);
  qroar::detail::stream_checksum other;
  other.update(flipped.data(), flipped.size());
  CHECK(other.value() != whole.value());
  qroar::detail::stream_checksum shorter;
  shorter.update(bytes.data(), bytes.size() - 1);
  CHECK(shorter.value() != whole.value());
  temp_dir tmp;
  write_atomically(tmp.file("f"), bytes);
  std::uint64_t size = 0;
  CHECK(qroar::detail::file_checksum(tmp.file("f"), &size) == whole.value());
  CHECK(size == bytes.size());
}
