// The GPU path on one GPU (tp = pp = dp = 1): skipped where no CUDA device is visible (CPU
// LibTorch builds, CI), run by launch/gpu_check.sh on a GPU machine (docs/gpu.md).
//   - fp32 base on the GPU matches the CPU run (float tolerance);
//   - the default GPU configuration (bf16 base, fp32 adapters) tracks the CPU fp32 run within
//     bf16 tolerance, keeps adapters, gradients and optimizer state fp32 on the GPU;
//   - activation recomputation on the GPU (CUDA generator replayed) gives the same losses;
//   - a checkpoint written from the GPU resumes the same loss curve.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "more/adapter/more_adapter.h"
#include "more/train/trainer.h"
#include "torch_test_util.h"
#include "trainer_test_util.h"

namespace more {
namespace {

using testing::ScratchDir;
using testing::TinyConfig;
using testing::RunSteps;
using testing::StepRun;
using testing::StraightAndResumed;

#define MORE_NEED_GPU() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (CPU LibTorch or no GPU visible)"

StepRun Train(const std::string& name, const std::string& device, const std::string& dtype, int64_t recompute = 0,
          double dropout = 0.0, int steps = 3) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir(name));
  c.model.device = device;
  c.model.dtype = dtype;
  c.adapter.dropout = dropout;
  c.train.steps = steps;
  c.train.recompute_layers = recompute;
  Trainer t(c, *grid);
  EXPECT_EQ(t.adapters().flat().device().type(), device == "cuda" ? torch::kCUDA : torch::kCPU);
  EXPECT_EQ(t.adapters().flat().scalar_type(), torch::kFloat32);
  EXPECT_EQ(t.optimizer().m().scalar_type(), torch::kFloat32);
  auto r = RunSteps(t, steps);
  // the gates' expert choices: one device-to-host read at start and one per optimizer step
  EXPECT_EQ(t.adapters().selection_host_reads(), 1 + steps) << device;
  return r;
}

// THE expert selection (fp64 logits of fp32 gates) picks the same experts on the GPU as on the
// CPU, and the cached choice on the GPU is the independent CPU computation's.
TEST(Cuda, ExpertSelectionOnTheGpuEqualsTheCpus) {
  MORE_NEED_GPU();
  torch::manual_seed(17);
  const auto gpu = torch::Device(torch::kCUDA, 0);
  AdapterOptions o;
  o.rank = 8;
  o.num_tasks = 6;
  MoreAdapter a("layers.0.q", 64, 64, o, ParallelKind::kColumn, 0, 1);
  for (auto& [n, t] : a.Params()) *t = t->to(gpu);
  for (int state = 0; state < 100; ++state) {
    {
      torch::NoGradGuard ng;
      a.gate_w.normal_();
      a.gate_b.normal_(0.0, 0.1);
      a.E.normal_();
    }
    const auto on_gpu = MoreAdapter::ChooseExperts(a.gate_w, a.gate_b, a.E).cpu();
    const auto on_cpu = MoreAdapter::ChooseExperts(a.gate_w.cpu(), a.gate_b.cpu(), a.E.cpu());
    ASSERT_TRUE(torch::equal(on_gpu, on_cpu)) << "state " << state;
    for (int t = 0; t < 6; ++t) ASSERT_EQ(a.ChosenRank(t), on_cpu[t].item<int64_t>() + 1) << "state " << state;
  }
}

TEST(Cuda, Fp32BaseOnTheGpuMatchesTheCpu) {
  MORE_NEED_GPU();
  const auto cpu = Train("cuda_ref_cpu", "cpu", "float32");
  const auto gpu = Train("cuda_f32", "cuda", "float32");
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-4 * std::abs(cpu.losses[i])) << "step " << i + 1;
    EXPECT_TRUE(torch::allclose(gpu.grads[i], cpu.grads[i], 1e-3, 1e-6)) << "step " << i + 1;
  }
}

TEST(Cuda, Bf16BaseTracksTheCpuFp32RunWithinBf16Tolerance) {
  MORE_NEED_GPU();
  const auto cpu = Train("cuda_ref_cpu32", "cpu", "float32");
  const auto gpu = Train("cuda_bf16", "cuda", "auto");  // auto = bf16 base on the GPU
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 0.02 * std::abs(cpu.losses[i])) << "step " << i + 1;
    EXPECT_GT(torch::cosine_similarity(gpu.grads[i], cpu.grads[i], 0).item<double>(), 0.98) << "step " << i + 1;
  }
}

TEST(Cuda, RecomputationOnTheGpuGivesTheSameLosses) {
  MORE_NEED_GPU();
  // dropout on: the recomputation must replay the CUDA generator's masks
  const auto plain = Train("cuda_plain", "cuda", "float32", 0, 0.1);
  const auto re = Train("cuda_recompute", "cuda", "float32", 1000, 0.1);
  for (size_t i = 0; i < re.losses.size(); ++i) {
    EXPECT_NEAR(re.losses[i], plain.losses[i], 1e-4 * std::abs(plain.losses[i])) << "step " << i + 1;
    EXPECT_TRUE(torch::allclose(re.grads[i], plain.grads[i], 1e-3, 1e-6)) << "step " << i + 1;
  }
}

TEST(Cuda, CheckpointFromTheGpuResumesTheSameCurve) {
  MORE_NEED_GPU();
  auto c = TinyConfig("");
  c.model.device = "cuda";
  const auto r = StraightAndResumed(c, "cuda_resume", 4);
  // GPU kernels need not be bitwise reproducible run to run: the same curve within 1e-6
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(r.straight.losses[i], r.resumed.losses[i], 1e-6 * std::abs(r.straight.losses[i])) << "step " << i + 1;
  EXPECT_TRUE(torch::allclose(r.straight.params, r.resumed.params, 1e-5, 1e-8));
}

}  // namespace
}  // namespace more
