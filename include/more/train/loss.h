// Micro-batch tensors of the training objective (computed by Pipeline::TrainStep):
//   L = sum_{all target tokens of the step} nll / T_step + lambda * mean_{micro-batches} L_con
// token-weighted over the whole global batch, so gradient accumulation and data parallelism give
// exactly the single-batch gradient; L_con is the mean over adapted modules of each module's
// contrastive loss (MoreAdapter), summed stage by stage.
#pragma once
#include <torch/torch.h>

#include "more/data/batch.h"

namespace more {

// Rows R: B unpacked (one example per row), fewer when packed (MicroBatch::packed).
struct BatchTensors {
  torch::Tensor ids;         // [R, L] int64
  torch::Tensor targets;     // [R, L] int64: ids shifted left by one (last column: pad)
  torch::Tensor loss_mask;   // [R, L] fp32: 1 where targets[:, j] is a target token
  torch::Tensor token_mask;  // [R, L] fp32: 1 for real (non-pad) tokens
  // The labelled positions, found on the host (no device sync): the LM head and its
  // cross-entropy run on these rows only (LlamaStage::TokenNllAt). Ordered by example (the
  // sampler's order), then by position in the example: the same order packed and unpacked.
  torch::Tensor label_pos;      // [n] int64: flat positions row * L + col where loss_mask is 1
  torch::Tensor label_targets;  // [n] int64: targets at those positions
  int64_t num_labels = 0;       // n
  int task = 0;
  // Packed rows only (undefined otherwise): what ForwardContext carries to every layer.
  torch::Tensor positions;    // [R, L] int64: position inside the example (0 at its start)
  torch::Tensor attn_mask;    // [R, 1, L, L] bool: query i may attend key j (same segment, j <= i)
  torch::Tensor pool_matrix;  // [B, R*L] fp32: 1/len_e on example e's tokens (contrastive pooling)
  torch::Tensor cu_seqlens;   // [S+1] int32 on the host: segment boundaries (for varlen kernels; unused on CPU)
};
BatchTensors ToTensors(const MicroBatch& mb, torch::Device device);

}  // namespace more
