// SPDX-License-Identifier: MIT
// RoPE module: pair layouts, position-interpolation schemes, frequency bands, application.
#pragma once

#include "rope/apply.hpp"
#include "rope/bands.hpp"
#include "rope/layout.hpp"
#include "rope/scaling.hpp"
