// The qroar command line: one executable, one subcommand per stage of the Q-ROAR pipeline.
#include "cli_common.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>
#include <vector>
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
// Levenshtein distance (insertions, deletions, substitutions), for "did you mean".
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "; did you mean 'X'?" for a candidate the word starts with (`evaluate` -> `eval`), else the closest within
// max(2, |word|/3) edits, else "".
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  for (const auto& c : candidates)
    if (c.size() > 2 && word.size() > c.size() && word.compare(0, c.size(), c) == 0 && c.size() > best.size()) best = c;
  if (!best.empty()) return "; did you mean '" + best + "'?";
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best.empty() ? std::string() : "; did you mean '" + best + "'?";
}

// An unknown subcommand or option, found before CLI11 parses (which would first report a missing required
// option): the message names it and the closest known name. Empty when every name is known.
std::string unknown_name(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return {};
  const std::string cmd = argv[1];
  std::vector<std::string> names;
  const CLI::App* sub = nullptr;
  for (const auto* s : app.get_subcommands({})) {
    names.push_back(s->get_name());
    if (s->get_name() == cmd) sub = s;
  }
  if (!sub) return "unknown subcommand '" + cmd + "'" + suggestion(cmd, names) + " (qroar --help lists them)";
  std::vector<std::string> options = {"--help"};
  for (const auto* opt : sub->get_options({}))
    for (const auto& l : opt->get_lnames()) options.push_back("--" + l);
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;  // the rest are values
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) continue;
    const std::string name = arg.substr(0, arg.find('='));
    if (std::find(options.begin(), options.end(), name) == options.end())
      return "unknown option '" + name + "' for `qroar " + cmd + "`" + suggestion(name, options) + " (qroar " + cmd +
             " --help lists them)";
  }
  return {};
}

// --help shows each option's default: captured from the bound variable, except where it means nothing (a flag,
// a required option) or the help text explains it ("default: ctx").
void show_defaults(CLI::App& sub) {
  for (auto* opt : sub.get_options({})) {
    const bool explained = opt->get_description().find("default") != std::string::npos;
    const bool nothing = opt->get_default_str().empty() || opt->get_default_str() == "[]";  // an empty list
    if (opt->get_items_expected_min() == 0 || opt->get_required() || explained || nothing) opt->default_str("");
  }
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{fmt::format("qroar {}: band-wise W_Q/W_K rescaling for RoPE interpolation under quantization",
                           qroar::version_string),
               "qroar"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  app.set_version_flag("--version", std::string(qroar::version_string));
  std::function<int()> run;
  auto cmds = qroar_cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (auto& c : cmds) {
    auto* sub = app.add_subcommand(c.name);
    runners.emplace_back(sub, nullptr);
    c.setup(*sub, runners.back().second);
    show_defaults(*sub);
  }
  if (const std::string unknown = unknown_name(app, argc, argv); !unknown.empty()) {
    std::fprintf(stderr, "qroar: usage error: %s\n", printable(unknown.c_str()).c_str());
    return qroar_cli::exit_usage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {  // CLI11's message, control bytes of file names escaped like every error
    std::fprintf(stderr, "qroar: usage error: %s (see --help)\n", printable(e.what()).c_str());
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
