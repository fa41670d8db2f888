// A small SVG writer for the --report plots: line plots (axes, ticks, labels, legend, reference lines, discrete
// markers) and heatmaps (a labelled colour bar, logarithmic over decades, one range for maps shown side by side).
// No third-party plotting; the output renders with any SVG viewer (checked with rsvg-convert).
#pragma once

#include <fmt/format.h>

#include "cli_outputs.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace qroar_cli {

// A series is drawn as a line through its points (with a dot at each) or, with `lines = false`, as discrete
// markers only: points that are separate candidates (the search trace) are never joined.
struct plot_series {
  std::string name;
  std::vector<double> x, y;
  bool lines = true;
  std::string marker = "circle";  // circle, cross, triangle, diamond
  std::string colour;             // empty: the palette colour of the series' index
  std::string css_class;          // class attribute of each marker (tests count them)
  std::vector<std::string> point_titles;  // optional tooltip per point (<title>)
};

// A horizontal (value on the y axis) or vertical (value on the x axis) reference line with its label.
struct reference_line {
  double value = 0.0;
  std::string label;
  std::string colour = "#444";
};

// A labelled x interval, shaded in alternation with its neighbours (the band a group of candidates belongs to).
struct x_span {
  double from = 0.0, to = 0.0;
  std::string label;
};

struct line_plot {
  std::string title, x_label, y_label;
  std::vector<plot_series> series;
  bool log_x = false;
  bool integer_x = false;  // x ticks at integers only (counts, steps)
  double x_min = std::numeric_limits<double>::quiet_NaN(), x_max = x_min;  // NaN: from the data
  std::vector<reference_line> horizontal, vertical;  // horizontal lines are named in the legend
  std::vector<x_span> spans;
};

// The value range of a heatmap's colour scale. Logarithmic: t = (log10 v - log10 lo) / (log10 hi - log10 lo),
// with lo and hi powers of ten; linear: t = (v - lo) / (hi - lo).
struct colour_range {
  double lo = 0.0, hi = 1.0;
  bool log = false;
};

struct heatmap {
  std::string title, x_label, y_label, value_label;
  std::vector<std::string> columns, rows;  // labels
  std::vector<double> values;              // rows x columns, row-major; NaN drawn grey
  std::optional<colour_range> range;       // empty: colour_range_of({&values})
};

namespace detail_svg {

inline std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

// "Nice" tick values covering [lo, hi]: the smallest step m * 10^k >= (hi - lo) / target, m in {1, 2, 2.5, 5, 10};
// on an integer axis (`integer` true) m = 2.5 is skipped and the step is at least 1, so every tick is an integer.
inline std::vector<double> ticks(double lo, double hi, int target = 6, bool integer = false) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (integer && m == 2.5) continue;
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  if (integer) step = std::max(1.0, std::round(step));
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

inline std::string fmt_tick(double v) {
  if (v != 0.0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3)) return fmt::format("{:.1e}", v);
  return fmt::format("{:.4g}", v);
}

// A decade label: 0.001 .. 1000 written out, other powers as 1e-05, 1e+06.
inline std::string fmt_decade(int e) {
  if (e >= -3 && e <= 3) return fmt::format("{:g}", std::pow(10.0, e));
  return fmt::format("1e{}{:02d}", e < 0 ? '-' : '+', std::abs(e));
}

inline const char* colour(std::size_t i) {
  static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  return palette[i % 8];
}

// Viridis-like ramp, t in [0, 1].
inline std::string ramp(double t) {
  static const double c[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  auto ch = [&](int k) { return static_cast<int>(std::lround(c[i][k] + f * (c[i + 1][k] - c[i][k]))); };
  return fmt::format("rgb({},{},{})", ch(0), ch(1), ch(2));
}

// Position of v on the colour scale, in [0, 1] (clamped).
inline double colour_position(double v, const colour_range& r) {
  const double t = r.log ? (std::log10(v) - std::log10(r.lo)) / (std::log10(r.hi) - std::log10(r.lo)) : (v - r.lo) / (r.hi - r.lo);
  return std::clamp(t, 0.0, 1.0);
}

// The labelled ticks of a colour bar: each power of ten in [lo, hi] (log), else ticks(lo, hi, 4).
inline std::vector<double> colour_bar_ticks(const colour_range& r) {
  std::vector<double> t;
  if (r.log) {
    for (int e = static_cast<int>(std::lround(std::log10(r.lo))); e <= static_cast<int>(std::lround(std::log10(r.hi))); ++e)
      t.push_back(std::pow(10.0, e));
  } else {
    t = ticks(r.lo, r.hi, 4);
  }
  return t;
}

}  // namespace detail_svg

