// SPDX-License-Identifier: MIT
// Diagnostics module: Interpolation Pressure, Tail Inflation Ratios, logit and attention error profiles.
#pragma once

#include "diag/diagnostics.hpp"
