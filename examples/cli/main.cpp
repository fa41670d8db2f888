// The qroar command line: one executable, one subcommand per stage of the Q-ROAR pipeline.
#include "cli_common.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>
#include <string>

namespace {
// An error message as one printable line: control bytes (ANSI escapes, newlines, from file names or file contents)
// are shown as \xNN, never sent to the terminal.
std::string printable(const char* s) {
  std::string out;
  for (const unsigned char* p = reinterpret_cast<const unsigned char*>(s); *p; ++p) {
    if (*p < 0x20 || *p == 0x7F) out += fmt::format("\\x{:02x}", static_cast<unsigned>(*p));
    else out += static_cast<char>(*p);
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{fmt::format("qroar {}: band-wise W_Q/W_K rescaling for RoPE interpolation under quantization",
                           qroar::version_string),
               "qroar"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(qroar::version_string));
  std::function<int()> run;
  auto cmds = qroar_cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (auto& c : cmds) {
    auto* sub = app.add_subcommand(c.name);
    runners.emplace_back(sub, nullptr);
    c.setup(*sub, runners.back().second);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return qroar_cli::exit_usage;
  }
  try {
    for (auto& [sub, runner] : runners)
      if (sub->parsed()) return runner();
  } catch (const qroar_cli::usage_error& e) {
    std::fprintf(stderr, "qroar: usage error: %s\n", printable(e.what()).c_str());
    return qroar_cli::exit_usage;
  } catch (const qroar::invalid_argument& e) {
    std::fprintf(stderr, "qroar: %s\n", printable(e.what()).c_str());
    return qroar_cli::exit_usage;
  } catch (const std::bad_alloc&) {  // a size no check caught: a clear message, not a bare std::bad_alloc
    std::fprintf(stderr, "qroar: error: out of memory (the inputs or options ask for more memory than there is)\n");
    return qroar_cli::exit_failure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qroar: error: %s\n", printable(e.what()).c_str());
    return qroar_cli::exit_failure;
  }
  return qroar_cli::exit_failure;
}
