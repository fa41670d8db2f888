// SPDX-License-Identifier: MIT
// qroar: the whole public API.
#pragma once

#include "config.hpp"
#include "error.hpp"
#include "tensor.hpp"
#include "version.hpp"

#include "rope.hpp"