// The colour range of one or more matrices shown side by side (one range, so that colours compare): the finite
// values' [min, max]; logarithmic, widened to whole decades, when every value is positive and max / min >= 10
// (a linear scale over decades paints all but the largest values the darkest colour).
inline colour_range colour_range_of(const std::vector<const std::vector<double>*>& matrices) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto* m : matrices)
    for (double v : *m)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) return {0.0, 1.0, false};
  if (lo > 0.0 && hi / lo >= 10.0)
    return {std::pow(10.0, std::floor(std::log10(lo))), std::pow(10.0, std::ceil(std::log10(hi))), true};
  if (hi <= lo) hi = lo + (lo == 0.0 ? 1.0 : std::abs(lo) * 1e-6);
  return {lo, hi, false};
}

namespace detail_svg {

// One marker centred at (x, y): circle, cross, triangle or diamond; `extra` goes inside the element.
inline std::string marker(const std::string& shape, double x, double y, double r, const std::string& fill,
                          const std::string& css_class, const std::string& extra) {
  const std::string cls = css_class.empty() ? std::string() : " class=\"" + css_class + "\"";
  auto end = [&](const char* tag) { return extra.empty() ? std::string("/>\n") : ">" + extra + "</" + tag + ">\n"; };
  if (shape == "cross")
    return fmt::format("<path{} d=\"M{:.1f},{:.1f}L{:.1f},{:.1f}M{:.1f},{:.1f}L{:.1f},{:.1f}\" stroke=\"{}\" stroke-width=\"2.5\" fill=\"none\"",
                       cls, x - r, y - r, x + r, y + r, x - r, y + r, x + r, y - r, fill) + end("path");
  if (shape == "triangle")
    return fmt::format("<polygon{} points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" fill=\"{}\"", cls, x, y - r * 1.2, x - r, y + r * 0.8,
                       x + r, y + r * 0.8, fill) + end("polygon");
  if (shape == "diamond")
    return fmt::format("<polygon{} points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" fill=\"{}\"", cls, x, y - r * 1.3,
                       x + r, y, x, y + r * 1.3, x - r, y, fill) + end("polygon");
  return fmt::format("<circle{} cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\"", cls, x, y, r, fill) + end("circle");
}

}  // namespace detail_svg

// Plot geometry of a line plot (pixels): the plot area is [left, left + width] x [top, top + height].
struct line_plot_frame {
  static constexpr double W = 960, H = 460, left = 80, right = 350, top = 50, bottom = 60;
  static constexpr double width = W - left - right, height = H - top - bottom;
};

