#include "more/eval/evaluator.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/eval/metrics.h"

namespace more {

Evaluator::Evaluator(const ShardSet& eval, std::vector<int> task_ids, int64_t max_samples, int64_t batch)
    : eval_(eval), task_ids_(std::move(task_ids)), max_samples_(max_samples), batch_(batch) {}

ScoringBatch MakeScoringBatch(const std::vector<std::vector<int32_t>>& seqs, const std::vector<int64_t>& starts,
                              int32_t pad) {
  MORE_CHECK(seqs.size() == starts.size() && !seqs.empty(), "scoring batch: {} sequences, {} starts", seqs.size(),
             starts.size());
  int64_t len = 0;
  for (const auto& s : seqs) len = std::max<int64_t>(len, static_cast<int64_t>(s.size()));
  const int64_t n = static_cast<int64_t>(seqs.size());
  ScoringBatch b;
  b.ids = torch::full({n, len}, pad, torch::kInt64);
  b.mask = torch::zeros({n, len}, torch::kFloat32);  // mask on the *target* index (shifted)
  auto ida = b.ids.accessor<int64_t, 2>();
  auto ma = b.mask.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i) {
    const auto& s = seqs[i];
    MORE_CHECK(starts[i] >= 1 && starts[i] <= static_cast<int64_t>(s.size()), "scoring batch: start {} of a {}-token row",
               starts[i], s.size());
    for (size_t j = 0; j < s.size(); ++j) ida[i][j] = s[j];
    for (size_t j = starts[i]; j < s.size(); ++j) ma[i][j - 1] = 1.0f;  // position j-1 predicts j
  }
  b.targets = torch::cat({b.ids.narrow(1, 1, len - 1), b.ids.narrow(1, len - 1, 1)}, 1);
  return b;
}

CandidatePrediction PredictFromCandidates(const std::vector<double>& ll, const std::vector<double>& values) {
  MORE_CHECK(!ll.empty(), "no candidates");
  CandidatePrediction p;
  p.best = static_cast<int>(std::max_element(ll.begin(), ll.end()) - ll.begin());
  if (values.empty()) return p;
  MORE_CHECK(values.size() == ll.size(), "{} candidate values for {} candidates", values.size(), ll.size());
  const double mx = ll[p.best];
  double z = 0, ev = 0;
  for (double l : ll) z += std::exp(l - mx);
  for (size_t j = 0; j < ll.size(); ++j) ev += std::exp(ll[j] - mx) / z * values[j];
  p.expected = ev;
  return p;
}

TaskScore ScoreTask(const std::string& task, const std::string& metric, int num_classes, const std::vector<int>& pred,
                    const std::vector<int>& gold, const std::vector<double>& pv, const std::vector<double>& gv) {
  TaskScore ts;
  ts.task = task;
  ts.metric = metric;
  if (IsRegressionMetric(metric)) {
    ts.n = static_cast<int64_t>(pv.size());
    ts.pearson = PearsonCorrelation(pv, gv);
    ts.spearman = SpearmanCorrelation(pv, gv);
    ts.score = metric == "pearson" ? ts.pearson : ts.spearman;
    return ts;
  }
  ts.n = static_cast<int64_t>(pred.size());
  ts.accuracy = Accuracy(pred, gold);
  if (metric == "mcc") ts.score = MatthewsCorrelation(pred, gold, num_classes);
  else if (metric == "f1") ts.score = F1Binary(pred, gold, 1);
  else ts.score = ts.accuracy;
  return ts;
}

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
    const std::vector<std::vector<int32_t>> part(seqs.begin() + b0, seqs.begin() + b1);
    const std::vector<int64_t> part_starts(starts.begin() + b0, starts.begin() + b1);
    const auto sb = MakeScoringBatch(part, part_starts, pad);
    const int64_t n = sb.ids.size(0);
    auto nll = pipeline.ForwardNll(sb.ids, sb.targets, model_task);        // [n, len] on the last stage
    auto ll = nll.defined() ? (-(nll * sb.mask.to(nll.device()))).sum(1).to(torch::kCPU, torch::kFloat64).contiguous()
                            : torch::zeros({n}, torch::kFloat64);
    grid.pp().Broadcast(ll, grid.layout().pp - 1);
    for (int64_t i = 0; i < n; ++i) out[b0 + i] = ll[i].item<double>();
  }
  return out;
}

}  // namespace

std::vector<TaskScore> Evaluator::Run(Pipeline& pipeline, const ProcessGrid& grid, const std::string& dump_path) const {
  std::vector<TaskScore> scores;
  std::string dump;  // JSON lines of every scored sequence (dump_path)
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
      if (IsRegressionMetric(info.metric)) {
        try {
          cand_value.push_back(std::stod(c));
        } catch (...) {
          throw Error(fmt::format("eval: task '{}' uses metric {} but candidate '{}' is not a number",
                                  info.name, info.metric, c));
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
      if (!dump_path.empty())
        for (size_t i = 0; i < seqs.size(); ++i)
          dump += nlohmann::json({{"task", info.name}, {"task_id", task_ids_[t]}, {"ids", seqs[i]},
                                  {"start", starts[i]}, {"ll", ll[i]}})
                      .dump() + "\n";
      const size_t k = cand.size();
      for (int i = 0; i < mb.batch_size; ++i) {
        const std::vector<double> row(ll.begin() + i * k, ll.begin() + (i + 1) * k);
        const auto p = PredictFromCandidates(row, cand_value);
        if (IsRegressionMetric(info.metric)) {
          pv.push_back(p.expected);
          gv.push_back(mb.label_value[i]);
        } else {
          pred.push_back(p.best);
          gold.push_back(mb.label_index[i]);
        }
      }
    }
    scores.push_back(ScoreTask(info.name, info.metric, static_cast<int>(cand.size()), pred, gold, pv, gv));
  }
  if (!dump_path.empty() && grid.is_world_root()) {
    std::filesystem::create_directories(std::filesystem::path(dump_path).parent_path());
    WriteFileAtomic(dump_path, dump);
  }
  return scores;
}

nlohmann::json Evaluator::ToJson(const std::vector<TaskScore>& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& t : s) {
    j[t.task] = {{"metric", t.metric}, {"score", t.score}, {"n", t.n}};
    if (IsRegressionMetric(t.metric)) {
      j[t.task]["pearson"] = t.pearson;
      j[t.task]["spearman"] = t.spearman;
    } else {
      j[t.task]["accuracy"] = t.accuracy;
    }
  }
  return j;
}

double Evaluator::Mean(const std::vector<TaskScore>& s) {
  double sum = 0;
  for (const auto& t : s) sum += t.score;
  return s.empty() ? 0.0 : sum / static_cast<double>(s.size());
}

}  // namespace more
