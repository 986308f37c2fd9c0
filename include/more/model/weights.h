// Loads frozen base weights from Hugging Face safetensors into torch tensors, each rank
// reading only its own tensor-parallel slice (rows or columns of a contiguous block) of the
// layers of its pipeline stage. Shapes are checked against config.json: a mismatch names the
// tensor, both shapes and the files.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "more/core/safetensors.h"

namespace more {

torch::ScalarType TorchDType(DType d);

// Reads tensor `name`, checks it has `expected_shape`, and returns the slice
// [part * n/parts, (part+1) * n/parts) along `split_dim` (-1: whole tensor), converted to
// `dtype` on `device`. Only the slice is copied out of the memory map.
torch::Tensor LoadTensorSlice(const SafetensorsCollection& st, const std::string& name,
                              const std::vector<int64_t>& expected_shape, int split_dim, int part,
                              int parts, torch::ScalarType dtype, torch::Device device);

}  // namespace more
