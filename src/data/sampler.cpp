#include "more/data/sampler.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <numeric>
#include <sstream>

#include "more/core/error.h"

namespace more {

SamplingMode ParseSamplingMode(const std::string& name) {
  if (name == "paper") return SamplingMode::kPaper;
  if (name == "uniform") return SamplingMode::kUniform;
  if (name == "proportional") return SamplingMode::kProportional;
  if (name == "temperature") return SamplingMode::kTemperature;
  throw Error("unknown sampling mode '" + name + "'", "use paper, uniform, proportional or temperature");
}

std::string SamplingModeName(SamplingMode mode) {
  switch (mode) {
    case SamplingMode::kPaper:
      return "paper";
    case SamplingMode::kUniform:
      return "uniform";
    case SamplingMode::kProportional:
      return "proportional";
    case SamplingMode::kTemperature:
      return "temperature";
  }
  return "?";
}

std::vector<double> TaskWeights(SamplingMode mode, const std::vector<int64_t>& sizes, double temperature) {
  if (sizes.empty()) throw Error("TaskWeights: no tasks");
  double total = 0;
  for (size_t t = 0; t < sizes.size(); ++t) {
    if (sizes[t] < 0) Fail("TaskWeights: task {} has negative size {}", t, sizes[t]);
    total += static_cast<double>(sizes[t]);
  }
  if (total == 0)
    throw Error("every task is empty: nothing to sample", "check the shards with `shard_data inspect`");
  if (mode == SamplingMode::kTemperature && !(temperature > 0))
    Fail("sampling temperature {} must be > 0", temperature);
  std::vector<double> w(sizes.size(), 0.0);
  for (size_t t = 0; t < sizes.size(); ++t) {
    if (sizes[t] == 0) continue;
    const double n = static_cast<double>(sizes[t]);
    switch (mode) {
      case SamplingMode::kPaper:
        w[t] = std::exp(n / total);
        break;
      case SamplingMode::kUniform:
        w[t] = 1.0;
        break;
      case SamplingMode::kProportional:
        w[t] = n;
        break;
      case SamplingMode::kTemperature:
        w[t] = std::pow(n, 1.0 / temperature);
        break;
    }
  }
  const double sum = std::accumulate(w.begin(), w.end(), 0.0);
  for (auto& x : w) x /= sum;
  return w;
}

namespace {

// SplitMix64 finaliser: decorrelates (seed, task, epoch) into a 64-bit engine seed.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform integer in [0, n) from raw engine output (rejection sampling: unbiased, portable).
uint64_t UniformBelow(std::mt19937_64& eng, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t x = eng();
    if (x >= threshold) return x % n;
  }
}

// Uniform double in [0, 1) from the top 53 bits.
double Uniform01(std::mt19937_64& eng) { return static_cast<double>(eng() >> 11) * 0x1.0p-53; }

constexpr int kStateVersion = 1;

}  // namespace

BatchSampler::BatchSampler(std::vector<int64_t> sizes, std::vector<double> weights, int micro_batch,
                           int dp_size, uint64_t seed)
    : sizes_(std::move(sizes)), micro_batch_(micro_batch), dp_size_(dp_size), seed_(seed) {
  const size_t T = sizes_.size();
  if (T == 0) throw Error("BatchSampler: no tasks");
  if (weights.size() != T) Fail("BatchSampler: {} weights for {} tasks", weights.size(), T);
  if (micro_batch < 1 || dp_size < 1)
    Fail("BatchSampler: micro_batch ({}) and dp_size ({}) must be >= 1", micro_batch, dp_size);
  double sum = 0;
  for (size_t t = 0; t < T; ++t) {
    if (!(weights[t] >= 0) || !std::isfinite(weights[t]))
      Fail("BatchSampler: task {} has invalid weight {}", t, weights[t]);
    if (weights[t] > 0 && sizes_[t] <= 0)
      Fail("BatchSampler: task {} has weight {} but {} rows (hint: give empty tasks weight 0)", t, weights[t],
           sizes_[t]);
    sum += weights[t];
  }
  if (!(sum > 0)) throw Error("BatchSampler: all task weights are 0");
  weights_.resize(T);
  cumulative_.resize(T);
  double run = 0;
  for (size_t t = 0; t < T; ++t) {
    weights_[t] = weights[t] / sum;
    run += weights_[t];
    cumulative_[t] = run;
  }
  pos_.engine.seed(Mix(seed_ ^ 0x7461736bull));  // "task"
  pos_.cursor.assign(T, 0);
  pos_.epoch.assign(T, 0);
  pos_.task_plans.assign(T, 0);
  perm_.assign(T, {});
  perm_epoch_.assign(T, -1);
}