inline std::string to_svg(const line_plot& p) {
  using namespace detail_svg;
  using F = line_plot_frame;
  const double W = F::W, H = F::H, left = F::left, top = F::top;
  const double pw = F::width, ph = F::height;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto tx = [&](double x) { return p.log_x ? std::log10(std::max(x, 1e-300)) : x; };
  for (const auto& s : p.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || !std::isfinite(s.x[i]) || (p.log_x && s.x[i] <= 0)) continue;
      x0 = std::min(x0, tx(s.x[i]));
      x1 = std::max(x1, tx(s.x[i]));
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  for (const auto& h : p.horizontal)
    if (std::isfinite(h.value)) y0 = std::min(y0, h.value), y1 = std::max(y1, h.value);
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (std::isfinite(p.x_min)) x0 = tx(p.x_min);
  if (std::isfinite(p.x_max)) x1 = tx(p.x_max);
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : std::abs(y0) * 0.1);
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  auto X = [&](double x) { return left + (tx(x) - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + ph - (y - y0) / (y1 - y0) * ph; };
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
      W, H, W / 2, escape(p.title));
  // grid and ticks
  if (p.log_x) {
    for (int e = static_cast<int>(std::floor(x0)); e <= static_cast<int>(std::ceil(x1)); ++e) {
      const double v = std::pow(10.0, e);
      if (e < x0 - 1e-9 || e > x1 + 1e-9) continue;
      const double xx = X(v);
      o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>\n"
                       "<text class=\"xtick\" x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       xx, top, top + ph, top + ph + 18, fmt_tick(v));
    }
  } else {
    for (double v : ticks(x0, x1, 6, p.integer_x))
      o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>\n"
                       "<text class=\"xtick\" x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       X(v), top, top + ph, top + ph + 18, fmt_tick(v));
  }
  for (double v : ticks(y0, y1))
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>\n"
                     "<text class=\"ytick\" x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                     left, Y(v), left + pw, left - 6, Y(v) + 4, fmt_tick(v));
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, top, pw, ph);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, H - 18, escape(p.x_label));
  o += fmt::format("<text x=\"20\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 20 {0})\">{1}</text>\n",
                   top + ph / 2, escape(p.y_label));
  // shaded spans and reference lines, under the data; horizontal lines named in the legend (below the series)
  for (std::size_t k = 0; k < p.spans.size(); ++k) {
    const auto& sp = p.spans[k];
    const double a = std::max(left, X(sp.from)), b = std::min(left + pw, X(sp.to));
    if (!(b > a)) continue;
    o += fmt::format("<rect class=\"span\" x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"/>\n"
                     "<text class=\"span-label\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#666\">{}</text>\n",
                     a, top, b - a, ph, k % 2 == 0 ? "#f2f2f2" : "#ffffff", (a + b) / 2, top + ph - 4, escape(sp.label));
  }
  for (std::size_t k = 0; k < p.horizontal.size(); ++k) {
    const auto& h = p.horizontal[k];
    if (!std::isfinite(h.value)) continue;
    const double ly = top + 10 + 20.0 * static_cast<double>(p.series.size() + k);
    o += fmt::format("<line class=\"hline\" x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"{3}\" stroke-width=\"1.5\" "
                     "stroke-dasharray=\"6,4\"/>\n"
                     "<line x1=\"{4}\" y1=\"{5}\" x2=\"{6}\" y2=\"{5}\" stroke=\"{3}\" stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>\n"
                     "<text class=\"hline-label\" x=\"{7}\" y=\"{8}\">{9}</text>\n",
                     left, Y(h.value), left + pw, h.colour, left + pw + 12, ly, left + pw + 36, left + pw + 42, ly + 4,
                     escape(h.label));
  }
  for (const auto& v : p.vertical) {
    if (!std::isfinite(v.value) || (p.log_x && v.value <= 0)) continue;
    const double xx = X(v.value);
    if (xx < left - 1e-9 || xx > left + pw + 1e-9) continue;
    const bool label_left = xx > left + pw * 0.6;  // keep the label inside the plot area
    o += fmt::format("<line class=\"vline\" x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"1.5\" "
                     "stroke-dasharray=\"6,4\"/>\n"
                     "<text class=\"vline-label\" x=\"{4:.1f}\" y=\"{5}\" text-anchor=\"{6}\" fill=\"{3}\">{7}</text>\n",
                     xx, top, top + ph, v.colour, label_left ? xx - 4 : xx + 4, top + 14, label_left ? "end" : "start",
                     escape(v.label));
  }
  for (std::size_t k = 0; k < p.series.size(); ++k) {
    const auto& s = p.series[k];
    const std::string c = s.colour.empty() ? std::string(colour(k)) : s.colour;
    if (s.lines) {
      std::string pts;
      for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.y[i]) || (p.log_x && s.x[i] <= 0)) continue;
        pts += fmt::format("{:.1f},{:.1f} ", X(s.x[i]), Y(s.y[i]));
      }
      o += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", pts, c);
    }
    const double r = s.lines ? 2.5 : 4.5;
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.y[i]) && !(p.log_x && s.x[i] <= 0))
        o += marker(s.marker, X(s.x[i]), Y(s.y[i]), r, c, s.css_class,
                    i < s.point_titles.size() ? "<title>" + escape(s.point_titles[i]) + "</title>" : std::string());
    const double ly = top + 10 + 20.0 * static_cast<double>(k);
    if (s.lines)
      o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>\n", left + pw + 12, ly,
                       left + pw + 36, c);
    else
      o += marker(s.marker, left + pw + 24, ly, 4.5, c, "", "");
    o += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>\n", left + pw + 42, ly + 4, escape(s.name));
  }
  return o + "</svg>\n";
}

