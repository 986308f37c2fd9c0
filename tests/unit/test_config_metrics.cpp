// Config (TOML + overrides + validation), metrics (by hand) and the optimizer/schedule.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <torch/torch.h>

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/eval/evaluator.h"
#include "more/eval/metrics.h"
#include "more/model/hf_config.h"
#include "more/train/metrics_log.h"
#include "more/train/optimizer.h"
#include "torch_test_util.h"

namespace more {
namespace {

TEST(Config, TomlThenOverridesThenValidate) {
  const auto dir = testing::ScratchDir("cfg");
  WriteFileAtomic(dir + "/a.toml", "[train]\nsteps = 12\nlr = 0.5\n[adapter]\nmethod = \"lora\"\n");
  auto c = LoadConfig(dir + "/a.toml", {"train.lr=0.25", "parallel.tp=2", "train.progress=false"});
  EXPECT_EQ(c.train.steps, 12);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.25);
  EXPECT_EQ(c.adapter.method, "lora");
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_FALSE(c.train.progress);
  // the resolved TOML reads back to the same config
  WriteFileAtomic(dir + "/b.toml", ConfigToToml(c));
  auto d = LoadConfig(dir + "/b.toml", {});
  EXPECT_EQ(ConfigToJson(c), ConfigToJson(d));
  EXPECT_EQ(ConfigToJson(ConfigFromJson(ConfigToJson(c))), ConfigToJson(c));
}

TEST(Config, ErrorsNameTheKey) {
  auto has = [](const std::function<void()>& f, const std::string& part) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what()).find(part) != std::string::npos;
    }
    return false;
  };
  EXPECT_TRUE(has([] { LoadConfig("", {"train.stepz=3"}); }, "train.stepz"));
  EXPECT_TRUE(has([] { LoadConfig("", {"train.steps=abc"}); }, "integer"));
  EXPECT_TRUE(has([] { LoadConfig("/nonexistent.toml", {}); }, "/nonexistent.toml"));
  auto c = LoadConfig("", {"model.path=x", "data.train=y", "adapter.scaling=linear"});
  EXPECT_TRUE(has([&] { c.Validate(); }, "adapter.scaling"));
  c = LoadConfig("", {"model.path=x", "data.train=y", "adapter.targets=q,zz"});
  EXPECT_TRUE(has([&] { c.Validate(); }, "zz"));
  EXPECT_TRUE(has([] { LoadConfig("", {}).Validate(); }, "model.path"));
}

