// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>

namespace qroar {
inline namespace v0 {

// The one tensor type of qroar: a dense row-major float matrix. Weight matrices are (out_features,
// in_features) as in llama2.c, HF and GGUF, so row r of W_Q is output channel r. Activation blocks are
// (tokens, features): row t is token t. Every function documents its shapes in that form.
using tensor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using tensor_map = Eigen::Map<tensor>;
using const_tensor_map = Eigen::Map<const tensor>;
using vector = Eigen::VectorXf;
using vector_map = Eigen::Map<vector>;
using const_vector_map = Eigen::Map<const vector>;

}  // namespace v0
}  // namespace qroar
