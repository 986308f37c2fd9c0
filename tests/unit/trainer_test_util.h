// Helpers of the Trainer tests (CPU and GPU): a run of N steps, and a run cut by a checkpoint
// and resumed next to the same run uninterrupted.
#pragma once
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "more/train/trainer.h"
#include "torch_test_util.h"

namespace more::testing {

struct StepRun {
  std::vector<double> losses;        // per step
  std::vector<torch::Tensor> grads;  // the flat adapter gradient after each step, on the CPU
  torch::Tensor params;              // the flat adapters after the last step, on the CPU
};

inline StepRun RunSteps(Trainer& t, int steps) {
  StepRun r;
  for (int i = 0; i < steps; ++i) {
    r.losses.push_back(t.Step().loss);
    r.grads.push_back(t.adapters().flat_grad().cpu().clone());
  }
  r.params = t.adapters().flat().cpu().clone();
  return r;
}

// A run of `config` trained `steps` steps and checkpointed (the Trainer is gone afterwards).
inline void TrainAndCheckpoint(const Config& config, int steps) {
  auto grid = ProcessGrid::Single();
  Trainer t(config, *grid);
  for (int i = 0; i < steps; ++i) t.Step();
  t.SaveCheckpoint();
}

// `base` (its out_dir replaced) trained n steps straight, and again n/2 steps, a checkpoint, one
// step lost as in a crash, then resumed in a new Trainer for the last n/2 steps.
struct ResumeRuns {
  StepRun straight, resumed;  // resumed.losses: the first n/2 then the resumed n/2
};

inline ResumeRuns StraightAndResumed(Config base, const std::string& name, int n) {
  auto grid = ProcessGrid::Single();
  base.train.steps = n;
  ResumeRuns r;
  {
    auto c = base;
    c.train.out_dir = ScratchDir(name + "_straight");
    Trainer t(c, *grid);
    r.straight = RunSteps(t, n);
  }
  auto c = base;
  c.train.out_dir = ScratchDir(name + "_resumed");
  {
    Trainer t(c, *grid);
    r.resumed = RunSteps(t, n / 2);
    t.SaveCheckpoint();
    t.Step();  // work after the checkpoint is lost with the "crash"
  }
  Trainer t(c, *grid);
  EXPECT_EQ(t.MaybeResume(), n / 2);
  const auto rest = RunSteps(t, n - n / 2);
  r.resumed.losses.insert(r.resumed.losses.end(), rest.losses.begin(), rest.losses.end());
  r.resumed.grads.insert(r.resumed.grads.end(), rest.grads.begin(), rest.grads.end());
  r.resumed.params = rest.params;
  return r;
}

}  // namespace more::testing
