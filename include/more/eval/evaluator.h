// Evaluation by scoring label candidates. For an eval row with prompt p (BOS + input tokens)
// and candidate labels c_1..c_K of its task, each candidate is scored by its log-likelihood
//   score_k = sum_j log p(c_k,j | p, c_k,<j)   over the candidate's tokens and EOS
// (exactly the tokens the generation loss trains on). Prediction: argmax_k score_k for
// accuracy/mcc tasks; for pearson tasks the expected value sum_k softmax(score)_k * value(c_k)
// (candidates are numbers). Every task is evaluated with its own task id, so MoRE uses that
// task's experts.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "more/data/shard_set.h"
#include "more/dist/process_grid.h"
#include "more/train/pipeline.h"

namespace more {

struct TaskScore {
  std::string task, metric;
  int64_t n = 0;
  double score = 0;     // the task's metric
  double accuracy = 0;  // classification tasks
};

class Evaluator {
 public:
  // task_ids[i]: the model's task id of eval task i (by name), -1 to skip the task.
  // Candidate token ids, EOS and pad come from the shard metadata.
  Evaluator(const ShardSet& eval, std::vector<int> task_ids, int64_t max_samples, int64_t batch);
  // Every rank of the job calls Run (pipeline stages forward in lock-step); the scores, computed
  // on the last stage, are broadcast so every rank returns the same values.
  std::vector<TaskScore> Run(Pipeline& pipeline, const ProcessGrid& grid) const;
  static nlohmann::json ToJson(const std::vector<TaskScore>& s);
  static double Mean(const std::vector<TaskScore>& s);

 private:
  const ShardSet& eval_;
  std::vector<int> task_ids_;
  int64_t max_samples_, batch_;
};

}  // namespace more