// Optimizer settings outside their domain are refused at start-up, naming the key (issue 16).
TEST(Config, OptimizerSettingsValidated) {
  auto message = [](const std::string& override_) -> std::string {
    try {
      LoadConfig("", {"model.path=x", "data.train=y", override_}).Validate();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const std::pair<const char*, const char*> bad[] = {
      {"train.beta1=1.0", "train.beta1"}, {"train.beta1=-0.1", "train.beta1"}, {"train.beta2=1.5", "train.beta2"},
      {"train.beta2=nan", "train.beta2"}, {"train.eps=-1", "train.eps"},     {"train.eps=0", "train.eps"},
      {"train.lr=inf", "train.lr"},       {"train.lr=0", "train.lr"},       {"train.weight_decay=-1", "train.weight_decay"},
      {"train.grad_clip=inf", "train.grad_clip"}, {"train.min_lr_ratio=nan", "train.min_lr_ratio"},
      {"parallel.timeout_s=-1", "parallel.timeout_s"}, {"adapter.tau=inf", "adapter.tau"}};
  for (const auto& [o, key] : bad) EXPECT_NE(message(o).find(std::string("config: ") + key), std::string::npos) << o;
  for (const char* ok : {"train.beta1=0", "train.beta2=0.95", "train.eps=1e-6", "train.lr=1", "parallel.timeout_s=0"})
    EXPECT_EQ(message(ok), "") << ok;
}

std::vector<nlohmann::json> JsonlRows(const std::string& path) {  // throws on a line that is not JSON
  std::vector<nlohmann::json> rows;
  std::istringstream in(ReadFileToString(path));
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// A full disk mid-row: the row is lost, counted, the file stays valid JSONL and writing resumes
// once there is room again (issue 16: the old log went on silently with a torn last line).
TEST(MetricsLog, FullDiskKeepsTheFileValidAndCountsLostRows) {
  const auto dir = testing::ScratchDir("metrics_full");
  const auto path = dir + "/metrics.jsonl";
  std::filesystem::remove(path);
  MetricsLog log;
  EXPECT_EQ(log.Open(path, 0), 0);
  ASSERT_TRUE(log.Append({{"type", "train"}, {"step", 1}, {"loss", 1.5}}));
  const auto size = std::filesystem::file_size(path);
  testing::FileSizeLimit full(size + 10);  // the full disk: room for 10 bytes of the next row only
  ASSERT_TRUE(full.ok());
  const bool wrote2 = log.Append({{"type", "train"}, {"step", 2}, {"loss", 1.25}});
  const bool wrote3 = log.Append({{"type", "train"}, {"step", 3}, {"loss", 1.0}});
  ASSERT_TRUE(full.Lift());
  EXPECT_FALSE(wrote2);
  EXPECT_FALSE(wrote3);
  EXPECT_EQ(std::filesystem::file_size(path), size);  // the torn part of row 2 was cut off
  EXPECT_TRUE(log.Append({{"type", "train"}, {"step", 4}, {"loss", 0.5}}));
  EXPECT_EQ(log.dropped_rows(), 2);
  const auto rows = JsonlRows(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["step"], 1);
  EXPECT_EQ(rows[1]["step"], 4);
}

// Opening for a run that resumes at step S drops rows of steps after S and a torn last line;
// a fresh start (S = 0) drops every old row.
TEST(MetricsLog, ResumeDropsRowsOfStepsThatRunAgain) {
  const auto dir = testing::ScratchDir("metrics_resume");
  const auto path = dir + "/metrics.jsonl";
  const std::string text =
      "{\"type\":\"eval\",\"step\":0}\n{\"type\":\"train\",\"step\":1}\n{\"type\":\"train\",\"step\":2}\n"
      "{\"type\":\"eval\",\"step\":2}\n{\"type\":\"train\",\"step\":3}\n{\"type\":\"train\",\"step\":4}\n{\"type\":\"tr";
  WriteFileAtomic(path, text);
  {
    MetricsLog log;
    EXPECT_EQ(log.Open(path, 2), 3);  // steps 3, 4 and the torn line
    EXPECT_TRUE(log.Append({{"type", "train"}, {"step", 3}}));
  }
  auto rows = JsonlRows(path);
  std::vector<int> steps;
  for (const auto& r : rows) steps.push_back(r["step"].get<int>());
  EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 2, 3}));
  MetricsLog fresh;
  EXPECT_EQ(fresh.Open(path, 0), 5);
  EXPECT_TRUE(JsonlRows(path).empty());
}

TEST(Config, LayoutValidation) {
  LlamaConfig m;  // LLaMA2-7B defaults: 32 heads, 32 layers
  Config c;
  c.parallel.tp = 2;
  c.parallel.pp = 4;
  c.train.global_batch = 32;
  c.train.micro_batch = 4;
  EXPECT_NO_THROW(c.ValidateAgainstModel(m, 16));  // dp = 2
  EXPECT_THROW(c.ValidateAgainstModel(m, 12), Error);  // 12 % 8
  c.parallel.pp = 3;
  EXPECT_THROW(c.ValidateAgainstModel(m, 6), Error);  // 32 layers % 3
}

TEST(Metrics, ByHand) {
  EXPECT_DOUBLE_EQ(Accuracy({0, 1, 1, 0}, {0, 1, 0, 0}), 0.75);
  // binary MCC: tp=1 tn=2 fp=1 fn=0 -> (1*2-1*0)/sqrt(2*1*3*2) = 2/sqrt(12)
  EXPECT_NEAR(MatthewsCorrelation({1, 1, 0, 0}, {1, 0, 0, 0}, 2), 2.0 / std::sqrt(12.0), 1e-12);
  EXPECT_DOUBLE_EQ(MatthewsCorrelation({0, 0, 0}, {0, 1, 0}, 2), 0.0);  // constant prediction
  EXPECT_NEAR(MatthewsCorrelation({0, 1, 2, 2}, {0, 1, 2, 2}, 3), 1.0, 1e-12);
  EXPECT_NEAR(PearsonCorrelation({1, 2, 3}, {2, 4, 6}), 1.0, 1e-12);
  EXPECT_NEAR(PearsonCorrelation({1, 2, 3}, {3, 2, 1}), -1.0, 1e-12);
  EXPECT_NEAR(PearsonCorrelation({1, 2, 3, 4}, {1, 3, 2, 4}), 0.8, 1e-12);
}

