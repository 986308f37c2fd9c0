// Micro-batch tensors of the training objective (computed by Pipeline::TrainStep):
//   L = sum_{all target tokens of the step} nll / T_step + lambda * mean_{micro-batches} L_con
// token-weighted over the whole global batch, so gradient accumulation and data parallelism give
// exactly the single-batch gradient; L_con is the mean over adapted modules of each module's
// contrastive loss (MoreAdapter), summed stage by stage.
#pragma once
#include <torch/torch.h>

#include "more/data/batch.h"

namespace more {

struct BatchTensors {
  torch::Tensor ids;         // [B, L] int64
  torch::Tensor targets;     // [B, L] int64: ids shifted left by one (last column: pad)
  torch::Tensor loss_mask;   // [B, L] fp32: 1 where targets[:, j] is a target token
  torch::Tensor token_mask;  // [B, L] fp32: 1 for real (non-pad) tokens
  // The labelled positions, found on the host (no device sync): the LM head and its
  // cross-entropy run on these rows only (LlamaStage::TokenNllAt).
  torch::Tensor label_pos;      // [n] int64: flat positions row * L + col where loss_mask is 1, ascending
  torch::Tensor label_targets;  // [n] int64: targets at those positions
  int64_t num_labels = 0;       // n
  int task = 0;
};
BatchTensors ToTensors(const MicroBatch& mb, torch::Device device);

}  // namespace more
