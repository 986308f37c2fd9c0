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

// SwiGLU's gating: y = silu(gate) * up, elementwise, in the inputs' dtype (same shapes).
torch::Tensor FusedSwiGlu(const torch::Tensor& gate, const torch::Tensor& up);

// Rotary embedding (rotate-half form): y = x * cos + rotate_half(x) * sin, rotate_half(x) =
// cat(-x2, x1) over the halves of the last dim. x [B, H, S, hd] (any strides); cos, sin [S, hd]
// with equal halves (cos[:, :hd/2] == cos[:, hd/2:], as LLaMA's tables are), in x's dtype.
torch::Tensor FusedRope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

// Causal self-attention of pre-scaled queries: out = softmax(q k^T + causal mask) v, the scores
// softmax in fp32 (double for double inputs). q, k, v [B, H, S, hd] (k, v already expanded to H heads for GQA); out
// [B, H, S, hd] in q's dtype. Right padding needs no mask of its own: a real token never sees a
// later (padded) position.
//   kComposed: one baddbmm with the [S, S] mask, softmax, bmm: materialises the [B, H, S, S]
//              scores (and their fp32 copy) in forward and backward. Any LibTorch; the reference.
//   kFused:    LibTorch >= 2.1's scaled_dot_product_attention with is_causal: flash-style kernels
//              on CPU (bf16/fp32) and CUDA, O(S) memory, the masked half never computed.
//   kAuto:     kFused where this LibTorch has it, else kComposed.
enum class AttentionImpl { kAuto, kComposed, kFused };
bool FusedAttentionAvailable();  // this LibTorch has scaled_dot_product_attention with a scale
// What kAuto means (model.attention = auto): kFused where available, else kComposed.
AttentionImpl DefaultAttentionImpl();
torch::Tensor CausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              AttentionImpl impl = AttentionImpl::kAuto);

// The same for packed rows (data.packing): causal inside each segment of a row, never across.
// allowed [B, 1, S, S] bool: true where query i may attend key j (same segment and j <= i);
// every query must allow at least itself (padding is a segment of its own, so no row is empty).
//   kComposed: the mask as an additive 0 / -inf bias in the scores' baddbmm (the reference).
//   kFused:    scaled_dot_product_attention with the boolean mask (LibTorch >= 2.1).
// GPU kernels that take the segments directly (flash-attn varlen, cu_seqlens of MicroBatch) are
// described in docs/gpu.md; not implemented.
torch::Tensor SegmentCausalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     const torch::Tensor& allowed, AttentionImpl impl = AttentionImpl::kAuto);

}  // namespace more
