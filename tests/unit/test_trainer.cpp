// Trainer on one rank: training lowers the loss, N steps straight == N/2 + checkpoint + resume +
// N/2 (bitwise on CPU, losses and adapters), checkpoint layout/pruning/integrity, and the bad
// inputs that must fail with a clear message.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <ATen/Context.h>

#include "more/ckpt/checkpoint.h"
#include "more/ckpt/export.h"
#include "more/core/cpu_features.h"
#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/core/safetensors.h"
#include "more/train/trainer.h"
#include "torch_test_util.h"
#include "trainer_test_util.h"

namespace fs = std::filesystem;

namespace more {
namespace {

using testing::ScratchDir;
using testing::TestData;
using testing::TinyConfig;
using testing::ExpectError;
using testing::RunSteps;
using testing::StraightAndResumed;
using testing::TrainAndCheckpoint;


TEST(Trainer, ResumeIsBitwiseIdenticalToAnUninterruptedRun) {
  const int n = 6;
  const auto r = StraightAndResumed(TinyConfig(""), "resume", n);
  const auto &straight = r.straight.losses, &resumed = r.resumed.losses;
  ASSERT_EQ(straight.size(), resumed.size());
  for (int i = 0; i < n; ++i) EXPECT_EQ(straight[i], resumed[i]) << "step " << i + 1;
  EXPECT_TRUE(torch::equal(r.straight.params, r.resumed.params));
  EXPECT_GT(r.straight.params.abs().sum().item<double>(), 0.0);
}

TEST(Trainer, TrainingLowersTheLossOnRepeatedData) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir("lower"));
  c.train.steps = 30;
  c.train.lr = 1e-2;
  c.data.tasks = "sentiment";
  c.adapter.dropout = 0.0;
  Trainer t(c, *grid);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    auto r = t.Step();
    if (i < 5) first += r.gen / 5;
    if (i >= 25) last += r.gen / 5;
    for (int task : r.tasks) EXPECT_EQ(t.task_names()[task], "sentiment");
  }
  EXPECT_LT(last, first * 0.7) << "gen loss " << first << " -> " << last;
}

TEST(Trainer, GateAndTaskEmbeddingsReceiveGradients) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir("gategrad"));
  Trainer t(c, *grid);
  auto before = t.adapters().NamedTensors();
  std::map<std::string, torch::Tensor> copy;
  for (auto& [k, v] : before) copy[k] = v.clone();
  t.Step();
  t.Step();  // B is zero at init: from step 2 on the STE path carries gradient to the gate
  auto after = t.adapters().NamedTensors();
  int gate_changed = 0, e_changed = 0;
  for (auto& [k, v] : after) {
    const bool changed = !torch::equal(v, copy[k]);
    if (k.find("gate_w") != std::string::npos) gate_changed += changed;
    if (k.size() > 2 && k.substr(k.size() - 2) == ".E") e_changed += changed;
  }
  EXPECT_GT(gate_changed, 0);
  EXPECT_GT(e_changed, 0);
}

// Activation recomputation (train.recompute_layers) reruns layers in the backward: the same
// losses, adapter gradients and updates as keeping every activation, with dropout on (the masks
// are replayed) and the contrastive loss on (its terms flow through the recomputed layers).
TEST(Trainer, RecomputationGivesTheSameLossesAndGradients) {
  auto grid = ProcessGrid::Single();
  auto run = [&](int64_t recompute, const std::string& name) {
    auto c = TinyConfig(ScratchDir(name));
    c.train.steps = 4;
    c.train.recompute_layers = recompute;
    c.adapter.dropout = 0.1;
    Trainer t(c, *grid);
    return RunSteps(t, 4);
  };
  const auto [l0, g0, p0] = run(0, "recompute_off");
  for (int64_t r : {1, 1000}) {  // the first layer only; every layer
    const auto [l1, g1, p1] = run(r, "recompute_" + std::to_string(r));
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(l0[i], l1[i], 1e-5 * std::abs(l0[i])) << "recompute " << r << " step " << i + 1;
      EXPECT_TRUE(torch::allclose(g0[i], g1[i], 1e-4, 1e-7)) << "recompute " << r << " step " << i + 1 << " grad diff "
                                                              << (g0[i] - g1[i]).abs().max().item<double>();
    }
    EXPECT_TRUE(torch::allclose(p0, p1, 1e-4, 1e-7)) << "recompute " << r;
    EXPECT_GT(g1.back().abs().sum().item<double>(), 0.0);
  }
}

