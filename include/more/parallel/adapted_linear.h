// A frozen, tensor-parallel linear layer of the base model with an optional MoRE/LoRA adapter.
//
// Column-parallel (q, k, v, gate, up): W0 [d_out, d_in] split by output rows; this rank holds
//   W_loc [d_out/tp, d_in]. Input x must already be full on every TP rank (the caller applies
//   CopyToTp once for all projections that share it). y_loc = x W_loc^T (+ adapter slice).
// Row-parallel (o, down): W0 split by input columns; W_loc [d_out, d_in/tp]; input x_loc is
//   this rank's slice [.., d_in/tp]; y = ReduceFromTp( x_loc W_loc^T + adapter partial ).
// The adapter path runs in fp32 (its parameters, their gradients, the rank-space products); with a
// bf16 base its last GEMM (r_t -> d_out in forward, r_t -> d_in for the input gradient) runs in
// bf16, accumulating into the base GEMM's output.
//
// Base and adapter run as ONE autograd node (LoraLinear), not as the dozen nodes autograd would
// build for x W^T + ((x a^T) * w) b^T: the adapter's up-projection accumulates into the base
// output inside the GEMM (addmm, beta = 1), and in backward the input gradient g W gets the
// adapter's (g b * w) a added the same way. That removes a full pass over the output in forward
// and one over the input in backward per module, and the small intermediate nodes.
#pragma once
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "more/adapter/more_adapter.h"
#include "more/dist/communicator.h"

namespace more {

// What a forward pass carries through every layer and pipeline stage.
struct ForwardContext {
  int task = 0;                 // task id of this micro-batch (single-task batches)
  bool training = false;
  torch::Tensor token_mask;     // [B, S] 1 = real token (for the contrastive pooling)
  // Packed rows (data.packing; all undefined for one example per row). B rows hold E examples.
  torch::Tensor positions;      // [B, S] int64: RoPE position of each token (0 at each example's start)
  torch::Tensor attn_mask;      // [B, 1, S, S] bool: query i may attend key j (same segment, j <= i)
  torch::Tensor pool_matrix;    // [E, B*S] fp32: per-example mean pool (1/len_e on example e's tokens);
                                // replaces token_mask's per-row pooling
  bool contrastive = false;     // collect per-module contrastive losses
  std::vector<torch::Tensor> cl_losses;  // contrastive terms of this stage (sum: every module's loss)
  // Modules' contrastive inputs not yet turned into losses: FlushContrastive computes them in
  // batches of modules with the same shape (MoreAdapter::ContrastiveLossBatch) and appends one
  // term per batch to cl_losses. LlamaStage flushes at the end of its layers (and of each
  // recomputed layer); a caller running AdaptedLinear::Forward itself must flush.
  struct PendingContrastive {
    const MoreAdapter* adapter;
    torch::Tensor pooled;
    const Communicator* tp;
  };
  std::vector<PendingContrastive> cl_pending;
  void FlushContrastive();

  // The contrastive loss's mean pool of a module input over its real tokens: made once per input
  // tensor (q/k/v read one, gate/up another) by the first module's LoraLinearPooled and stored.
  torch::Tensor PoolWeights(torch::ScalarType dtype);  // [B, 1, S] mask / count, or pool_matrix [E, B*S]
  torch::Tensor CachedPooled(const torch::Tensor& x, torch::ScalarType dtype) const;  // undefined if none
  void StorePooled(const torch::Tensor& x, torch::Tensor pooled);
  // The adapters' copy of a module input in their dtype (fp32 next to a bf16 base), made once for
  // the modules that read the same tensor (q/k/v, gate/up) and outside autograd: the fused node
  // saves it for backward, so the modules share one copy instead of keeping one each.
  torch::Tensor AdapterInput(const torch::Tensor& x, torch::ScalarType dtype);

 private:
  torch::Tensor pool_weights_;        // [B, 1, S] mask / count, or [E, B*S]
  torch::Tensor last_x_, last_pooled_;  // the previous call's input (held, so never aliased) and [B, d]
  torch::Tensor cast_x_, cast_;          // AdapterInput's previous input and its copy
};

// y = x W^T + ((dropout_p(x) a^T) * w) b^T, with f = MoreAdapter::FactorsFor(...), as one
// autograd node; gradients reach x, a, b, w (and W if it requires grad). x: [.., d_in] in the
// base dtype; W: [d_out, d_in] base dtype; the adapter factors are fp32 (or double in tests).
// Equal to x W^T + adapter.Delta(x) (same dropout draws), which the tests check.
// x_adapter: x already in the factors' dtype (ForwardContext::AdapterInput; no gradient of its
// own: x's carries it), or undefined to cast inside.
torch::Tensor LoraLinear(const torch::Tensor& x, const torch::Tensor& weight, const MoreAdapter::Factors& f,
                         const torch::Tensor& x_adapter = {});
// The same node with the contrastive loss's pooling of x as a second output:
//   z = MeanPool(x, pool_weights) [B, d_in] in the factors' dtype (x [B, S, d_in],
//   pool_weights = MeanPoolWeights(mask) [B, 1, S]), read from x_adapter, before dropout.
// Its gradient reaches x inside the node's input-gradient GEMM (dx += pool_weights^T dz as one
// more inner dimension per row), not as another pass over x's gradient. Undefined pool_weights:
// no pooling (second result undefined). Packed rows: pool_weights may instead be a matrix
// [E, B*S] (ForwardContext::pool_matrix): z = pool_weights x.view(B*S, d_in) [E, d_in], one
// pooled vector per example, its gradient added the same way (sel = pool_weights^T [B*S, E]).
std::pair<torch::Tensor, torch::Tensor> LoraLinearPooled(const torch::Tensor& x, const torch::Tensor& weight,
                                                         const MoreAdapter::Factors& f, const torch::Tensor& x_adapter,
                                                         const torch::Tensor& pool_weights);

class AdaptedLinear {
 public:
  AdaptedLinear() = default;
  // bias_local: optional frozen bias, column-parallel only (this rank's slice [d_out/tp]), added
  // after the adapter (Qwen2's q, k, v).
  AdaptedLinear(torch::Tensor weight_local, ParallelKind kind, MoreAdapter* adapter, const Communicator* tp,
                torch::Tensor bias_local = {});
  torch::Tensor Forward(const torch::Tensor& x, ForwardContext& ctx) const;
  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& bias() const { return bias_; }  // undefined: none
  MoreAdapter* adapter() const { return adapter_; }

 private:
  torch::Tensor weight_;  // frozen local shard, base dtype
  torch::Tensor bias_;    // [d_out/tp] frozen, base dtype; undefined: no bias
  ParallelKind kind_ = ParallelKind::kColumn;
  MoreAdapter* adapter_ = nullptr;
  const Communicator* tp_ = nullptr;
};

}  // namespace more
