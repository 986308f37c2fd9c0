#include "more/parallel/adapted_linear.h"

#include "more/parallel/tp_ops.h"

namespace more {

AdaptedLinear::AdaptedLinear(torch::Tensor weight_local, ParallelKind kind, MoreAdapter* adapter,
                             const Communicator* tp)
    : weight_(std::move(weight_local)), kind_(kind), adapter_(adapter), tp_(tp) {}

torch::Tensor AdaptedLinear::Forward(const torch::Tensor& x, ForwardContext& ctx) const {
  auto y = torch::matmul(x, weight_.t());                                 // [.., d_out/tp] or partial [.., d_out]
  if (adapter_) {
    y = y + adapter_->Delta(x, ctx.task, ctx.training).to(y.scalar_type());
    if (ctx.contrastive) ctx.cl_losses.push_back(adapter_->ContrastiveLoss(x, ctx.token_mask, ctx.task, *tp_));
  }
  if (kind_ == ParallelKind::kRow) y = ReduceFromTp(y, *tp_);
  return y;
}

}  // namespace more