// model.dtype=bfloat16: bf16 base weights and activations, fp32 adapters, gradients and optimizer
// state (the GPU configuration, checked here on the CPU): losses and gradients follow the fp32
// run within bf16 precision. The gradient check uses plain LoRA: MoRE's hard expert choice turns a
// bf16 rounding difference in a gate logit into another set of ranks (seen at step 3 once
// attention became a fused kernel: gradient cosine 0.96 with MoRE, > 0.99 with LoRA), which is a
// discrete change, not a precision loss; MoRE's losses are checked for all three steps.
TEST(Trainer, Bf16BaseWithFp32AdaptersTracksTheFp32Run) {
  auto grid = ProcessGrid::Single();
  for (const std::string method : {"lora", "more"}) {
  auto run = [&](const std::string& dtype) {
    auto c = TinyConfig(ScratchDir("dtype_" + method + dtype));
    c.model.dtype = dtype;
    c.adapter.method = method;
    c.adapter.dropout = 0.0;
    c.train.steps = 3;
    Trainer t(c, *grid);
    EXPECT_EQ(t.stage().dtype(), dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32);
    EXPECT_EQ(t.adapters().flat().scalar_type(), torch::kFloat32);
    EXPECT_EQ(t.adapters().flat_grad().scalar_type(), torch::kFloat32);
    EXPECT_EQ(t.optimizer().m().scalar_type(), torch::kFloat32);
    return RunSteps(t, 3);
  };
  const auto [l32, g32, p32] = run("float32");
  const auto [l16, g16, p16] = run("bfloat16");
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(l16[i], l32[i], 0.02 * std::abs(l32[i])) << method << " step " << i + 1;
    const double cos = torch::cosine_similarity(g16[i], g32[i], 0).item<double>();
    if (method == "lora" || i == 0) EXPECT_GT(cos, 0.98) << method << " step " << i + 1;
  }
  EXPECT_NE(l16[0], l32[0]) << method;  // it really ran in bf16
  }
}

// adapter.dtype = bfloat16 (next to a bf16 base) tracks the fp32-adapter run on the same bf16 base:
// losses within 0.5% over 5 steps, gradients in the same direction, while the parameters,
// gradients and optimizer state stay fp32 (fp32 master weights).
TEST(Trainer, Bf16AdaptersTrackTheFp32AdapterRun) {
  auto grid = ProcessGrid::Single();
  for (const std::string method : {"lora", "more"}) {
    auto run = [&](const std::string& adapter_dtype) {
      auto c = TinyConfig(ScratchDir("adtype_" + method + adapter_dtype));
      c.model.dtype = "bfloat16";
      c.adapter.dtype = adapter_dtype;
      c.adapter.method = method;
      c.adapter.dropout = 0.0;
      c.train.steps = 5;
      Trainer t(c, *grid);
      EXPECT_EQ(t.stage().Linear(0, "q").compute_dtype(),
                adapter_dtype == "bfloat16" ? torch::kBFloat16 : torch::ScalarType::Undefined);
      auto r = RunSteps(t, 5);
      EXPECT_EQ(t.adapters().flat().scalar_type(), torch::kFloat32);
      EXPECT_EQ(t.adapters().flat_grad().scalar_type(), torch::kFloat32);
      EXPECT_EQ(t.optimizer().m().scalar_type(), torch::kFloat32);
      EXPECT_EQ(t.optimizer().v().scalar_type(), torch::kFloat32);
      return r;
    };
    const auto [l32, g32, p32] = run("float32");
    const auto [l16, g16, p16] = run("bfloat16");
    for (int i = 0; i < 5; ++i) {
      EXPECT_NEAR(l16[i], l32[i], 5e-3 * std::abs(l32[i])) << method << " step " << i + 1;
      const double cos = torch::cosine_similarity(g16[i], g32[i], 0).item<double>();
      if (method == "lora" || i == 0) EXPECT_GT(cos, 0.99) << method << " step " << i + 1;
    }
    EXPECT_FALSE(torch::equal(g16[0], g32[0])) << method;  // it really computed in bf16
    EXPECT_GT((p16 - p32).abs().max().item<double>(), 0.0) << method;
  }
}

// The masters are fp32: an AdamW step of lr 1e-6 moves every parameter with a non-zero gradient
// by lr * g / (|g| + eps) (the first step of AdamW, float64 reference), an update that bf16
// parameters (8 significant bits) would round away for almost all of them.
TEST(Trainer, Bf16AdaptersKeepFp32MasterWeights) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir("adtype_master"));
  c.model.dtype = "bfloat16";
  c.adapter.dtype = "bfloat16";
  c.adapter.dropout = 0.0;
  c.train.lr = 1e-6;
  c.train.warmup = 0;
  c.train.grad_clip = 0.0;
  Trainer t(c, *grid);
  const auto p0 = t.adapters().flat().detach().to(torch::kFloat64).clone();
  t.Step();
  const auto g = t.adapters().flat_grad().to(torch::kFloat64);
  const auto p1 = t.adapters().flat().detach().to(torch::kFloat64);
  const auto moved = g.ne(0);
  ASSERT_GT(moved.sum().item<int64_t>(), 1000);
  const auto expected = p0 - 1e-6 * g / (g.abs() + c.train.eps);
  // fp32 rounding of p1 (|p| < 1: ulp <= 2^-24 * 2) is far below the 1e-6 step
  EXPECT_LT((p1 - expected).abs().max().item<double>(), 2e-7);
  EXPECT_GT(((p1 - p0).abs() > 5e-7).logical_and(moved).sum().item<int64_t>(),
            moved.sum().item<int64_t>() * 99 / 100);
  // the same update applied to bf16 masters: lost for most of the moved parameters
  const auto p0b = p0.to(torch::kBFloat16), p1b = expected.to(torch::kBFloat16);
  const auto lost = p0b.eq(p1b).logical_and(moved).logical_and(p0.abs() > 1e-3);
  EXPECT_GT(lost.sum().item<int64_t>(), moved.logical_and(p0.abs() > 1e-3).sum().item<int64_t>() * 9 / 10);
}

