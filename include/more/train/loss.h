// The training objective of one single-task micro-batch on a single-stage model:
//   L = L_gen + lambda * L_con
//   L_gen = mean over target tokens of -log p(token_j | tokens_<j)   (prompt and pad masked)
//   L_con = mean over adapted modules of the module's contrastive loss (MoreAdapter)
// The pipeline-parallel schedule computes the same sum stage by stage.
#pragma once
#include <torch/torch.h>

#include "more/data/batch.h"
#include "more/model/llama.h"

namespace more {

struct BatchTensors {
  torch::Tensor ids;         // [B, L] int64
  torch::Tensor targets;     // [B, L] int64: ids shifted left by one (last column: pad)
  torch::Tensor loss_mask;   // [B, L] fp32: 1 where targets[:, j] is a target token
  torch::Tensor token_mask;  // [B, L] fp32: 1 for real (non-pad) tokens
  int task = 0;
};
BatchTensors ToTensors(const MicroBatch& mb, torch::Device device);

struct LossParts {
  torch::Tensor gen_sum;     // scalar: sum of target-token NLL (differentiable)
  torch::Tensor cl;          // scalar: mean contrastive loss over all adapted modules, or undefined
  double gen_sum_value = 0, cl_value = 0;
};

// The step objective is token-weighted over the whole global batch, so gradient accumulation and
// data parallelism give exactly the single-batch gradient:
//   L = sum_{all target tokens of the step} nll / T_step + lambda * mean_{micro-batches} L_con
// The trainer scales gen_sum by dp / T_step (the data-parallel all-reduce averages over dp).
// num_modules: adapted modules of the whole model (the contrastive mean's denominator).
LossParts ForwardLoss(const LlamaStage& stage, const BatchTensors& b, bool training, bool contrastive,
                      int64_t num_modules);

}  // namespace more
