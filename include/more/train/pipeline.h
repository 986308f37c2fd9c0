// Pipeline-parallel execution of one optimizer step over the micro-batches of a data-parallel
// replica. Every stage reads the same micro-batches (the loader is deterministic, packing too),
// so only activations [R, L, D] (R rows: B, or fewer when packed) and their gradients cross
// stages, point to point over the pp group,
// with shapes every stage already knows (no shape exchange). The task id is part of each
// micro-batch, so every stage's adapters pick that task's experts.
//
// Schedules (m micro-batches, p stages, this stage r):
//   1f1b : warmup min(p-r-1, m) forwards; steady state one forward then one backward;
//          cooldown backwards. At most p-r micro-batches' activations alive.
//   gpipe: all m forwards, then all m backwards (m activations alive); kept for comparison.
// Bubble fraction of both: (p-1)/(m+p-1).
// Sends are non-blocking (waited at the end of the step), receives blocking: with unique tags
// per (micro-batch, direction) the crossing sends of 1F1B cannot deadlock.
//
// Loss of micro-batch i: the last stage's gen_sum * gen_scale plus, on EVERY stage, that
// stage's contrastive terms * cl_scale (the contrastive loss is a sum over modules, so each
// stage back-propagates its own part together with the activation gradient).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "more/dist/process_grid.h"
#include "more/model/llama.h"
#include "more/train/loss.h"

namespace more {

class Pipeline {
 public:
  Pipeline(const LlamaStage& stage, const ProcessGrid& grid, std::string schedule);

  struct Sums {
    double gen_sum = 0;  // last stage: sum of target-token NLL over the micro-batches
    double cl_sum = 0;   // this stage's contrastive terms (already divided by num_modules)
  };
  // Forward + backward of all micro-batches; gradients accumulate into the adapters.
  Sums TrainStep(const std::vector<BatchTensors>& batches, double gen_scale, double cl_scale, bool contrastive,
                 int64_t num_modules);
  // Forward only: per-token NLL [B, L] on the last stage, an undefined tensor elsewhere.
  torch::Tensor ForwardNll(const torch::Tensor& ids, const torch::Tensor& targets, int task);

  // Order of operations of a schedule: (is_forward, micro-batch) pairs for stage r of p.
  static std::vector<std::pair<bool, int>> Order(const std::string& schedule, int p, int r, int m);

 private:
  const LlamaStage& stage_;
  const ProcessGrid& grid_;
  std::string schedule_;
};

}  // namespace more