// model.attention = measure: measured at start-up (both implementations timed where the build
// has both), the choice recorded in the checkpoint, and a resumed run uses the recorded choice
// without measuring: a run started with fused (composed) and resumed with auto continues with
// fused (composed), bitwise as its uninterrupted run. model.attention = auto (the default) is the
// fixed rule: fused where the build has it, no measurement.
TEST(Trainer, AttentionIsChosenByMeasurementAndKeptOnResume) {
  auto grid = ProcessGrid::Single();
  {
    auto c = TinyConfig(ScratchDir("att_fixed"));
    Trainer t(c, *grid);
    EXPECT_EQ(t.stage().attention(), FusedAttentionAvailable() ? AttentionImpl::kFused : AttentionImpl::kComposed);
    EXPECT_TRUE(t.attention_choice().seconds.empty()) << "auto does not measure";
  }
  {
    auto c = TinyConfig(ScratchDir("att_auto"));
    c.model.attention = "measure";
    Trainer t(c, *grid);
    const auto& ch = t.attention_choice();
    EXPECT_EQ(t.stage().attention(), ch.impl);
    ASSERT_NE(ch.impl, AttentionImpl::kAuto);
    if (FusedAttentionAvailable()) {
      ASSERT_EQ(ch.seconds.size(), 2u);
      for (const auto& [impl, s] : ch.seconds) EXPECT_GT(s, 0.0) << AttentionName(impl);
    } else {
      EXPECT_EQ(ch.impl, AttentionImpl::kComposed);
      EXPECT_TRUE(ch.seconds.empty());
    }
    t.Step();
    const auto dir = t.SaveCheckpoint();
    EXPECT_EQ(CheckpointManager::LoadState(dir).at("attention"), AttentionName(ch.impl));
  }
  std::vector<std::string> impls = {"composed"};
  if (FusedAttentionAvailable()) impls.push_back("fused");
  std::map<std::string, std::vector<double>> straight_losses;
  for (const auto& impl : impls) {
    auto c = TinyConfig("");
    c.model.attention = impl;
    c.train.steps = 4;
    std::vector<double> straight, resumed;
    {
      c.train.out_dir = ScratchDir("att_straight_" + impl);
      Trainer t(c, *grid);
      straight = RunSteps(t, 4).losses;
    }
    c.train.out_dir = ScratchDir("att_resumed_" + impl);
    {
      Trainer t(c, *grid);
      resumed = RunSteps(t, 2).losses;
      t.SaveCheckpoint();
    }
    c.model.attention = "auto";
    Trainer t(c, *grid);
    EXPECT_EQ(t.stage().attention(), impl == "fused" ? AttentionImpl::kFused : AttentionImpl::kComposed);
    EXPECT_TRUE(t.attention_choice().seconds.empty()) << "a resumed run does not measure";
    EXPECT_EQ(t.MaybeResume(), 2);
    for (double l : RunSteps(t, 2).losses) resumed.push_back(l);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(straight[i], resumed[i]) << impl << " step " << i + 1;
    straight_losses[impl] = straight;
  }
  // the test can tell the two apart: they differ in the last bits
  if (impls.size() == 2) EXPECT_NE(straight_losses["fused"], straight_losses["composed"]);
  // a recorded choice this build cannot run, or one that is not an implementation, is refused
  const AttentionShape shape{2, 2, 8, 4};
  const auto& world = grid->world();
  if (!FusedAttentionAvailable())
    ExpectError([&] { ResolveAttention("auto", "fused", "ckpt/step-2", shape, torch::kFloat32, torch::kCPU, world); },
                {"resuming 'ckpt/step-2'", "computed attention with fused", "LibTorch >= 2.1"});
  else
    EXPECT_EQ(ResolveAttention("auto", "fused", "ckpt/step-2", shape, torch::kFloat32, torch::kCPU, world).impl,
              AttentionImpl::kFused);
  // measure keeps a recorded choice as auto does
  EXPECT_EQ(ResolveAttention("measure", "composed", "ckpt/step-2", shape, torch::kFloat32, torch::kCPU, world).impl,
            AttentionImpl::kComposed);
  ExpectError([&] { ResolveAttention("auto", "flash", "ckpt/step-2", shape, torch::kFloat32, torch::kCPU, world); },
              {"ckpt/step-2: attention", "'flash'"});
}