inline std::string to_svg(const heatmap& h) {
  using namespace detail_svg;
  const double n_cols = static_cast<double>(std::max<std::size_t>(1, h.columns.size()));
  const double n_rows = static_cast<double>(std::max<std::size_t>(1, h.rows.size()));
  const double cell_w = std::max(40.0, 480.0 / n_cols);
  const double cell_h = std::max(22.0, std::min(60.0, 320.0 / n_rows));
  const double left = 90, top = 50, bottom = 60;
  const double pw = cell_w * static_cast<double>(h.columns.size()), ph = cell_h * static_cast<double>(h.rows.size());
  const double W = std::max(left + pw + 170, 640.0), H = top + std::max(ph, 200.0) + bottom;
  const colour_range range = h.range ? *h.range : colour_range_of({&h.values});
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
      W, H, W / 2, escape(h.title));
  for (std::size_t r = 0; r < h.rows.size(); ++r) {
    for (std::size_t c = 0; c < h.columns.size(); ++c) {
      const std::size_t i = r * h.columns.size() + c;
      const double v = i < h.values.size() ? h.values[i] : std::numeric_limits<double>::quiet_NaN();
      const bool shown = std::isfinite(v) && (!range.log || v > 0.0);
      const double t = shown ? colour_position(v, range) : 0.0;
      const double x = left + cell_w * static_cast<double>(c), y = top + cell_h * static_cast<double>(r);
      o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" stroke=\"white\"/>\n", x, y,
                       cell_w, cell_h, shown ? ramp(t) : std::string("#bbb"));
      o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{}</text>\n",
                       x + cell_w / 2, y + cell_h / 2 + 4, shown && t > 0.6 ? "black" : "white",
                       std::isfinite(v) ? fmt::format("{:.3g}", v) : std::string("n/a"));
    }
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", left - 6,
                     top + cell_h * (static_cast<double>(r) + 0.5) + 4, escape(h.rows[r]));
  }
  for (std::size_t c = 0; c < h.columns.size(); ++c)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                     left + cell_w * (static_cast<double>(c) + 0.5), top + ph + 16, escape(h.columns[c]));
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, top + ph + 40, escape(h.x_label));
  o += fmt::format("<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">{1}</text>\n",
                   top + ph / 2, escape(h.y_label));
  // colour bar: 50 steps of the ramp; ticks at the positions of their values (decades on a log scale)
  const double sx = left + pw + 30, sh = std::max(ph, 200.0);
  o += fmt::format("<g class=\"colour-bar\" data-lo=\"{}\" data-hi=\"{}\" data-scale=\"{}\">\n", range.lo, range.hi,
                   range.log ? "log" : "linear");
  for (int k = 0; k < 50; ++k)
    o += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"18\" height=\"{:.2f}\" fill=\"{}\"/>\n", sx, top + sh * (49 - k) / 50.0,
                     sh / 50.0 + 0.5, ramp(k / 49.0));
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", sx, top, sh);
  for (double v : colour_bar_ticks(range)) {
    const double yy = top + sh * (1.0 - colour_position(v, range));
    const std::string label = range.log ? fmt_decade(static_cast<int>(std::lround(std::log10(v)))) : fmt_tick(v);
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"black\"/>\n"
                     "<text class=\"colour-tick\" x=\"{3}\" y=\"{4:.1f}\">{5}</text>\n",
                     sx + 18, yy, sx + 22, sx + 24, yy + 4, label);
  }
  o += "</g>\n";
  o += fmt::format("<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" transform=\"rotate(-90 {0} {1})\">{2}</text>\n",
                   sx + 90, top + sh / 2, escape(h.value_label + (range.log ? " (log colour scale)" : "")));
  return o + "</svg>\n";
}

// Report directory helpers: files are written as DIR/name.

inline std::string to_csv(const line_plot& p) {
  std::string o = "series,x,y\n";
  for (const auto& s : p.series)
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) o += fmt::format("\"{}\",{},{}\n", s.name, s.x[i], s.y[i]);
  return o;
}

inline std::string to_csv(const heatmap& h) {
  std::string o = "row";
  for (const auto& c : h.columns) o += ",\"" + c + "\"";
  o += "\n";
  for (std::size_t r = 0; r < h.rows.size(); ++r) {
    o += "\"" + h.rows[r] + "\"";
    for (std::size_t c = 0; c < h.columns.size(); ++c) o += fmt::format(",{}", h.values[r * h.columns.size() + c]);
    o += "\n";
  }
  return o;
}

// Writes name.svg and name.csv.
template <class Plot>
void write_plot(const std::string& dir, const std::string& name, const Plot& p) {
  write_text_file(dir, name + ".svg", to_svg(p));
  write_text_file(dir, name + ".csv", to_csv(p));
}

}  // namespace qroar_cli
