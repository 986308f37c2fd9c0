// Evaluation by scoring label candidates. For an eval row with prompt p (BOS + input tokens)
// and candidate labels c_1..c_K of its task, each candidate is scored by its log-likelihood
//   score_k = sum_j log p(c_k,j | p, c_k,<j)   over the candidate's tokens and EOS
// (exactly the tokens the generation loss trains on). Prediction: argmax_k score_k for
// accuracy/mcc/f1 tasks; for pearson/spearman tasks the expected value
// sum_k softmax(score)_k * value(c_k) (candidates are numbers). Every task is evaluated with its
// own task id, so MoRE uses that task's experts. The pure pieces (batch layout, prediction from
// candidate scores, the task's metric) are free functions below, unit-tested on their own.
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
  double pearson = 0, spearman = 0;  // regression tasks: both correlations (score is one of them)
};

// The scoring forward's inputs for sequences seqs[i] whose target tokens start at starts[i]:
// ids [N, L] (padded with pad), targets [N, L] = ids shifted left by one, mask [N, L] = 1 at
// position j-1 for every target token j >= starts[i] (position j-1 predicts token j).
struct ScoringBatch {
  torch::Tensor ids, targets, mask;
};
ScoringBatch MakeScoringBatch(const std::vector<std::vector<int32_t>>& seqs, const std::vector<int64_t>& starts,
                              int32_t pad);

// One row's prediction from its K candidates' log-likelihoods ll[0..K): best = argmax; expected
// = sum_k softmax(ll)_k values[k] (regression; 0 when values is empty).
struct CandidatePrediction {
  int best = 0;
  double expected = 0;
};
CandidatePrediction PredictFromCandidates(const std::vector<double>& ll, const std::vector<double>& values);

// The task's score: classification from pred/gold class indices (accuracy | mcc | f1 with the
// second candidate positive), regression from predicted/gold values (pearson | spearman).
TaskScore ScoreTask(const std::string& task, const std::string& metric, int num_classes, const std::vector<int>& pred,
                    const std::vector<int>& gold, const std::vector<double>& pv, const std::vector<double>& gv);

class Evaluator {
 public:
  // task_ids[i]: the model's task id of eval task i (by name), -1 to skip the task.
  // Candidate token ids, EOS and pad come from the shard metadata.
  Evaluator(const ShardSet& eval, std::vector<int> task_ids, int64_t max_samples, int64_t batch);
  // Every rank of the job calls Run (pipeline stages forward in lock-step); the scores, computed
  // on the last stage, are broadcast so every rank returns the same values.
  // dump_path non-empty: world rank 0 also writes every scored sequence there as JSON lines
  // {"task", "task_id", "ids": [prompt + candidate + EOS], "start": first scored token, "ll":
  // its log-likelihood} (eval.dump; checks against other implementations read it).
  std::vector<TaskScore> Run(Pipeline& pipeline, const ProcessGrid& grid, const std::string& dump_path = "") const;
  static nlohmann::json ToJson(const std::vector<TaskScore>& s);
  static double Mean(const std::vector<TaskScore>& s);

 private:
  const ShardSet& eval_;
  std::vector<int> task_ids_;
  int64_t max_samples_, batch_;
};

}  // namespace more