// The gates' expert choices cost one device-to-host read per optimizer step, however many
// modules, micro-batches and recomputed layers read them (on a GPU each read is a sync), and the
// cached choices are the ones an independent recomputation from the current gates gives.
TEST(Trainer, OneHostReadOfExpertChoicesPerStep) {
  auto grid = ProcessGrid::Single();
  for (int64_t recompute : {0, 1000}) {
    auto c = TinyConfig(ScratchDir("selection_reads_" + std::to_string(recompute)));
    c.train.global_batch = 12;  // 3 micro-batches of 4
    c.train.recompute_layers = recompute;
    Trainer t(c, *grid);
    ASSERT_GT(t.adapters().size(), 10u);
    EXPECT_EQ(t.adapters().selection_host_reads(), 1) << "the constructor's refresh";
    for (int s = 1; s <= 4; ++s) {
      t.Step();
      EXPECT_EQ(t.adapters().selection_host_reads(), 1 + s) << "step " << s << " recompute " << recompute;
      for (const auto& a : t.adapters().adapters()) {
        ASSERT_TRUE(a->SelectionCacheValid()) << a->name();
        const auto k = MoreAdapter::ChooseExperts(a->gate_w.detach().clone(), a->gate_b.detach().clone(),
                                                  a->E.detach().clone());  // fresh tensors: no cache
        for (int task = 0; task < static_cast<int>(t.task_names().size()); ++task)
          ASSERT_EQ(a->ChosenRank(task), k[task].item<int64_t>() + 1) << a->name() << " task " << task;
      }
    }
    t.adapters().TaskRankMap(static_cast<int>(t.task_names().size()));  // what logging and checkpoints read
    EXPECT_EQ(t.adapters().selection_host_reads(), 5) << "the task->rank map is read from the cache";
  }
}

// model.dtype = auto on the CPU: bf16 where the CPU has native bf16 matmuls and LibTorch has
// oneDNN, fp32 otherwise; MORE_CPU_BF16 forces the CPU's answer; explicit dtypes are kept.
TEST(Trainer, AutoDtypeIsBf16OnACpuWithNativeBf16) {
  const char* saved = std::getenv("MORE_CPU_BF16");
  const std::string saved_value = saved ? saved : "";
  ::unsetenv("MORE_CPU_BF16");
  const bool native = DetectCpuFeatures().NativeBf16() && at::hasMKLDNN();
  std::printf("this machine: %s; oneDNN %s\n", ResolveBaseDtype("auto", "cpu").reason.c_str(),
              at::hasMKLDNN() ? "yes" : "no");
  EXPECT_EQ(BaseDtype("auto", "cpu"), native ? torch::kBFloat16 : torch::kFloat32);
  EXPECT_NE(ResolveBaseDtype("auto", "cpu").reason.find(native ? "bf16: CPU has" : "fp32"), std::string::npos);
  EXPECT_EQ(BaseDtype("auto", "cuda"), torch::kBFloat16);
  ::setenv("MORE_CPU_BF16", "1", 1);
  EXPECT_EQ(BaseDtype("auto", "cpu"), torch::kBFloat16);
  EXPECT_EQ(BaseDtype("float32", "cpu"), torch::kFloat32) << "an explicit dtype wins over the override";
  auto grid = ProcessGrid::Single();
  auto run = [&](const std::string& name) {
    auto c = TinyConfig(ScratchDir(name));
    c.model.dtype = "auto";
    Trainer t(c, *grid);
    return t.stage().dtype();
  };
  EXPECT_EQ(run("auto_forced_on"), torch::kBFloat16);
  ::setenv("MORE_CPU_BF16", "0", 1);
  EXPECT_EQ(BaseDtype("auto", "cpu"), torch::kFloat32);
  EXPECT_EQ(BaseDtype("bfloat16", "cpu"), torch::kBFloat16);
  EXPECT_EQ(BaseDtype("auto", "cuda"), torch::kBFloat16) << "the override is about the CPU";
  EXPECT_EQ(run("auto_forced_off"), torch::kFloat32);
  ::setenv("MORE_CPU_BF16", "yes", 1);
  EXPECT_THROW(BaseDtype("auto", "cpu"), Error);
  if (saved) ::setenv("MORE_CPU_BF16", saved_value.c_str(), 1);
  else ::unsetenv("MORE_CPU_BF16");
}

