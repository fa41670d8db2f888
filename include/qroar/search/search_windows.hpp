// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "../error.hpp"
#include "search.hpp"

namespace qroar {
inline namespace v0 {

// Cutting token documents into the windows a search needs: dev windows (the objective), validation windows
// (acceptance of each step) and the short-context guard set (every trained-context chunk of the validation
// windows). `qroar search` and the library share these defaults through cut_search_windows and
// use_search_windows.

// Non-overlapping windows of `len` tokens from each document in turn, at most `max_windows` in all, spread over
// the documents: window k of every document before window k + 1 of any (the first windows of each document
// first). A document shorter than `len` gives none.
inline std::vector<std::vector<int>> windows_from_documents(const std::vector<std::vector<int>>& documents, int len,
                                                            int max_windows) {
  if (len < 2) throw invalid_argument("windows need at least 2 tokens");
  if (max_windows < 0) throw invalid_argument("max_windows must be >= 0");
  std::vector<std::vector<int>> out;
  const auto n = static_cast<std::size_t>(len);
  for (std::size_t k = 0; static_cast<int>(out.size()) < max_windows; ++k) {
    bool any = false;
    for (const auto& d : documents) {
      if ((k + 1) * n > d.size() || static_cast<int>(out.size()) >= max_windows) continue;
      out.emplace_back(d.begin() + static_cast<long>(k * n), d.begin() + static_cast<long>((k + 1) * n));
      any = true;
    }
    if (!any) break;
  }
  return out;
}

struct search_windows_options {
  int ctx = 0;                    // window length (longer than the trained context)
  int max_dev_windows = 2;        // in all, spread over the dev documents
  int max_validation_windows = 4; // in all
  // Without validation documents: the last `holdout_fraction` of every dev document that holds at least one
  // whole window of `ctx` tokens in that part is held out for validation (0 disables the hold-out).
  double holdout_fraction = 1.0 / 3.0;
};

struct search_windows {
  std::vector<std::vector<int>> dev, validation;
  bool held_out = false;   // the validation windows were cut from the dev documents' held-out tails
  std::string note;        // what was done, for the user (empty when validation documents were given)
};

// Dev and validation windows from token documents. With validation documents, dev windows come from the dev
// documents and validation windows from the validation documents. Without, each dev document of T tokens whose
// last floor(T * holdout_fraction) tokens hold at least one window is split there: dev windows from its head,
// validation windows from that tail (text the search never fits). Documents too short to split stay whole in the
// dev set; when none can be split there is no validation set and `note` says so.
inline search_windows cut_search_windows(const std::vector<std::vector<int>>& dev_documents,
                                         const std::vector<std::vector<int>>& validation_documents,
                                         const search_windows_options& o) {
  if (o.ctx < 2) throw invalid_argument("the search window length must be at least 2 tokens");
  if (!(o.holdout_fraction >= 0.0 && o.holdout_fraction < 1.0))
    throw invalid_argument("holdout_fraction must be in [0, 1)");
  search_windows w;
  if (!validation_documents.empty()) {
    w.dev = windows_from_documents(dev_documents, o.ctx, o.max_dev_windows);
    w.validation = windows_from_documents(validation_documents, o.ctx, o.max_validation_windows);
    return w;
  }
  std::vector<std::vector<int>> heads, tails;
  int split = 0;
  for (const auto& d : dev_documents) {
    const auto held = static_cast<std::size_t>(static_cast<double>(d.size()) * o.holdout_fraction);
    if (o.holdout_fraction > 0.0 && held >= static_cast<std::size_t>(o.ctx)) {
      heads.emplace_back(d.begin(), d.end() - static_cast<long>(held));
      tails.emplace_back(d.end() - static_cast<long>(held), d.end());
      ++split;
    } else {
      heads.push_back(d);
    }
  }
  w.dev = windows_from_documents(heads, o.ctx, o.max_dev_windows);
  w.validation = windows_from_documents(tails, o.ctx, o.max_validation_windows);
  w.held_out = !w.validation.empty();
  const int pct = static_cast<int>(o.holdout_fraction * 100.0 + 0.5);
  if (w.held_out)
    w.note = "no validation documents: held out the last " + std::to_string(pct) + "% of " + std::to_string(split) +
             " of " + std::to_string(dev_documents.size()) + " dev document(s) for validation and the short-context " +
             "guard (" + std::to_string(w.validation.size()) + " window(s) of " + std::to_string(o.ctx) + " tokens)";
  else
    w.note = "no validation documents, and no dev document is long enough to hold out " + std::to_string(pct) +
             "% as a window of " + std::to_string(o.ctx) +
             " tokens: steps are accepted on the dev objective alone and the short-context guard runs on the dev "
             "windows (give --validation, or longer dev documents)";
  return w;
}

// Puts the windows into the search options: validation windows, and the short-context guard set made of every
// `trained_ctx`-token chunk of the validation windows (of the dev windows when there are none; at most
// `guard_chunks` per window, evenly spaced, when > 0: short_context_windows).
inline void use_search_windows(search_options& o, const search_windows& w, int trained_ctx, int guard_chunks = 0) {
  o.validation_windows = w.validation;
  short_context_windows(o, w.validation.empty() ? w.dev : w.validation, trained_ctx, guard_chunks);
}

}  // namespace v0
}  // namespace qroar
