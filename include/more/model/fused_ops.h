// Elementwise pieces of the LLaMA layer as single autograd nodes. Composed from ATen ops, each
// builds 5-10 autograd nodes and as many full passes over [tokens, hidden] in forward and backward
// (plus zero-filled slice gradients for RoPE's halves); these do 2-3 passes each way and keep
// fewer tensors alive. They run on any device and dtype ATen supports.
#pragma once
#include <torch/torch.h>

namespace more {

// RMSNorm: y = w * (x * rsqrt(mean(x^2, -1) + eps)), statistics in fp32 (double for double x),
// y in x's dtype.
// x [.., D]; w [D] (gradient only if it requires one; the base model's is frozen).
torch::Tensor FusedRmsNorm(const torch::Tensor& x, const torch::Tensor& w, double eps);

// Rotary embedding (rotate-half form): y = x * cos + rotate_half(x) * sin, rotate_half(x) =
// cat(-x2, x1) over the halves of the last dim. x [B, H, S, hd] (any strides); cos, sin [S, hd]
// with equal halves (cos[:, :hd/2] == cos[:, hd/2:], as LLaMA's tables are), in x's dtype.
torch::Tensor FusedRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

}  // namespace more
