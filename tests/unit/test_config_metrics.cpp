// Config (TOML + overrides + validation), metrics (by hand) and the optimizer/schedule.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <sstream>
#include <torch/torch.h>

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
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
  ::signal(SIGXFSZ, SIG_IGN);  // a file-size limit stands in for the full disk: write() fails with EFBIG
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = size + 10;  // room for 10 bytes of the next row only
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const bool wrote2 = log.Append({{"type", "train"}, {"step", 2}, {"loss", 1.25}});
  const bool wrote3 = log.Append({{"type", "train"}, {"step", 3}, {"loss", 1.0}});
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
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
