#include "more/parallel/adapted_linear.h"

#include "more/parallel/tp_ops.h"

namespace more {

torch::Tensor ForwardContext::Pooled(const torch::Tensor& x, torch::ScalarType dtype) {
  if (last_x_.defined() && last_x_.is_same(x) && last_pooled_.scalar_type() == dtype) return last_pooled_;
  if (!pool_weights_.defined() || pool_weights_.scalar_type() != dtype) pool_weights_ = MeanPoolWeights(token_mask, dtype);
  last_x_ = x;
  last_pooled_ = MeanPool(x, pool_weights_);
  return last_pooled_;
}

AdaptedLinear::AdaptedLinear(torch::Tensor weight_local, ParallelKind kind, MoreAdapter* adapter,
                             const Communicator* tp)
    : weight_(std::move(weight_local)), kind_(kind), adapter_(adapter), tp_(tp) {}

torch::Tensor AdaptedLinear::Forward(const torch::Tensor& x, ForwardContext& ctx) const {
  auto y = torch::matmul(x, weight_.t());                                 // [.., d_out/tp] or partial [.., d_out]
  if (adapter_) {
    y = y + adapter_->Delta(x, ctx.task, ctx.training).to(y.scalar_type());
    if (ctx.contrastive)
      ctx.cl_losses.push_back(adapter_->ContrastiveLossPooled(ctx.Pooled(x, adapter_->A.scalar_type()), ctx.task, *tp_));
  }
  if (kind_ == ParallelKind::kRow) y = ReduceFromTp(y, *tp_);
  return y;
}

}  // namespace more