// Multi-class MCC of an imperfect prediction against its definition as the correlation of the
// one-hot prediction and truth matrices: sum_k cov(X_k, Y_k) / sqrt(sum_k var(X_k) sum_k var(Y_k)).
TEST(Metrics, MulticlassMccOfAnImperfectPrediction) {
  const std::vector<int> pred = {0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 1};
  const std::vector<int> gold = {0, 1, 2, 1, 1, 2, 2, 0, 0, 2, 0, 1};
  const int k = 3;
  const double n = static_cast<double>(pred.size());
  double cxy = 0, cxx = 0, cyy = 0;
  for (int c = 0; c < k; ++c) {
    double mx = 0, my = 0;
    for (size_t i = 0; i < pred.size(); ++i) { mx += pred[i] == c; my += gold[i] == c; }
    mx /= n;
    my /= n;
    for (size_t i = 0; i < pred.size(); ++i) {
      const double x = (pred[i] == c) - mx, y = (gold[i] == c) - my;
      cxy += x * y;
      cxx += x * x;
      cyy += y * y;
    }
  }
  const double expect = cxy / std::sqrt(cxx * cyy);
  EXPECT_GT(expect, 0.2);
  EXPECT_LT(expect, 0.9);
  EXPECT_NEAR(MatthewsCorrelation(pred, gold, k), expect, 1e-12);
  // a prediction worse than chance is negative
  EXPECT_LT(MatthewsCorrelation({1, 2, 0, 1, 2, 0}, {0, 1, 2, 0, 1, 2}, 3), 0.0);
}

TEST(Metrics, F1BinaryAndSpearman) {
  // tp = 2, fp = 1, fn = 1: precision = recall = 2/3
  EXPECT_NEAR(F1Binary({1, 1, 0, 1, 0, 0}, {1, 0, 0, 1, 1, 0}), 2.0 / 3.0, 1e-12);
  // positive class 0: tp = 2, fp = 1, fn = 1 as well; tp = 1, fp = 0, fn = 2 here
  EXPECT_NEAR(F1Binary({0, 1, 1, 1}, {0, 0, 0, 1}, 0), 2.0 * 1 / (2.0 * 1 + 0 + 2), 1e-12);
  EXPECT_DOUBLE_EQ(F1Binary({0, 0}, {0, 0}), 0.0);  // no positives anywhere
  // Spearman without ties: 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6*4/120 = 0.8
  EXPECT_NEAR(SpearmanCorrelation({1, 2, 3, 4, 5}, {2, 1, 4, 3, 5}), 0.8, 1e-12);
  // monotone but not linear: Spearman 1, Pearson below 1
  EXPECT_NEAR(SpearmanCorrelation({1, 2, 3, 4}, {1, 8, 27, 64}), 1.0, 1e-12);
  EXPECT_LT(PearsonCorrelation({1, 2, 3, 4}, {1, 8, 27, 64}), 0.99);
  EXPECT_EQ(MeanRanks({10, 20, 20, 30}), (std::vector<double>{1, 2.5, 2.5, 4}));
  EXPECT_EQ(MeanRanks({3, 1, 3, 3}), (std::vector<double>{3, 1, 3, 3}));
  EXPECT_DOUBLE_EQ(SpearmanCorrelation({1, 1, 1}, {1, 2, 3}), 0.0);  // constant side
}

// The scoring batch: the mask picks exactly the candidate tokens (and EOS) of each row, at the
// position that predicts them.
TEST(Evaluator, ScoringBatchMasksExactlyTheCandidateTokens) {
  const std::vector<std::vector<int32_t>> seqs = {{1, 5, 6, 7, 2}, {1, 9, 3, 2}, {1, 4, 2}};
  const std::vector<int64_t> starts = {3, 2, 1};
  const auto b = MakeScoringBatch(seqs, starts, 0);
  ASSERT_EQ(b.ids.sizes(), torch::IntArrayRef({3, 5}));
  for (size_t i = 0; i < seqs.size(); ++i) {
    std::vector<int32_t> picked;
    for (int64_t j = 0; j < 5; ++j)
      if (b.mask[i][j].item<float>() == 1.0f) {
        EXPECT_EQ(b.ids[i][j + 1].item<int64_t>(), b.targets[i][j].item<int64_t>());  // position j predicts j+1
        picked.push_back(static_cast<int32_t>(b.targets[i][j].item<int64_t>()));
      }
    EXPECT_EQ(picked, std::vector<int32_t>(seqs[i].begin() + starts[i], seqs[i].end())) << "row " << i;
  }
  EXPECT_EQ(b.ids[1][4].item<int64_t>(), 0);  // padding
  // a fake per-position NLL equal to the target id: the row score is minus the sum of its
  // candidate tokens' ids
  auto ll = (-(b.targets.to(torch::kFloat32) * b.mask)).sum(1);
  EXPECT_FLOAT_EQ(ll[0].item<float>(), -(7 + 2));
  EXPECT_FLOAT_EQ(ll[1].item<float>(), -(3 + 2));
  EXPECT_FLOAT_EQ(ll[2].item<float>(), -(4 + 2));
}