std::vector<int64_t> BatchSampler::Permutation(int task, int64_t epoch) const {
  const int64_t n = sizes_.at(static_cast<size_t>(task));
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  std::mt19937_64 eng(Mix(Mix(seed_) ^ Mix(static_cast<uint64_t>(task) + 1) ^
                          Mix(static_cast<uint64_t>(epoch) * 0x100000001b3ull + 7)));
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    const auto j = static_cast<int64_t>(UniformBelow(eng, static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

int BatchSampler::ChooseTask() {
  const double u = Uniform01(pos_.engine);
  int last_nonzero = 0;
  for (size_t t = 0; t < cumulative_.size(); ++t) {
    if (weights_[t] <= 0) continue;
    last_nonzero = static_cast<int>(t);
    if (u < cumulative_[t]) return static_cast<int>(t);
  }
  return last_nonzero;  // u within rounding of 1
}

BatchPlan BatchSampler::Next() {
  BatchPlan plan;
  plan.task = ChooseTask();
  const auto t = static_cast<size_t>(plan.task);
  const int64_t n = sizes_[t];
  plan.rows.reserve(static_cast<size_t>(rows_per_plan()));
  for (int i = 0; i < rows_per_plan(); ++i) {
    if (pos_.cursor[t] >= n) {  // permutation used up: next epoch of this task
      pos_.cursor[t] = 0;
      ++pos_.epoch[t];
    }
    if (perm_epoch_[t] != pos_.epoch[t]) {
      perm_[t] = Permutation(plan.task, pos_.epoch[t]);
      perm_epoch_[t] = pos_.epoch[t];
    }
    plan.rows.push_back(perm_[t][static_cast<size_t>(pos_.cursor[t]++)]);
  }
  ++pos_.task_plans[t];
  ++pos_.steps;
  return plan;
}

nlohmann::json BatchSampler::StateAt(const Position& pos) const {
  std::ostringstream eng;
  eng << pos.engine;
  return {
      {"version", kStateVersion},     {"seed", seed_},       {"sizes", sizes_},      {"weights", weights_},
      {"micro_batch", micro_batch_},  {"dp_size", dp_size_}, {"cursor", pos.cursor}, {"epoch", pos.epoch},
      {"task_plans", pos.task_plans}, {"steps", pos.steps},  {"engine", eng.str()}};
}

void BatchSampler::LoadState(const nlohmann::json& state) {
  Position pos;
  uint64_t seed = 0;
  try {
    if (state.at("version").get<int>() != kStateVersion)
      Fail("sampler state version {} is not supported (expected {})", state.at("version").dump(),
           kStateVersion);
    const auto sizes = state.at("sizes").get<std::vector<int64_t>>();
    if (sizes != sizes_)
      throw Error(fmt::format("sampler state was saved for task sizes [{}] but the data has [{}]",
                              fmt::join(sizes, ", "), fmt::join(sizes_, ", ")),
                  "resume with the same shards the checkpoint was trained on");
    seed = state.at("seed").get<uint64_t>();
    pos.cursor = state.at("cursor").get<std::vector<int64_t>>();
    pos.epoch = state.at("epoch").get<std::vector<int64_t>>();
    pos.task_plans = state.at("task_plans").get<std::vector<int64_t>>();
    pos.steps = state.at("steps").get<int64_t>();
    std::istringstream eng(state.at("engine").get<std::string>());
    eng >> pos.engine;
    if (eng.fail()) throw Error("sampler state: cannot parse the engine state");
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("sampler state is malformed: ") + e.what(),
                "the checkpoint's sampler state is damaged");
  }
  const size_t T = sizes_.size();
  if (pos.cursor.size() != T || pos.epoch.size() != T || pos.task_plans.size() != T)
    Fail("sampler state has per-task vectors of the wrong length (expected {} tasks)", T);
  for (size_t t = 0; t < T; ++t)
    if (pos.cursor[t] < 0 || pos.cursor[t] > sizes_[t] || pos.epoch[t] < 0)
      Fail("sampler state: task {} has cursor {} / epoch {} outside its {} rows", t, pos.cursor[t],
           pos.epoch[t], sizes_[t]);
  seed_ = seed;
  pos_ = std::move(pos);
  perm_epoch_.assign(T, -1);  // permutations are regenerated from (seed, task, epoch)
  for (auto& p : perm_) p.clear();
}

}  // namespace more
