// A small SVG writer for the --report plots: line plots (axes, ticks, labels, legend) and heatmaps (with a
// colour scale). No third-party plotting; the output renders with any SVG viewer (checked with rsvg-convert).
#pragma once

#include <fmt/format.h>

#include "cli_outputs.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace qroar_cli {

struct plot_series {
  std::string name;
  std::vector<double> x, y;
};

struct line_plot {
  std::string title, x_label, y_label;
  std::vector<plot_series> series;
  bool log_x = false;
};

struct heatmap {
  std::string title, x_label, y_label, value_label;
  std::vector<std::string> columns, rows;  // labels
  std::vector<double> values;              // rows x columns, row-major; NaN drawn grey
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

// "Nice" tick values covering [lo, hi].
inline std::vector<double> ticks(double lo, double hi, int target = 6) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

inline std::string fmt_tick(double v) {
  if (v != 0.0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3)) return fmt::format("{:.1e}", v);
  return fmt::format("{:.4g}", v);
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

}  // namespace detail_svg

inline std::string to_svg(const line_plot& p) {
  using namespace detail_svg;
  const double W = 900, H = 460, left = 80, right = 290, top = 50, bottom = 60;
  const double pw = W - left - right, ph = H - top - bottom;
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
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
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
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       xx, top, top + ph, top + ph + 18, fmt_tick(v));
    }
  } else {
    for (double v : ticks(x0, x1))
      o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>\n"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       X(v), top, top + ph, top + ph + 18, fmt_tick(v));
  }
  for (double v : ticks(y0, y1))
    o += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>\n"
                     "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
                     left, Y(v), left + pw, left - 6, Y(v) + 4, fmt_tick(v));
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", left, top, pw, ph);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + pw / 2, H - 18, escape(p.x_label));
  o += fmt::format("<text x=\"20\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 20 {0})\">{1}</text>\n",
                   top + ph / 2, escape(p.y_label));
  for (std::size_t k = 0; k < p.series.size(); ++k) {
    const auto& s = p.series[k];
    std::string pts;
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_x && s.x[i] <= 0)) continue;
      pts += fmt::format("{:.1f},{:.1f} ", X(s.x[i]), Y(s.y[i]));
    }
    o += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n", pts, colour(k));
    for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.y[i]) && !(p.log_x && s.x[i] <= 0))
        o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>\n", X(s.x[i]), Y(s.y[i]), colour(k));
    const double ly = top + 10 + 20.0 * static_cast<double>(k);
    o += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>\n"
                     "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                     left + pw + 12, ly, left + pw + 36, colour(k), left + pw + 42, ly + 4, escape(s.name));
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
  const double W = left + pw + 150, H = top + std::max(ph, 120.0) + bottom;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : h.values)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi <= lo) hi = lo + 1e-12;
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
      W, H, W / 2, escape(h.title));
  for (std::size_t r = 0; r < h.rows.size(); ++r) {
    for (std::size_t c = 0; c < h.columns.size(); ++c) {
      const std::size_t i = r * h.columns.size() + c;
      const double v = i < h.values.size() ? h.values[i] : std::numeric_limits<double>::quiet_NaN();
      const double t = (v - lo) / (hi - lo);
      const double x = left + cell_w * static_cast<double>(c), y = top + cell_h * static_cast<double>(r);
      o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" stroke=\"white\"/>\n", x, y,
                       cell_w, cell_h, std::isfinite(v) ? ramp(t) : std::string("#bbb"));
      o += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{}\">{}</text>\n",
                       x + cell_w / 2, y + cell_h / 2 + 4, std::isfinite(v) && t > 0.6 ? "black" : "white",
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
  // colour scale
  const double sx = left + pw + 30, sh = std::max(ph, 120.0);
  for (int k = 0; k < 50; ++k)
    o += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"18\" height=\"{:.2f}\" fill=\"{}\"/>\n", sx, top + sh * (49 - k) / 50.0,
                     sh / 50.0 + 0.5, ramp(k / 49.0));
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{}\" fill=\"none\" stroke=\"black\"/>\n", sx, top, sh);
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4.0;
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\">{}</text>\n", sx + 24, top + sh * (1.0 - k / 4.0) + 4, fmt_tick(v));
  }
  o += fmt::format("<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\" transform=\"rotate(-90 {0} {1})\">{2}</text>\n",
                   sx + 100, top + sh / 2, escape(h.value_label));
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