TEST(Evaluator, PredictionFromCandidateScores) {
  auto p = PredictFromCandidates({-3.0, -1.0, -2.0}, {});
  EXPECT_EQ(p.best, 1);
  // expected value under softmax(ll), by hand
  const std::vector<double> ll = {-3.0, -1.0, -2.0}, v = {0.0, 2.5, 5.0};
  const double z = std::exp(-3.0) + std::exp(-1.0) + std::exp(-2.0);
  p = PredictFromCandidates(ll, v);
  EXPECT_NEAR(p.expected, (std::exp(-1.0) * 2.5 + std::exp(-2.0) * 5.0) / z, 1e-12);
  // large log-likelihoods do not overflow
  EXPECT_NEAR(PredictFromCandidates({-1000.0, -1001.0}, {1.0, 3.0}).expected,
              (1.0 + 3.0 * std::exp(-1.0)) / (1.0 + std::exp(-1.0)), 1e-12);
}

// The regression path end to end from candidate scores: a model that prefers the candidates
// near the gold value scores a high Pearson; one that cannot tell them apart scores 0. A
// Pearson near 0 in a run therefore means the model's candidate scores do not track the label.
TEST(Evaluator, PearsonPathTellsAGoodModelFromAnUninformedOne) {
  const std::vector<double> values = {0, 1, 2, 3, 4, 5};
  const std::vector<double> gold = {0.4, 4.6, 2.2, 3.1, 1.0, 5.0, 2.8, 0.0};
  std::vector<double> good, flat;
  for (double g : gold) {
    std::vector<double> ll;
    for (double c : values) ll.push_back(-2.0 * std::abs(c - g));
    good.push_back(PredictFromCandidates(ll, values).expected);
    flat.push_back(PredictFromCandidates(std::vector<double>(values.size(), -1.0), values).expected);
  }
  for (const std::string metric : {"pearson", "spearman"}) {
    const auto s = ScoreTask("similarity", metric, 6, {}, {}, good, gold);
    EXPECT_GT(s.pearson, 0.95);
    EXPECT_GT(s.spearman, 0.95);
    EXPECT_DOUBLE_EQ(s.score, metric == "pearson" ? s.pearson : s.spearman);
    EXPECT_EQ(s.n, static_cast<int64_t>(gold.size()));
    EXPECT_DOUBLE_EQ(ScoreTask("similarity", metric, 6, {}, {}, flat, gold).score, 0.0);
  }
  const auto f1 = ScoreTask("paraphrase", "f1", 2, {1, 1, 0, 1, 0, 0}, {1, 0, 0, 1, 1, 0}, {}, {});
  EXPECT_NEAR(f1.score, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(f1.accuracy, 4.0 / 6.0, 1e-12);
  EXPECT_NEAR(ScoreTask("cola", "mcc", 2, {1, 1, 0, 0}, {1, 0, 0, 0}, {}, {}).score, 2.0 / std::sqrt(12.0), 1e-12);
}

TEST(Optimizer, FlatAdamWMatchesTorchAdamW) {
  torch::manual_seed(0);
  auto p0 = torch::randn({10});
  auto p = p0.clone();
  auto q = p0.clone().requires_grad_(true);
  FlatAdamW mine(10, {0.9, 0.99, 1e-8, 0.1});
  torch::optim::AdamW ref({q}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.1));
  auto mask = torch::ones({10});
  for (int i = 0; i < 5; ++i) {
    auto g = torch::randn({10});
    mine.Step(p, g, mask, 0.01);
    q.mutable_grad() = g.clone();
    ref.step();
  }
  EXPECT_TRUE(torch::allclose(p, q.detach(), 1e-6, 1e-7));
}

TEST(Optimizer, ScheduleAndClip) {
  EXPECT_DOUBLE_EQ(LearningRate(0, 100, 10, 1.0, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(9, 100, 10, 1.0, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(55, 100, 10, 1.0, 0.0), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(100, 100, 10, 1.0, 0.2), 0.2);
  auto g = torch::tensor({3.0f, 4.0f});
  EXPECT_NEAR(ClipGradNorm(g, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(g.norm().item<double>(), 1.0, 1e-5);
}

}  // namespace
}  // namespace more