TEST(Trainer, LoraBaselineModeOfTheSameBinary) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir("lora"));
  c.adapter.method = "lora";
  c.adapter.rank = 8;
  Trainer t(c, *grid);
  for (const auto& e : t.adapters().entries()) {
    const auto suffix = e.name.substr(e.name.rfind('.') + 1);
    EXPECT_TRUE(suffix == "A" || suffix == "B") << e.name;  // no gate, no task embeddings
  }
  auto r1 = t.Step();
  auto r2 = t.Step();
  EXPECT_TRUE(std::isfinite(r2.loss));
  EXPECT_EQ(r1.cl, 0.0);  // no contrastive loss without task embeddings
  const auto map = t.adapters().TaskRankMap(5);  // keep it alive: items() refers to it
  for (auto& [module, ranks] : map.items())
    for (auto& r : ranks) EXPECT_EQ(r.get<int>(), 8) << module;
}

TEST(Trainer, CheckpointsAreAtomicPrunedAndChecked) {
  auto grid = ProcessGrid::Single();
  const auto dir = ScratchDir("ckpts");
  auto c = TinyConfig(dir);
  c.ckpt.keep_last = 2;
  Trainer t(c, *grid);
  for (int i = 0; i < 3; ++i) {
    t.Step();
    t.SaveCheckpoint();
  }
  const auto root = dir + "/checkpoints";
  EXPECT_FALSE(fs::exists(root + "/step-00000001"));
  EXPECT_TRUE(fs::exists(root + "/step-00000002/state.json"));
  EXPECT_TRUE(fs::exists(root + "/step-00000003/adapters.stage-0.safetensors"));
  EXPECT_EQ(ReadFileToString(root + "/latest"), "step-00000003\n");
  auto state = nlohmann::json::parse(ReadFileToString(root + "/step-00000003/state.json"));
  EXPECT_EQ(state["step"], 3);
  EXPECT_TRUE(state["task_ranks"].contains("layers.0.q"));
  EXPECT_EQ(state["task_ranks"]["layers.1.down"].size(), t.task_names().size());
  // flip one byte in a tensor: the checksum names the tensor
  const auto f = root + "/step-00000003/adapters.stage-0.safetensors";
  {
    std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(io.tellg());
    io.seekp(size - 3);
    io.put('\x7f');
  }
  ExpectError([&] { CheckpointManager::Load(root + "/step-00000003"); }, {"checksum mismatch"});
  // a half-written checkpoint directory is never "latest"
  fs::create_directories(root + "/.tmp-step-00000004");
  EXPECT_EQ(*CheckpointManager(root, 2).Latest(), root + "/step-00000003");
}

// state.json is checksummed, and its step must match the directory's name (issue 16).
TEST(Trainer, StateJsonIsCheckedAgainstItsChecksumAndDirectory) {
  const auto dir = ScratchDir("statejson");
  TrainAndCheckpoint(TinyConfig(dir), 2);
  const auto root = dir + "/checkpoints";
  const auto ck = root + "/step-00000002";
  const auto good = ReadFileToString(ck + "/state.json");
  EXPECT_NO_THROW(CheckpointManager::Load(ck));
  // the stored checksum is the CRC-32 of the compact JSON without it
  auto parsed = nlohmann::json::parse(good);
  const uint32_t stored = parsed.at("state_crc32").get<uint32_t>();
  parsed.erase("state_crc32");
  const std::string text = parsed.dump();
  EXPECT_EQ(stored, Crc32(text.data(), text.size()));
  auto edit = [&](const std::string& from, const std::string& to) {
    auto s = good;
    const auto at = s.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
    WriteFileAtomic(ck + "/state.json", s);
  };
  edit("\"step\": 2", "\"step\": 3");  // would resume one step late
  ExpectError([&] { CheckpointManager::Load(ck); }, {"state.json", "checksum mismatch"});
  edit("\"optimizer_t\": 2", "\"optimizer_t\": 7");
  ExpectError([&] { CheckpointManager::Load(ck); }, {"state.json", "checksum mismatch"});
  // a consistent checksum but a step that is not the directory's
  auto moved = nlohmann::json::parse(good);
  moved.erase("state_crc32");
  moved["step"] = 3;
  moved["state_crc32"] = CheckpointManager::StateChecksum(moved);
  WriteFileAtomic(ck + "/state.json", moved.dump(1));
  ExpectError([&] { CheckpointManager::Load(ck); }, {"says step 3", "named for step 2"});
  // `latest` naming something that is not a checkpoint directory name
  WriteFileAtomic(ck + "/state.json", good);
  fs::create_directories(root + "/elsewhere");
  WriteFileAtomic(root + "/latest", "elsewhere\n");
  ExpectError([&] { CheckpointManager(root, 3).Latest(); }, {"latest", "not a checkpoint name"});
}

