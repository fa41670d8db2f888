// The --report plots (examples/cli/svg_plot.hpp, cli_report.hpp): tick and colour-scale helpers against their
// formulas, and the structure of the SVG each plot writes (markers, reference lines, colour bars).
#include <doctest/doctest.h>

#include "cli_report.hpp"

#include <cmath>
#include <limits>
#include <regex>
#include <string>
#include <vector>

namespace {

using qroar_cli::colour_range;
namespace ds = qroar_cli::detail_svg;

// log10 of a power of ten and pow(10, e) are within a few ulp of exact (glibc: correctly rounded for these);
// a ratio of two such logs is then within 4 ulp of the exact quotient.
constexpr double log_ratio_tolerance = 4 * std::numeric_limits<double>::epsilon();

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

// The text of every <text class="CLS" ...>TEXT</text>.
std::vector<std::string> texts(const std::string& svg, const std::string& cls) {
  std::vector<std::string> out;
  const std::regex re("<text class=\"" + cls + "\"[^>]*>([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) out.push_back((*it)[1]);
  return out;
}

std::string attribute(const std::string& svg, const std::string& element_start, const std::string& name) {
  const auto at = svg.find(element_start);
  REQUIRE(at != std::string::npos);
  const auto a = svg.find(name + "=\"", at);
  REQUIRE(a != std::string::npos);
  const auto b = a + name.size() + 2;
  return svg.substr(b, svg.find('"', b) - b);
}

}  // namespace

TEST_CASE("ticks: nice steps; integer axes get integer ticks") {
  // (17.5 - 0.5) / 6 = 2.83: step 5 (m = 5, 10^0)
  CHECK(ds::ticks(0.5, 17.5, 6, true) == std::vector<double>{5, 10, 15});
  // (3.5 - 0.5) / 6 = 0.5: the real-valued step is 0.5, which an integer axis raises to 1
  CHECK(ds::ticks(0.5, 3.5, 6, false) == std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3, 3.5});
  CHECK(ds::ticks(0.5, 3.5, 6, true) == std::vector<double>{1, 2, 3});
  // (15.5 - 0.5) / 6 = 2.5: m = 2.5 on a real axis, skipped (m = 5) on an integer one
  CHECK(ds::ticks(0.5, 15.5, 6, false) == std::vector<double>{2.5, 5, 7.5, 10, 12.5, 15});
  CHECK(ds::ticks(0.5, 15.5, 6, true) == std::vector<double>{5, 10, 15});
  // one candidate: the tick 1 only
  CHECK(ds::ticks(0.5, 1.5, 6, true) == std::vector<double>{1});
}

TEST_CASE("colour scale: range, position and ticks, linear and logarithmic") {
  SUBCASE("values over decades: a log range widened to whole decades") {
    const std::vector<double> v{3e-4, 0.02, 0.7};
    const colour_range r = qroar_cli::colour_range_of({&v});
    CHECK(r.log);
    CHECK(r.lo == doctest::Approx(1e-4).epsilon(log_ratio_tolerance));
    CHECK(r.hi == 1.0);
    // t = (log10 v - log10 lo) / (log10 hi - log10 lo): 1e-2 -> (-2 + 4) / 4, 1e-3 -> 1/4
    CHECK(ds::colour_position(1e-2, r) == doctest::Approx(0.5).epsilon(log_ratio_tolerance));
    CHECK(ds::colour_position(1e-3, r) == doctest::Approx(0.25).epsilon(log_ratio_tolerance));
    CHECK(ds::colour_position(1e-6, r) == 0.0);  // clamped
    const auto t = ds::colour_bar_ticks(r);
    REQUIRE(t.size() == 5);
    for (int k = 0; k < 5; ++k) CHECK(t[static_cast<std::size_t>(k)] == doctest::Approx(std::pow(10.0, k - 4)).epsilon(log_ratio_tolerance));
  }
  SUBCASE("values within one decade, or not all positive: linear over [min, max]") {
    const std::vector<double> a{0.5, 2.0}, b{0.0, 1.0, 40.0};
    const colour_range r = qroar_cli::colour_range_of({&a});
    CHECK_FALSE(r.log);
    CHECK(r.lo == 0.5);
    CHECK(r.hi == 2.0);
    CHECK(ds::colour_position(0.875, r) == 0.25);  // (0.875 - 0.5) / 1.5, exact in binary
    CHECK(ds::colour_bar_ticks(r) == std::vector<double>{0.5, 1.0, 1.5, 2.0});  // (2 - 0.5) / 4 = 0.375: step 0.5
    const colour_range rb = qroar_cli::colour_range_of({&b});
    CHECK_FALSE(rb.log);
    CHECK(rb.lo == 0.0);
    CHECK(rb.hi == 40.0);
  }
  SUBCASE("a shared range covers every matrix") {
    const std::vector<double> fp{0.1, 0.2}, q{5.0, std::numeric_limits<double>::quiet_NaN()};
    const colour_range r = qroar_cli::colour_range_of({&fp, &q});
    CHECK(r.log);
    CHECK(r.lo == doctest::Approx(0.1).epsilon(log_ratio_tolerance));
    CHECK(r.hi == 10.0);
  }
  SUBCASE("decade labels") {
    CHECK(ds::fmt_decade(-5) == "1e-05");
    CHECK(ds::fmt_decade(-2) == "0.01");
    CHECK(ds::fmt_decade(0) == "1");
    CHECK(ds::fmt_decade(3) == "1000");
    CHECK(ds::fmt_decade(6) == "1e+06");
  }
}

