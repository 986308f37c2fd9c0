// Tensor-parallel communication as autograd functions, named by what they do forward/backward
// (Megatron-LM's f and g operators):
//   CopyToTp     forward: identity          backward: all-reduce(sum) over the TP group
//   ReduceFromTp forward: all-reduce(sum)   backward: identity
//   GatherFromTp forward: all-gather along the last dim   backward: keep this rank's slice
// With a TP group of size 1 they return their input unchanged (no autograd node).
#pragma once
#include <torch/torch.h>

#include "more/dist/communicator.h"

namespace more {

torch::Tensor CopyToTp(const torch::Tensor& x, const Communicator& tp);
torch::Tensor ReduceFromTp(const torch::Tensor& x, const Communicator& tp);
torch::Tensor GatherFromTp(const torch::Tensor& x, const Communicator& tp);

}  // namespace more