TEST(Trainer, CheckpointWithAnotherAdapterShapeIsRejected) {
  auto grid = ProcessGrid::Single();
  const auto dir = ScratchDir("othermodel");
  TrainAndCheckpoint(TinyConfig(dir), 1);
  auto c = TinyConfig(dir);
  c.model.path = TestData("tiny_bf16_sharded");  // same shapes: fingerprint equal, weights differ
  c.adapter.rank = 6;                             // but another adapter shape
  Trainer t(c, *grid);
  ExpectError([&] { t.MaybeResume(); }, {"written for adapters", "\"rank\":4", "\"rank\":6"});
}

// Every guarded setting changed on resume is refused with a message naming it, unless
// ckpt.allow_changes lists it; settings outside the list (train.steps) may change.
TEST(Trainer, ResumeRefusesChangedSettingsUnlessAllowed) {
  auto grid = ProcessGrid::Single();
  const auto dir = ScratchDir("resume_guard");
  TrainAndCheckpoint(TinyConfig(dir), 1);
  const std::vector<std::pair<std::string, std::function<void(Config&)>>> changes = {
      {"adapter.scaling", [](Config& c) { c.adapter.scaling = "none"; }},
      {"adapter.selection", [](Config& c) { c.adapter.selection = "soft"; }},
      {"adapter.alpha", [](Config& c) { c.adapter.alpha = 8.0; }},
      {"adapter.lambda_cl", [](Config& c) { c.adapter.lambda_cl = 0.0; }},
      {"adapter.tau", [](Config& c) { c.adapter.tau = 0.5; }},
      {"adapter.task_emb_init", [](Config& c) { c.adapter.task_emb_init = "normal"; }},
      {"adapter.task_emb_std", [](Config& c) { c.adapter.task_emb_std = 0.1; }},
      {"adapter.dtype", [](Config& c) { c.adapter.dtype = "bfloat16"; c.model.dtype = "bfloat16"; }},
      {"data.sampling", [](Config& c) { c.data.sampling = "uniform"; }},
      {"data.temperature", [](Config& c) { c.data.temperature = 3.0; }},
      {"data.tasks", [](Config& c) { c.data.tasks = "sentiment,topic"; }},
  };
  std::vector<std::string> covered;
  for (const auto& [key, set] : changes) covered.push_back(key);
  EXPECT_EQ(covered, ResumeGuardedKeys());  // a new guarded key needs a case here
  for (const auto& [key, set] : changes) {
    auto c = TinyConfig(dir);
    set(c);
    {
      Trainer t(c, *grid);
      ExpectError([&] { t.MaybeResume(); }, {"was trained with " + key, "--ckpt.allow_changes=" + key});
    }
    c.ckpt.allow_changes = key;
    Trainer t(c, *grid);
    EXPECT_EQ(t.MaybeResume(), 1) << key;
  }
  {
    auto c = TinyConfig(dir);
    c.adapter.tau = 0.5;
    c.data.sampling = "uniform";
    c.ckpt.allow_changes = "all";
    Trainer t(c, *grid);
    EXPECT_EQ(t.MaybeResume(), 1);
  }
  {
    auto c = TinyConfig(dir);
    c.train.steps = 20;
    Trainer t(c, *grid);
    EXPECT_EQ(t.MaybeResume(), 1);
  }
  auto c = TinyConfig(dir);
  c.ckpt.allow_changes = "adapter.rank";  // a shape: never allowed to change
  ExpectError([&] { c.Validate(); }, {"ckpt.allow_changes", "adapter.rank"});
}