TEST_CASE("heatmap SVG: a log colour bar labelled in decades; paired maps show one range") {
  qroar_cli::heatmap fp, q;
  for (auto* h : {&fp, &q}) {
    h->columns = {"band 0", "band 1"};
    h->rows = {"layer 0", "layer 1"};
  }
  fp.values = {2e-4, 1e-3, 0.01, 0.03};
  q.values = {5e-4, 0.2, 0.5, 3.0};
  SUBCASE("alone, each map has its own range") {
    CHECK(attribute(qroar_cli::to_svg(fp), "class=\"colour-bar\"", "data-hi") !=
          attribute(qroar_cli::to_svg(q), "class=\"colour-bar\"", "data-hi"));
  }
  SUBCASE("shared") {
    fp.range = q.range = qroar_cli::colour_range_of({&fp.values, &q.values});
    const std::string a = qroar_cli::to_svg(fp), b = qroar_cli::to_svg(q);
    for (const char* k : {"data-lo", "data-hi", "data-scale"})
      CHECK(attribute(a, "class=\"colour-bar\"", k) == attribute(b, "class=\"colour-bar\"", k));
    CHECK(attribute(a, "class=\"colour-bar\"", "data-scale") == "log");
    // decades 1e-4 .. 10 (the values span 2e-4 .. 3), each label a power of ten
    CHECK(texts(a, "colour-tick") == std::vector<std::string>{"1e-04", "0.001", "0.01", "0.1", "1", "10"});
    CHECK(texts(b, "colour-tick") == texts(a, "colour-tick"));
    CHECK(count(a, "(log colour scale)") == 1);
  }
}

TEST_CASE("perplexity plot: a vertical marker at L0, at the x coordinate of L0") {
  qroar::perplexity_result r;
  for (int s = 0; s < 1024; s += 128) r.per_position.push_back({s, s + 128, 1.0 + s / 1024.0, 128});
  const auto p = qroar_cli::perplexity_plot({{"quantized", r}}, "t", 1024, 512);
  const std::string svg = qroar_cli::to_svg(p);
  using F = qroar_cli::line_plot_frame;
  // x axis [0, ctx]: X(L0) = left + L0 / ctx * width
  const double expected = F::left + 512.0 / 1024.0 * F::width;
  CHECK(std::stod(attribute(svg, "class=\"vline\"", "x1")) == doctest::Approx(expected).epsilon(0.05 / expected));  // %.1f
  CHECK(texts(svg, "vline-label") == std::vector<std::string>{"L0 = 512 (trained context)"});
  // without L0: no marker
  CHECK(count(qroar_cli::to_svg(qroar_cli::perplexity_plot({{"q", r}}, "t", 1024, 0)), "class=\"vline\"") == 0);
}

TEST_CASE("search trace: one discrete marker per candidate, no line through them, rejections with their reason") {
  qroar::search_result r;
  r.baseline_objective = 2.0;
  r.final_objective = 1.8;
  const std::vector<std::pair<double, std::string>> steps{{2.1, ""},
                                                          {1.8, "accepted"},
                                                          {1.7, "rejected: validation NLL rose on window 1"},
                                                          {1.75, "rejected: short-context guard"},
                                                          {2.3, ""},
                                                          {1.6, "rejected: validation NLL rose on window 0"},
                                                          {1.9, "rejected: short-context guard on document 2"}};
  for (std::size_t k = 0; k < steps.size(); ++k) {
    qroar::search_step s;
    s.band = static_cast<int>(k);
    s.factor = 1.5;
    s.objective = steps[k].first;
    s.note = steps[k].second;
    s.accepted = s.note == "accepted";
    r.steps.push_back(s);
  }
  const std::string svg = qroar_cli::to_svg(qroar_cli::search_trace_plot(r, "dev_nll"));
  CHECK(count(svg, "class=\"candidate") == static_cast<int>(steps.size()));
  CHECK(count(svg, "class=\"candidate accepted\"") == 1);
  CHECK(count(svg, "class=\"candidate rejected\"") == 4);
  CHECK(count(svg, "<polyline") == 0);
  const auto legend = texts(svg, "legend");
  CHECK(legend == std::vector<std::string>{"evaluated, not kept (2)", "accepted (1)",
                                           "rejected: validation NLL rose on a window (2)", "rejected: short-context guard (1)",
                                           "rejected: short-context guard on a document (1)"});
  // the full reason per candidate in its tooltip
  CHECK(count(svg, "rejected: validation NLL rose on window 1</title>") == 1);
  // the baseline and the final objective as horizontal lines
  CHECK(count(svg, "class=\"hline\"") == 2);
  CHECK(texts(svg, "hline-label") == std::vector<std::string>{"baseline, no scales: 2", "final: 1.8"});
  // one shaded span per band searched (each candidate here a band of its own)
  CHECK(count(svg, "class=\"span\"") == static_cast<int>(steps.size()));
  CHECK(texts(svg, "span-label").front() == "b0");
  // candidates 1..7 on an integer axis
  for (const auto& t : texts(svg, "xtick")) CHECK(t.find_first_not_of("0123456789") == std::string::npos);
}
