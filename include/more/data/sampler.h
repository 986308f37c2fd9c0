// Multi-task sampling: which task each micro-batch comes from, and which rows.
//
// Task weights (DESIGN.md "Losses", paper Eq. 7), for task sizes |D_t| (empty tasks get 0):
//   paper:        phi_t = exp(|D_t| / sum_s |D_s|), normalised. Note: as written, Eq. 7 GROWS
//                 with the task size although the paper calls it "inversely proportional";
//                 we implement the formula as written (and it is close to uniform: the
//                 exponent lies in [0, 1], so weights differ by at most a factor e).
//   uniform:      1 / (number of non-empty tasks)
//   proportional: |D_t| / sum_s |D_s|
//   temperature:  |D_t|^(1/T), normalised (T = 1: proportional; T -> inf: uniform)
//
// BatchSampler turns weights into a deterministic stream of single-task plans. Each plan holds
// micro_batch * dp_size rows of one task; data-parallel rank r takes rows
// [r * micro_batch, (r + 1) * micro_batch). Every replica built with the same arguments yields
// the same plans, which keeps data-parallel ranks in lock-step (same task per micro-batch, same
// number of steps). Per task, rows follow a permutation of [0, |D_t|) regenerated from
// (seed, task, epoch); when it is used up the task starts a new epoch with a new permutation
// (cyclically, so a task smaller than a plan still works). Randomness: std::mt19937_64 raw
// output only (no std:: distributions, whose algorithms differ between standard libraries).
// State()/LoadState() checkpoint the position (cursors, epochs, engine state, counters);
// after LoadState the stream continues exactly as if never interrupted.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace more {

enum class SamplingMode { kPaper, kUniform, kProportional, kTemperature };
// "paper" | "uniform" | "proportional" | "temperature"
SamplingMode ParseSamplingMode(const std::string& name);
std::string SamplingModeName(SamplingMode mode);

// Normalised task weights (sum 1). Throws if every task is empty, a size is negative or
// temperature <= 0 (temperature mode only).
std::vector<double> TaskWeights(SamplingMode mode, const std::vector<int64_t>& sizes,
                                double temperature = 1.0);

struct BatchPlan {
  int task = -1;
  std::vector<int64_t> rows;  // [micro_batch * dp_size] global row ids of `task`
};

class BatchSampler {
 public:
  // The part of the state that changes with every plan.
  struct Position {
    std::mt19937_64 engine;           // task choice
    std::vector<int64_t> cursor;      // [T] next index into the task's permutation
    std::vector<int64_t> epoch;       // [T] completed passes over the task
    std::vector<int64_t> task_plans;  // [T] plans drawn per task
    int64_t steps = 0;                // plans drawn in total
  };

  // sizes, weights: [T]. A task with weight > 0 must have size > 0.
  BatchSampler(std::vector<int64_t> sizes, std::vector<double> weights, int micro_batch, int dp_size,
               uint64_t seed);

  BatchPlan Next();

  nlohmann::json State() const { return StateAt(pos_); }
  // The state JSON of any position of this sampler (used by the loader for an earlier one).
  nlohmann::json StateAt(const Position& pos) const;
  // Restores a State(). Task sizes must match; micro_batch / dp_size may differ (the
  // cursors count rows, so resuming on another data-parallel layout is fine).
  void LoadState(const nlohmann::json& state);

  const Position& position() const { return pos_; }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  const std::vector<double>& weights() const { return weights_; }
  int micro_batch() const { return micro_batch_; }
  int dp_size() const { return dp_size_; }
  int rows_per_plan() const { return micro_batch_ * dp_size_; }
  uint64_t seed() const { return seed_; }

  // The row order of `task` in epoch `epoch` (a pure function of seed, task and epoch).
  std::vector<int64_t> Permutation(int task, int64_t epoch) const;

 private:
  int ChooseTask();

  std::vector<int64_t> sizes_;
  std::vector<double> weights_;     // normalised
  std::vector<double> cumulative_;  // [T] running sums of weights_
  int micro_batch_ = 1;
  int dp_size_ = 1;
  uint64_t seed_ = 0;
  Position pos_;
  std::vector<std::vector<int64_t>> perm_;  // [T] permutation of the current epoch (lazy)
  std::vector<int64_t> perm_epoch_;         // [T] epoch perm_[t] belongs to (-1: none)
};

}  // namespace more
