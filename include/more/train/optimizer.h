// AdamW (decoupled weight decay, Loshchilov & Hutter) over one flat fp32 parameter buffer:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * mask * p )
// plus the learning-rate schedule (linear warmup, then linear decay to min_lr) and global
// gradient-norm clipping. The state (m, v, t) is saved whole in every checkpoint.
#pragma once
#include <torch/torch.h>

namespace more {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class FlatAdamW {
 public:
  FlatAdamW(int64_t numel, AdamWOptions opt, torch::Device device = torch::kCPU);  // state on `device`
  // One update of `param` (flat, fp32) with `grad`; decay_mask [P] selects decayed entries.
  void Step(torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& decay_mask, double lr);
  int64_t t() const { return t_; }
  void set_t(int64_t t) { t_ = t; }
  torch::Tensor& m() { return m_; }
  torch::Tensor& v() { return v_; }

 private:
  AdamWOptions opt_;
  torch::Tensor m_, v_;  // [P] fp32
  int64_t t_ = 0;
};

// lr at optimizer step `step` (0-based): warmup (step+1)/warmup * lr, then linear decay from
// lr at the end of warmup to min_ratio*lr at total_steps.
double LearningRate(int64_t step, int64_t total_steps, int64_t warmup, double lr, double min_ratio);

// Scales grad in place so its L2 norm is at most max_norm (0: no clipping). Returns the norm
// before clipping.
// With `group` (the pipeline group), the norm is over the gradients of all stages.
class Communicator;
double ClipGradNorm(torch::Tensor& grad, double max_norm, const Communicator* group = nullptr);

}  // namespace more