// Few-shot transfer: a run whose shards hold a task the checkpoint lacks starts it from the
// named source task's embeddings (and everything else from the checkpoint).
TEST(Trainer, TransferInitialisesNewTasksFromTheirSources) {
  auto grid = ProcessGrid::Single();
  const auto src_dir = ScratchDir("transfer_src");
  std::map<std::string, torch::Tensor> src;
  nlohmann::json src_ranks;
  {
    auto c = TinyConfig(src_dir);
    Trainer t(c, *grid);
    RunSteps(t, 2);
    t.SaveCheckpoint();
    for (auto& [k, v] : t.adapters().NamedTensors()) src[k] = v.clone();
    src_ranks = t.adapters().TaskRankMap(static_cast<int>(t.task_names().size()));
  }
  // rename the checkpoint's task 0 (sentiment): for this run it is then a new task
  const auto state_path = src_dir + "/checkpoints/step-00000002/state.json";
  auto st = nlohmann::json::parse(ReadFileToString(state_path));
  auto& rec = st["adapter_record"];
  ASSERT_EQ(rec["tasks"][0], "sentiment");
  rec["tasks"][0] = "old_sentiment";
  rec["trained_tasks"] = rec["tasks"];
  st.erase(kStateChecksumKey);  // re-sealed: this edit stands for a checkpoint written that way
  st[kStateChecksumKey] = CheckpointManager::StateChecksum(st);
  WriteFileAtomic(state_path, st.dump());

  auto c = TinyConfig(ScratchDir("transfer_dst"));
  c.transfer.from = src_dir + "/checkpoints";
  {
    Trainer t(c, *grid);  // no source named for sentiment
    ExpectError([&] { t.MaybeResume(); }, {"task 'sentiment'", "transfer.tasks names no source", "--transfer.tasks=sentiment="});
  }
  {
    auto bad = c;
    bad.transfer.tasks = "sentiment=nosuch";
    Trainer t(bad, *grid);
    ExpectError([&] { t.MaybeResume(); }, {"source task 'nosuch'", "old_sentiment"});
  }
  c.transfer.tasks = "sentiment=topic";  // the new task starts as topic
  Trainer t(c, *grid);
  EXPECT_EQ(t.MaybeResume(), 0);
  const auto now = t.adapters().NamedTensors();
  int e_tensors = 0;
  for (const auto& [k, v] : now) {
    if (k.size() > 2 && k.substr(k.size() - 2) == ".E") {
      ++e_tensors;
      EXPECT_TRUE(torch::equal(v[0], src.at(k)[1])) << k;  // sentiment <- topic
      for (int r = 1; r < 5; ++r) EXPECT_TRUE(torch::equal(v[r], src.at(k)[r])) << k << " row " << r;
    } else {
      EXPECT_TRUE(torch::equal(v, src.at(k))) << k;
    }
  }
  EXPECT_GT(e_tensors, 0);
  const auto ranks = t.adapters().TaskRankMap(5);
  for (const auto& [module, per_task] : ranks.items()) EXPECT_EQ(per_task[0], src_ranks[module][1]) << module;
  t.Step();  // trains from there
  // a run with its own checkpoint resumes it and ignores transfer.from
  t.SaveCheckpoint();
  Trainer again(c, *grid);
  EXPECT_EQ(again.MaybeResume(), 1);

  // |T| of s(r_t) is the source run's (5 trained tasks), not this run's (data.tasks: 1): in the
  // run, its checkpoint and its export, which computes what the trainer's adapters compute
  auto one = c;
  one.data.tasks = "sentiment";
  one.train.out_dir = ScratchDir("transfer_one");
  {
    auto bad = one;
    bad.adapter.alpha = 3;  // the source trained with 16: the transferred adapters would change
    ExpectError([&] { Trainer t(bad, *grid); }, {"transfer.from", "alpha = 16", "adapter.alpha = 3", "--adapter.alpha=16"});
  }
  Trainer t1(one, *grid);
  EXPECT_EQ(t1.adapter_record().scale_tasks(), 5);
  EXPECT_EQ(AdapterRecordFromConfig(one, t1.task_names()).scale_tasks(), 1);  // what the config alone says
  EXPECT_EQ(t1.MaybeResume(), 0);
  t1.Step();
  const auto ck = t1.SaveCheckpoint();
  const auto state = CheckpointManager::LoadState(ck);
  EXPECT_EQ(state["adapter_record"]["scale_tasks"], 5);
  EXPECT_EQ(state["adapter_record"], AdapterRecordToJson(t1.adapter_record()));
  const auto ex = ScratchDir("transfer_one_export");
  ExportCheckpoint(ck, ex);
  auto loaded = LoadExport(ex, LoadLlamaConfig(one.model.path));
  EXPECT_EQ(loaded.record.scale_tasks(), 5);
  ASSERT_EQ(loaded.adapters->size(), t1.adapters().size());
  torch::NoGradGuard ng;
  for (size_t i = 0; i < loaded.adapters->size(); ++i) {
    const auto want = t1.adapters().adapters()[i]->MergedDelta(0);
    EXPECT_TRUE(torch::allclose(loaded.adapters->adapters()[i]->MergedDelta(0), want, 1e-6, 1e-8))
        << t1.adapters().adapters()[i]->name();
  }
}

