#include "more/eval/evaluator.h"

#include <cmath>

#include "more/core/error.h"
#include "more/eval/metrics.h"

namespace more {

Evaluator::Evaluator(const ShardSet& eval, std::vector<int> task_ids, int64_t max_samples, int64_t batch)
    : eval_(eval), task_ids_(std::move(task_ids)), max_samples_(max_samples), batch_(batch) {}

namespace {

// Log-likelihood of each sequence's target positions. seqs: token rows; starts[i]: index of the
// first target token in seqs[i]. Returns [N] sums.
std::vector<double> ScoreSequences(Pipeline& pipeline, const ProcessGrid& grid,
                                   const std::vector<std::vector<int32_t>>& seqs,
                                   const std::vector<int64_t>& starts, int model_task, int32_t pad,
                                   int64_t batch) {
  std::vector<double> out(seqs.size());
  torch::NoGradGuard ng;
  for (size_t b0 = 0; b0 < seqs.size(); b0 += batch) {
    const size_t b1 = std::min(seqs.size(), b0 + static_cast<size_t>(batch));
    int64_t len = 0;
    for (size_t i = b0; i < b1; ++i) len = std::max<int64_t>(len, seqs[i].size());
    const int64_t n = static_cast<int64_t>(b1 - b0);
    auto ids = torch::full({n, len}, pad, torch::kInt64);
    auto mask = torch::zeros({n, len}, torch::kFloat32);  // mask on the *target* index (shifted)
    auto ida = ids.accessor<int64_t, 2>();
    auto ma = mask.accessor<float, 2>();
    for (int64_t i = 0; i < n; ++i) {
      const auto& s = seqs[b0 + i];
      for (size_t j = 0; j < s.size(); ++j) ida[i][j] = s[j];
      for (size_t j = starts[b0 + i]; j < s.size(); ++j) ma[i][j - 1] = 1.0f;  // position j-1 predicts j
    }
    auto targets = torch::cat({ids.narrow(1, 1, len - 1), ids.narrow(1, len - 1, 1)}, 1);
    auto nll = pipeline.ForwardNll(ids, targets, model_task);               // [n, len] on the last stage
    auto ll = nll.defined() ? (-(nll * mask.to(nll.device()))).sum(1).to(torch::kCPU, torch::kFloat64).contiguous()
                            : torch::zeros({n}, torch::kFloat64);
    grid.pp().Broadcast(ll, grid.layout().pp - 1);
    for (int64_t i = 0; i < n; ++i) out[b0 + i] = ll[i].item<double>();
  }
  return out;
}

}  // namespace

std::vector<TaskScore> Evaluator::Run(Pipeline& pipeline, const ProcessGrid& grid) const {
  std::vector<TaskScore> scores;
  const auto& tasks = eval_.tasks();
  for (size_t t = 0; t < tasks.size(); ++t) {
    if (task_ids_[t] < 0) continue;
    const auto& info = tasks[t];
    if (info.candidates.empty() || info.size == 0) continue;
    std::vector<std::vector<int32_t>> cand;
    std::vector<double> cand_value;
    const auto& meta = eval_.shards().at(0);
    if (info.candidate_ids.size() != info.candidates.size())
      throw Error(fmt::format("eval shards: task '{}' has no candidate token ids", info.name),
                  "rebuild the shards with this version of shard_data");
    for (size_t ci = 0; ci < info.candidates.size(); ++ci) {
      const auto& c = info.candidates[ci];
      auto ids = info.candidate_ids[ci];
      ids.push_back(meta.eos_id);
      cand.push_back(ids);
      if (info.metric == "pearson") {
        try {
          cand_value.push_back(std::stod(c));
        } catch (...) {
          throw Error(fmt::format("eval: task '{}' uses metric pearson but candidate '{}' is not a number",
                                  info.name, c));
        }
      }
    }
    const int64_t n = max_samples_ > 0 ? std::min(max_samples_, info.size) : info.size;
    std::vector<int> pred, gold;
    std::vector<double> pv, gv;
    const int64_t chunk = std::max<int64_t>(1, batch_ / static_cast<int64_t>(cand.size()));
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
      std::vector<int64_t> rows;
      for (int64_t r = r0; r < std::min(n, r0 + chunk); ++r) rows.push_back(r);
      auto mb = eval_.Read(static_cast<int>(t), rows, 1, meta.pad_id);
      std::vector<std::vector<int32_t>> seqs;
      std::vector<int64_t> starts;
      for (int i = 0; i < mb.batch_size; ++i) {
        const int32_t* row = mb.input_ids.data() + static_cast<size_t>(i) * mb.seq_len;
        const int64_t pl = mb.prompt_lengths[i];
        for (const auto& c : cand) {
          std::vector<int32_t> s(row, row + pl);
          s.insert(s.end(), c.begin(), c.end());
          seqs.push_back(std::move(s));
          starts.push_back(pl);
        }
      }
      auto ll = ScoreSequences(pipeline, grid, seqs, starts, task_ids_[t], meta.pad_id, batch_);
      const size_t k = cand.size();
      for (int i = 0; i < mb.batch_size; ++i) {
        const double* s = ll.data() + i * k;
        const int best = static_cast<int>(std::max_element(s, s + k) - s);
        if (info.metric == "pearson") {
          double mx = *std::max_element(s, s + k), z = 0, ev = 0;
          for (size_t j = 0; j < k; ++j) z += std::exp(s[j] - mx);
          for (size_t j = 0; j < k; ++j) ev += std::exp(s[j] - mx) / z * cand_value[j];
          pv.push_back(ev);
          gv.push_back(mb.label_value[i]);
        } else {
          pred.push_back(best);
          gold.push_back(mb.label_index[i]);
        }
      }
    }
    TaskScore ts{info.name, info.metric, n, 0, 0};
    if (info.metric == "pearson") {
      ts.score = PearsonCorrelation(pv, gv);
    } else {
      ts.accuracy = Accuracy(pred, gold);
      ts.score = info.metric == "mcc" ? MatthewsCorrelation(pred, gold, static_cast<int>(cand.size())) : ts.accuracy;
    }
    scores.push_back(ts);
  }
  return scores;
}

nlohmann::json Evaluator::ToJson(const std::vector<TaskScore>& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : s) {
    j[t.task] = {{"metric", t.metric}, {"score", t.score}, {"n", t.n}};
    if (t.metric != "pearson") j[t.task]["accuracy"] = t.accuracy;
  }
  return j;
}

double Evaluator::Mean(const std::vector<TaskScore>& s) {
  double sum = 0;
  for (const auto& t : s) sum += t.score;
  return s.empty() ? 0.0 : sum / static_cast<double>(s.size());
}

}  // namespace more
