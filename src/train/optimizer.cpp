#include "more/train/optimizer.h"

#include <cmath>

#include "more/dist/communicator.h"

namespace more {

FlatAdamW::FlatAdamW(int64_t numel, AdamWOptions opt, torch::Device device)
    : opt_(opt),
      m_(torch::zeros({numel}, torch::TensorOptions(torch::kFloat32).device(device))),
      v_(torch::zeros({numel}, torch::TensorOptions(torch::kFloat32).device(device))) {}

void FlatAdamW::Step(torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& decay_mask,
                     double lr) {
  torch::NoGradGuard ng;
  ++t_;
  m_.mul_(opt_.beta1).add_(grad, 1.0 - opt_.beta1);
  v_.mul_(opt_.beta2).addcmul_(grad, grad, 1.0 - opt_.beta2);
  const double bc1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t_));
  if (opt_.weight_decay > 0) param.sub_(param * decay_mask, lr * opt_.weight_decay);
  auto denom = (v_ / bc2).sqrt_().add_(opt_.eps);
  param.addcdiv_(m_, denom, -lr / bc1);
}

double LearningRate(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_ratio) {
  if (warmup > 0 && step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double frac = std::min(1.0, static_cast<double>(step - warmup) / span);
  return lr * (1.0 - frac * (1.0 - min_ratio));
}

double ClipGradNorm(torch::Tensor& grad, double max_norm, const Communicator* group) {
  auto sq = grad.to(torch::kFloat64).pow(2).sum().reshape({1});
  if (group && group->size() > 1) group->AllReduceSum(sq);
  const double norm = std::sqrt(sq.item<double>());
  if (max_norm > 0 && std::isfinite(norm) && norm > max_norm) grad.mul_(max_norm / (norm + 1e-6));
  return norm;
}

}  // namespace more