// Every checkpoint carries the run's adapter record; a checkpoint written before the record
// existed ("adapter" + "task_names" instead) resumes with a record derived once from its
// config (and says so); a malformed record is refused naming the field.
TEST(Trainer, CheckpointCarriesTheAdapterRecord) {
  auto grid = ProcessGrid::Single();
  auto c = TinyConfig(ScratchDir("record"));
  c.data.tasks = "sentiment,nli";
  c.adapter.alpha = 8;
  std::string ck;
  nlohmann::json want;
  {
    Trainer t(c, *grid);
    t.Step();
    ck = t.SaveCheckpoint();
    want = AdapterRecordToJson(t.adapter_record());
  }
  auto st = CheckpointManager::LoadState(ck);
  EXPECT_EQ(st["adapter_record"], want);
  EXPECT_EQ(want["scale_tasks"], 2);
  EXPECT_EQ(want["alpha"], 8.0);
  EXPECT_FALSE(st.contains("task_names"));  // one record: the task list lives in it
  auto reseal = [&](nlohmann::json s) {
    s.erase(kStateChecksumKey);
    s[kStateChecksumKey] = CheckpointManager::StateChecksum(s);
    WriteFileAtomic(ck + "/state.json", s.dump());
  };
  // the old layout: no record
  auto old = st;
  old.erase("adapter_record");
  old["task_names"] = want["tasks"];
  old["adapter"] = {{"method", "more"}, {"rank", c.adapter.rank}, {"targets", c.adapter.targets}};
  reseal(old);
  {
    Trainer t(c, *grid);
    EXPECT_EQ(AdapterRecordToJson(t.adapter_record()), want);
    EXPECT_EQ(t.MaybeResume(), 1);
  }
  // malformed records
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"alpha", "x"}, {"scale_tasks", -2}, {"tasks", 3}}) {
    auto bad = st;
    bad["adapter_record"][key] = value;
    reseal(bad);
    ExpectError([&] { Trainer t(c, *grid); }, {ck + "/state.json", "adapter record field '" + key + "'"});
  }
  reseal(st);
  Trainer t(c, *grid);
  EXPECT_EQ(t.MaybeResume(), 1);
}

TEST(Trainer, BadInputsGiveClearErrors) {
  auto grid = ProcessGrid::Single();
  const auto dir = ScratchDir("bad");
  {
    auto c = TinyConfig(dir);
    c.data.tasks = "sentiment,nosuchtask";
    ExpectError([&] { Trainer t(c, *grid); }, {"nosuchtask"});
  }
  {
    auto c = TinyConfig(dir);
    c.data.train = dir + "/missing_shards";
    EXPECT_THROW(Trainer t(c, *grid), Error);
  }
  {
    // shards made with another tokenizer: a different tokenizer file than the one hashed in the shards
    const auto fake = dir + "/other.model";
    WriteFileAtomic(fake, "not the same tokenizer");
    auto c = TinyConfig(dir);
    c.data.tokenizer = fake;
    ExpectError([&] { Trainer t(c, *grid); }, {"another tokenizer"});
  }
  {
    auto c = TinyConfig(dir);
    c.parallel.tp = 3;  // 4 heads do not split in 3
    ExpectError([&] { c.ValidateAgainstModel(LoadLlamaConfig(c.model.path), 3); },
                          {"num_attention_heads", "parallel.tp"});
  }
  {
    auto c = TinyConfig(dir);  // a float32 base
    c.adapter.dtype = "bfloat16";
    ExpectError([&] { Trainer t(c, *grid); }, {"adapter.dtype=bfloat16 needs a bf16 base", "model.dtype=bfloat16"});
    c.adapter.dtype = "float16";
    ExpectError([&] { c.Validate(); }, {"adapter.dtype", "float16"});
  }
  {
    // data.pack_len: without packing, negative, below the shards' max_len, beyond the model's positions
    auto c = TinyConfig(dir);
    c.data.pack_len = 128;
    ExpectError([&] { c.Validate(); }, {"data.pack_len", "needs data.packing = true"});
    c.data.packing = true;
    c.data.pack_len = -1;
    ExpectError([&] { c.Validate(); }, {"data.pack_len", "must be >= 0"});
    const int64_t max_len = ShardSet(std::vector<std::string>{c.data.train}, "train").max_len();
    const int64_t max_pos = LoadLlamaConfig(c.model.path).max_position_embeddings;
    for (const int64_t bad : {max_len - 1, max_pos + 1}) {
      c.data.pack_len = bad;
      ExpectError([&] { Trainer t(c, *grid); },
                  {fmt::format("data.pack_len = {} is outside [{}, {}]", bad, max_len, max_pos), "max_len"});
    }
    c.data.pack_len = max_pos;  // the longest rows allowed
    Trainer t(c, *grid);
  }
  {
    auto c = TinyConfig(dir);
    c.train.global_batch = 10;  // not a multiple of micro_batch 4
    ExpectError([&] { Trainer t(c, *grid); }, {"train.global_batch"});
  }
  {
    // truncated weights file
    const auto m = dir + "/truncated_model";
    fs::create_directories(m);
    fs::copy_file(TestData("tiny/config.json"), m + "/config.json");
    auto bytes = ReadFileToString(TestData("tiny/model.safetensors"));
    WriteFileAtomic(m + "/model.safetensors", bytes.substr(0, bytes.size() - 1000));
    auto c = TinyConfig(dir);
    c.model.path = m;
    c.data.tokenizer = TestData("tok.model");
    ExpectError([&] { Trainer t(c, *grid); }, {"model.safetensors", "truncated"});
  }
}

}  // namespace
}  // namespace more
