// LLaMA stage: golden forward against an independent float64 reference (tests/golden/llama_ref.py
// run by Debian's python3-torch on the same safetensors files), sharded bf16 loading, causality,
// config/weights mismatch, and per-task merged weights == adapter path.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <fstream>

#include "more/adapter/adapter_record.h"
#include "more/ckpt/export.h"
#include "more/core/error.h"
#include "more/core/safetensors.h"
#include "more/data/sequence_packing.h"
#include "more/model/llama.h"
#include "more/parallel/vocab_parallel.h"
#include "more/train/loss.h"
#include "torch_test_util.h"

namespace more {
namespace {

using testing::ScratchDir;
using testing::TestData;

torch::Tensor Ids() {
  return torch::tensor({1, 17, 250, 9, 33, 480, 2, 77, 5, 6, 1, 300, 41, 8, 99, 12, 3, 4},
                       torch::kInt64).view({2, 9});
}

// Adapters of the tiny model with random "trained" values (B is zero at init, so a fresh set
// would leave the model unchanged).
std::unique_ptr<AdapterSet> RandomAdapters(const LlamaConfig& cfg, const AdapterOptions& ao, const ProcessGrid& grid,
                                           uint64_t seed, double scale) {
  auto adapters = BuildAdapters(cfg, ao, Config().TargetModules(), grid);  // every module kind
  torch::NoGradGuard ng;
  torch::manual_seed(seed);
  adapters->flat().copy_(torch::randn({adapters->numel()}) * scale);
  return adapters;
}

// The record of adapters built from `ao` for the run's targets and these task names.
AdapterRecord RecordFor(const AdapterOptions& ao, std::vector<std::string> tasks, const Config& run) {
  AdapterRecord r;
  r.options = ao;
  r.tasks = std::move(tasks);
  r.targets = run.TargetModules();
  return r;
}

// Runs the python reference; returns logits [B, L, V] as float32.
torch::Tensor Reference(const std::string& model, const torch::Tensor& ids, const std::string& tmp) {
  std::string rows;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    if (b) rows += ";";
    for (int64_t j = 0; j < ids.size(1); ++j) rows += (j ? "," : "") + std::to_string(ids[b][j].item<int64_t>());
  }
  const std::string out = tmp + "/ref.bin";
  const std::string cmd = std::string("/usr/bin/python3 ") + MORE_SOURCE_DIR + "/tests/golden/llama_ref.py --model " +
                          model + " --ids '" + rows + "' --out " + out;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << " (python3-torch must be installed: launch/setup.sh)";
  auto bytes = ReadFileToString(out);
  const int64_t n = static_cast<int64_t>(bytes.size() / 4);
  auto t = torch::from_blob(bytes.data(), {n}, torch::kFloat32).clone();
  return t.view({ids.size(0), ids.size(1), -1});
}

// The fused cross-entropy node against libtorch's cross_entropy: values and logit gradients, for
// fp32 and bf16 logits, through an identity head (x I^T is x exactly, and so is the gradient of
// x); its tensor-parallel form is checked by the layout-equivalence runs.
TEST(VocabParallelNll, EqualsCrossEntropyInValueAndGradient) {
  auto grid = ProcessGrid::Single();
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    torch::manual_seed(3);
    auto logits = (torch::randn({7, 50}) * 4).to(dtype);
    auto targets = torch::randint(0, 50, {7}, torch::kInt64);
    auto gout = torch::rand({7});
    auto l1 = logits.clone().requires_grad_(true), l2 = logits.clone().requires_grad_(true);
    auto nll = LinearVocabParallelNll(l1, torch::eye(50).to(dtype), targets, 0, grid->tp());
    EXPECT_TRUE(torch::equal(l1, logits)) << "the head's input must not be overwritten";
    auto ref = torch::nn::functional::cross_entropy(
        l2.to(torch::kFloat32), targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    (nll * gout).sum().backward();
    (ref * gout).sum().backward();
    EXPECT_EQ(nll.scalar_type(), torch::kFloat32);
    EXPECT_EQ(l1.grad().scalar_type(), dtype);
    const double tol = dtype == torch::kFloat32 ? 1e-5 : 1e-2;
    EXPECT_TRUE(torch::allclose(nll, ref, tol, tol)) << nll << ref;
    EXPECT_TRUE(torch::allclose(l1.grad().to(torch::kFloat32), l2.grad().to(torch::kFloat32), tol, tol));
  }
}

// The LM head's GEMM fused with the loss against matmul + cross_entropy: nll and the gradients
// of the input and of the (here trainable, as in pretraining) head weight.
TEST(VocabParallelNll, LinearFormEqualsHeadThenCrossEntropy) {
  auto grid = ProcessGrid::Single();
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    torch::manual_seed(4);
    auto x = torch::randn({9, 16}).to(dtype), w = torch::randn({40, 16}).to(dtype);
    auto targets = torch::randint(0, 40, {9}, torch::kInt64);
    auto gout = torch::rand({9});
    auto x1 = x.clone().requires_grad_(true), w1 = w.clone().requires_grad_(true);
    auto x2 = x.clone().requires_grad_(true), w2 = w.clone().requires_grad_(true);
    auto nll = LinearVocabParallelNll(x1, w1, targets, 0, grid->tp());
    auto ref = torch::nn::functional::cross_entropy(torch::matmul(x2, w2.t()).to(torch::kFloat32), targets,
                                                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    (nll * gout).sum().backward();
    (ref * gout).sum().backward();
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 5e-2;
    EXPECT_TRUE(torch::allclose(nll, ref, tol, tol));
    EXPECT_TRUE(torch::allclose(x1.grad().to(torch::kFloat32), x2.grad().to(torch::kFloat32), tol, tol));
    EXPECT_TRUE(torch::allclose(w1.grad().to(torch::kFloat32), w2.grad().to(torch::kFloat32), tol, tol));
  }
}

TEST(Llama, GoldenForwardMatchesIndependentReference) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  EXPECT_LT(cfg.num_key_value_heads, cfg.num_attention_heads);  // the fixture exercises GQA
  SafetensorsCollection st(TestData("tiny"));
  LlamaStage stage(cfg, st, *grid, nullptr, torch::kFloat32, torch::kCPU);
  ForwardContext ctx;
  torch::NoGradGuard ng;
  auto logits = stage.FullLogits(Ids(), ctx);
  auto ref = Reference(TestData("tiny"), Ids(), ScratchDir("golden"));
  ASSERT_EQ(logits.sizes(), ref.sizes());
  const double err = (logits - ref).abs().max().item<double>();
  EXPECT_LT(err, 1e-5) << "max |logits - reference| = " << err;
}

TEST(Llama, ShardedBf16CheckpointLoadsAndMatchesReference) {
  auto grid = ProcessGrid::Single();
  const auto dir = TestData("tiny_bf16_sharded");
  auto cfg = LoadLlamaConfig(dir);
  SafetensorsCollection st(dir);
  // upcast to fp32 on load: the only difference to the reference is float32 arithmetic
  LlamaStage stage(cfg, st, *grid, nullptr, torch::kFloat32, torch::kCPU);
  ForwardContext ctx;
  torch::NoGradGuard ng;
  auto ref = Reference(dir, Ids(), ScratchDir("golden_bf16"));
  EXPECT_LT((stage.FullLogits(Ids(), ctx) - ref).abs().max().item<double>(), 1e-5);
  // and computed in bf16 it stays close
  LlamaStage bf(cfg, st, *grid, nullptr, torch::kBFloat16, torch::kCPU);
  auto lb = bf.FullLogits(Ids(), ctx).to(torch::kFloat32);
  const double scale = ref.abs().max().item<double>();
  EXPECT_LT((lb - ref).abs().max().item<double>(), 0.05 * scale);
}

TEST(Llama, RightPaddingDoesNotChangeEarlierPositions) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  SafetensorsCollection st(TestData("tiny"));
  LlamaStage stage(cfg, st, *grid, nullptr, torch::kFloat32, torch::kCPU);
  ForwardContext ctx;
  torch::NoGradGuard ng;
  auto ids = Ids();
  auto a = stage.FullLogits(ids, ctx);
  auto padded = torch::cat({ids, torch::zeros({2, 5}, torch::kInt64)}, 1);
  auto b = stage.FullLogits(padded, ctx).narrow(1, 0, ids.size(1));
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-4 * a.abs().max().item<double>());
}

// The LM head on the labelled rows only (what training runs) against an independent composition
// over every position: RMSNorm, the head's matmul and cross-entropy written out in plain ATen,
// then the labelled positions picked. Values and the gradient reaching the hidden states (zero
// at every unlabelled position); also with no labelled position at all.
TEST(Llama, HeadOnLabelledRowsEqualsFullHeadAtThoseRows) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  SafetensorsCollection st(TestData("tiny"));
  LlamaStage stage(cfg, st, *grid, nullptr, torch::kFloat64, torch::kCPU);
  torch::Tensor norm_w, head_w;
  for (const auto& [name, t] : stage.BaseWeights()) {
    if (name == "model.norm.weight") norm_w = t;
    if (name == "lm_head.weight" || (cfg.tie_word_embeddings && name == "model.embed_tokens.weight")) head_w = t;
  }
  ASSERT_TRUE(norm_w.defined() && head_w.defined());
  torch::manual_seed(3);
  const int64_t b = 2, s = 9, d = cfg.hidden_size;
  auto h0 = torch::randn({b, s, d}, torch::kFloat64);
  auto targets = torch::randint(0, cfg.vocab_size, {b, s}, torch::kInt64);
  for (const std::vector<int64_t>& picked : {std::vector<int64_t>{2, 3, 8, 9, 17}, std::vector<int64_t>{}}) {
    auto pos = torch::tensor(picked, torch::kInt64);
    auto coef = torch::rand({pos.size(0)}, torch::kFloat64) + 0.5;  // a weighted sum: per-row gradients
    auto h1 = h0.clone().requires_grad_(true);
    auto nll = stage.TokenNllAt(h1, pos, targets.flatten().index_select(0, pos));
    ASSERT_EQ(nll.sizes(), pos.sizes());
    (nll.to(torch::kFloat64) * coef).sum().backward();
    auto h2 = h0.clone().requires_grad_(true);
    auto n = h2 * torch::rsqrt(h2.pow(2).mean(-1, true) + cfg.rms_norm_eps) * norm_w;
    auto logits = torch::matmul(n, head_w.t()).view({b * s, -1});
    auto all = torch::nn::functional::cross_entropy(
        logits, targets.flatten(), torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    auto ref = all.index_select(0, pos);
    (ref * coef).sum().backward();
    EXPECT_TRUE(torch::allclose(nll.to(torch::kFloat64), ref, 1e-5, 1e-6)) << (nll - ref).abs().max();
    EXPECT_TRUE(torch::allclose(h1.grad(), h2.grad(), 1e-5, 1e-8)) << (h1.grad() - h2.grad()).abs().max();
    auto untouched = torch::ones({b * s}, torch::kBool);
    for (auto p : picked) untouched[p] = false;
    EXPECT_EQ(h1.grad().view({b * s, d}).index({untouched}).abs().max().item<double>(), 0.0);
    if (!picked.empty()) EXPECT_GT(h1.grad().abs().max().item<double>(), 0.0);
  }
}

// ToTensors finds the labelled positions on the host: position j of a row is labelled when token
// j+1 is a target (next-token prediction), and the targets there are the next tokens.
TEST(Llama, BatchTensorsListTheLabelledPositionsAndTheirTargets) {
  MicroBatch mb;
  mb.task = 0;
  mb.batch_size = 2;
  mb.seq_len = 5;
  mb.input_ids = {1, 10, 11, 12, 0, 1, 20, 21, 22, 23};
  mb.target_mask = {0, 0, 1, 1, 0, 0, 0, 0, 1, 1};
  mb.lengths = {4, 5};
  auto t = ToTensors(mb, torch::kCPU);
  std::vector<int64_t> want_pos, want_tgt;
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t j = 0; j + 1 < 5; ++j)
      if (mb.target_mask[r * 5 + j + 1]) {
        want_pos.push_back(r * 5 + j);
        want_tgt.push_back(mb.input_ids[r * 5 + j + 1]);
      }
  EXPECT_EQ(t.num_labels, 4);
  EXPECT_TRUE(torch::equal(t.label_pos, torch::tensor(want_pos, torch::kInt64)));
  EXPECT_TRUE(torch::equal(t.label_targets, torch::tensor(want_tgt, torch::kInt64)));
  EXPECT_EQ(t.loss_mask.sum().item<double>(), 4.0);
}

TEST(Llama, ConfigNotMatchingWeightsIsAnErrorNamingTheTensor) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  cfg.intermediate_size += 16;
  SafetensorsCollection st(TestData("tiny"));
  try {
    LlamaStage stage(cfg, st, *grid, nullptr, torch::kFloat32, torch::kCPU);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(Llama, MergedModelForTaskEqualsAdapterModel) {
  auto grid = ProcessGrid::Single();
  const auto base = TestData("tiny");
  auto cfg = LoadLlamaConfig(base);
  Config run = testing::TinyConfig(ScratchDir("merge_run"));
  AdapterOptions ao;
  ao.rank = 4;
  ao.num_tasks = 5;
  ao.alpha = 8;
  ao.seed = 5;
  auto adapters = RandomAdapters(cfg, ao, *grid, 1, 0.2);
  const auto ex = ScratchDir("merge_export");
  ExportAdapters(ex, *adapters, RecordFor(ao, {"a", "b", "c", "d", "e"}, run), cfg);
  SafetensorsCollection st(base);
  LlamaStage with(cfg, st, *grid, adapters.get(), torch::kFloat32, torch::kCPU);
  for (int t : {0, 3}) {
    const std::string task = t == 0 ? "a" : "d";
    auto merged_dir = MergeTask(ex, base, task, ScratchDir("merged_" + task));
    SafetensorsCollection mst(merged_dir);
    LlamaStage merged(cfg, mst, *grid, nullptr, torch::kFloat32, torch::kCPU);
    ForwardContext c1, c2;
    c1.task = t;
    torch::NoGradGuard ng;
    auto la = with.FullLogits(Ids(), c1);
    auto lm = merged.FullLogits(Ids(), c2);
    EXPECT_LT((la - lm).abs().max().item<double>(), 2e-5) << "task " << task;
  }
  // the export's task->rank map is stored and checked on load
  auto loaded = LoadExport(ex, cfg);
  EXPECT_EQ(loaded.tasks.size(), 5u);
}

TEST(Llama, MergeOfShardedBf16KeepsLayoutAndFailedMergeLeavesNothing) {
  auto grid = ProcessGrid::Single();
  const auto base = TestData("tiny_bf16_sharded");
  auto cfg = LoadLlamaConfig(base);
  Config run = testing::TinyConfig(ScratchDir("merge_bf16_run"));
  AdapterOptions ao;
  ao.rank = 4;
  ao.num_tasks = 2;
  ao.seed = 7;
  auto adapters = RandomAdapters(cfg, ao, *grid, 1, 0.2);
  const auto ex = ScratchDir("merge_bf16_export");
  ExportAdapters(ex, *adapters, RecordFor(ao, {"a", "b"}, run), cfg);
  const auto out = ScratchDir("merge_bf16_out") + "/merged/a";
  MergeTask(ex, base, "a", out);
  // same shard files and index as the base, bf16 kept, tokenizer/generation files present
  SafetensorsCollection bst(base), mst(out);
  EXPECT_EQ(bst.Files(), mst.Files());
  EXPECT_EQ(bst.Files().size(), 2u);
  EXPECT_EQ(ReadFileToString(base + "/model.safetensors.index.json"), ReadFileToString(out + "/model.safetensors.index.json"));
  for (const auto& n : bst.Names()) EXPECT_EQ(mst.FileFor(n).Info(n).dtype, DType::kBF16) << n;
  for (const char* f : {"config.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  {  // every adapted weight is bf16(fp32(W0) + dW_t) exactly; the rest are the base's bytes
    auto tensor = [](const SafetensorsCollection& c, const std::string& n) {
      const auto& f = c.FileFor(n);
      const auto& i = f.Info(n);
      return torch::from_blob(const_cast<void*>(f.Data(n)), i.shape, torch::kBFloat16).clone();
    };
    std::set<std::string> adapted;
    torch::NoGradGuard ng;
    for (const auto& a : adapters->adapters()) {
      auto dot = a->name().rfind('.');
      const auto n = "model." + a->name().substr(0, dot) + "." + HfModuleName(a->name().substr(dot + 1)) + ".weight";
      adapted.insert(n);
      auto want = (tensor(bst, n).to(torch::kFloat32) + a->MergedDelta(0)).to(torch::kBFloat16);
      EXPECT_TRUE(tensor(mst, n).equal(want)) << n;
      EXPECT_FALSE(tensor(mst, n).equal(tensor(bst, n))) << n;
    }
    EXPECT_EQ(adapted.size(), 14u);
    for (const auto& n : bst.Names())
      if (!adapted.count(n)) EXPECT_TRUE(tensor(mst, n).equal(tensor(bst, n))) << n;
  }
  // a write failure part-way (file-size limit: EFBIG, as a full disk gives ENOSPC) leaves
  // neither the output nor the temporary directory, and an earlier output untouched
  const auto before = ReadFileToString(out + "/model-00001-of-00002.safetensors");
  std::string msg;
  {
    testing::FileSizeLimit limit(20000);
    ASSERT_TRUE(limit.ok());
    try {
      MergeTask(ex, base, "a", out);
    } catch (const Error& e) {
      msg = e.what();
    }
  }
  EXPECT_NE(msg.find("failed at write"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(out).parent_path() / ".tmp-a"));
  EXPECT_EQ(ReadFileToString(out + "/model-00001-of-00002.safetensors"), before);
  // a missing base says so
  try {
    MergeTask(ex, base + "_gone", "a", out + "_2");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(out + "_2"));
}

// The run's adapter settings: E has a row per task of the shards; |T| of s(r_t) and the
// contrastive classes are the trained tasks (data.tasks); the ablations' settings map through.
TEST(Llama, AdapterOptionsUseTheTrainedTasks) {
  Config c;
  const std::vector<std::string> names = {"sentiment", "topic", "nli", "acceptability"};
  auto ao = AdapterRecordFromConfig(c, names).options;
  EXPECT_EQ(ao.num_tasks, 4);
  EXPECT_EQ(ao.scale_tasks, 4);
  EXPECT_EQ(ao.active_tasks, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(ao.task_emb_init, "kaiming");
  c.data.tasks = "nli,sentiment,nli";
  c.adapter.experts = "2,4";
  c.adapter.gate_input = "shared";
  c.adapter.task_emb_init = "normal";
  c.adapter.task_emb_std = 0.2;
  ao = AdapterRecordFromConfig(c, names).options;
  EXPECT_EQ(ao.num_tasks, 4);
  EXPECT_EQ(ao.scale_tasks, 2);
  EXPECT_EQ(ao.active_tasks, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(ao.experts, (std::vector<int64_t>{2, 4}));
  EXPECT_TRUE(ao.shared_gate_input);
  EXPECT_EQ(ao.task_emb_init, "normal");
  EXPECT_DOUBLE_EQ(ao.task_emb_std, 0.2);
  c.data.tasks = "nli,nosuch";
  testing::ExpectError([&] { AdapterRecordFromConfig(c, names).options; }, {"data.tasks", "'nosuch'"});
  // the ablations' settings are validated with the key named
  Config v;
  v.model.path = "m";
  v.data.train = "d";
  v.adapter.gate_input = "shared";
  testing::ExpectError([&] { v.Validate(); }, {"adapter.gate_input", "adapter.lambda_cl=0"});
  v.adapter.lambda_cl = 0;
  v.Validate();
  v.adapter.experts = "4,2";
  testing::ExpectError([&] { v.Validate(); }, {"adapter.experts", "ascending"});
  v.adapter.experts = "2,x";
  testing::ExpectError([&] { v.Validate(); }, {"adapter.experts", "'x'"});
  v.adapter.experts = "";
  v.transfer.tasks = "review=sentiment";
  testing::ExpectError([&] { v.Validate(); }, {"transfer.tasks", "transfer.from"});
  v.transfer.from = "ckpt";
  v.transfer.tasks = "review";
  testing::ExpectError([&] { v.Validate(); }, {"transfer.tasks", "new_task=source_task"});
}

// The export computes what the adapters it was written from compute, for a record whose |T|
// is not its task count (a transfer run: one task, |T| of its source run = 5) and for the
// ablations' settings; the reference is the in-memory adapters, not anything read back.
TEST(Llama, ExportKeepsTheRecordItWasWrittenWith) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  Config run = testing::TinyConfig(ScratchDir("record_run"));
  for (int variant = 0; variant < 3; ++variant) {
    AdapterOptions ao;
    ao.rank = 4;
    ao.alpha = 6;
    ao.num_tasks = 1;
    ao.scale_tasks = 5;  // the source run's |T|
    ao.active_tasks = {0};
    ao.seed = 11;
    if (variant == 1) ao.scaling = "per_component", ao.experts = {2, 4};
    if (variant == 2) ao.soft = true, ao.scaling = "none";
    auto adapters = RandomAdapters(cfg, ao, *grid, 3, 0.3);
    const auto ex = ScratchDir("record_export_" + std::to_string(variant));
    ExportAdapters(ex, *adapters, RecordFor(ao, {"review"}, run), cfg);
    auto loaded = LoadExport(ex, cfg);
    EXPECT_EQ(loaded.record.scale_tasks(), 5);
    ASSERT_EQ(loaded.adapters->size(), adapters->size());
    torch::NoGradGuard ng;
    for (size_t i = 0; i < adapters->size(); ++i) {
      auto want = adapters->adapters()[i]->MergedDelta(0), got = loaded.adapters->adapters()[i]->MergedDelta(0);
      EXPECT_GT(want.abs().max().item<double>(), 0.0);
      EXPECT_TRUE(torch::allclose(got, want, 1e-6, 1e-7)) << "variant " << variant << " " << adapters->adapters()[i]->name();
    }
  }
}

// The record's JSON: a round trip keeps every field; each malformed field is an error naming it.
TEST(Llama, AdapterRecordJsonRoundTripAndMalformedFields) {
  Config c;
  c.data.tasks = "nli,sentiment";
  c.adapter.experts = "2,4";
  c.adapter.scaling = "per_component";
  c.adapter.alpha = 5;
  const std::vector<std::string> names = {"sentiment", "topic", "nli"};
  const auto rec = AdapterRecordFromConfig(c, names);
  const auto j = AdapterRecordToJson(rec);
  const auto back = AdapterRecordFromJson(j, "x.json");
  EXPECT_EQ(AdapterRecordToJson(back), j);
  EXPECT_TRUE(AdapterRecordDiff(rec, back).empty());
  EXPECT_EQ(back.options.active_tasks, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(back.scale_tasks(), 2);
  EXPECT_EQ(back.options.experts, (std::vector<int64_t>{2, 4}));
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> bad = {
      {"version", 7, "version"},
      {"method", "dora", "'dora'"},
      {"rank", 0, "integer >= 1"},
      {"alpha", -1.0, "> 0"},
      {"scaling", 3, "not a string"},
      {"selection", "maybe", "'maybe'"},
      {"scale_tasks", "5", "integer >= 1"},
      {"tasks", nlohmann::json::array(), "is empty"},
      {"tasks", {"a", "a"}, "twice"},
      {"trained_tasks", {"nosuch"}, "'nosuch'"},
      {"experts", {4, 2}, "ascending"},
      {"experts", {9}, "ascending"},
      {"gate_input", "none", "'none'"},
      {"targets", {"q", "lm_head"}, "'lm_head'"},
      {"tau", 0, "> 0"},
      {"task_emb_init", "zeros", "'zeros'"},
  };
  for (const auto& [key, value, what] : bad) {
    auto broken = j;
    broken[key] = value;
    testing::ExpectError([&] { AdapterRecordFromJson(broken, "x.json"); }, {"x.json", "'" + key + "'", what});
  }
  auto missing = j;
  missing.erase("scale_tasks");
  testing::ExpectError([&] { AdapterRecordFromJson(missing, "x.json"); }, {"'scale_tasks'", "missing"});
  testing::ExpectError([&] { AdapterRecordFromJson(nlohmann::json::array(), "x.json"); }, {"x.json", "not a JSON object"});
}

TEST(Llama, ExportWithTamperedRankMapIsRejected) {
  auto grid = ProcessGrid::Single();
  auto cfg = LoadLlamaConfig(TestData("tiny"));
  Config run = testing::TinyConfig(ScratchDir("tamper_run"));
  AdapterOptions ao;
  ao.rank = 4;
  ao.num_tasks = 2;
  auto adapters = BuildAdapters(cfg, ao, run.TargetModules(), *grid);
  const auto ex = ScratchDir("tamper_export");
  ExportAdapters(ex, *adapters, RecordFor(ao, {"a", "b"}, run), cfg);
  auto j = nlohmann::json::parse(ReadFileToString(ex + "/adapter_config.json"));
  auto& ranks = j["task_ranks"]["layers.0.q"];
  ranks[0] = ranks[0].get<int>() % 4 + 1;
  WriteFileAtomic(ex + "/adapter_config.json", j.dump());
  try {
    LoadExport(ex, cfg);
    ADD_FAILURE() << "a tampered task->rank map was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("task->rank map does not match the stored gates"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(ex), std::string::npos) << e.what();
  }
}

// Recomputed layers keep no graph inside: the stage output hangs off one recompute node per
// layer, whose backward gives the input and adapter gradients of the plain graph.
TEST(Llama, RecomputedLayersKeepOnlyTheirInputAndGiveTheSameGradients) {
  auto grid = ProcessGrid::Single();
  const auto base = TestData("tiny");
  auto cfg = LoadLlamaConfig(base);
  AdapterOptions ao;
  ao.rank = 4;
  ao.num_tasks = 3;
  ao.dropout = 0.0;
  auto adapters = RandomAdapters(cfg, ao, *grid, 2, 0.1);
  SafetensorsCollection st(base);
  LlamaStage stage(cfg, st, *grid, adapters.get(), torch::kFloat32, torch::kCPU);
  auto grads = [&](int64_t recompute, std::string* top) {
    stage.SetRecompute(recompute);
    adapters->ZeroGrad();
    auto x = stage.Embed(Ids()).detach().requires_grad_(true);
    ForwardContext ctx;
    ctx.task = 1;
    ctx.training = true;
    ctx.contrastive = true;
    ctx.token_mask = torch::ones({2, 9});
    auto h = stage.Layers(x, ctx);
    *top = h.grad_fn()->name();
    auto loss = h.pow(2).mean() + torch::stack(ctx.cl_losses).sum();
    loss.backward();
    return std::make_pair(x.grad().clone(), adapters->flat_grad().clone());
  };
  std::string plain_top, recompute_top;
  const auto [x0, a0] = grads(0, &plain_top);
  const auto [x1, a1] = grads(cfg.num_hidden_layers, &recompute_top);
  EXPECT_EQ(recompute_top, "more::RecomputeBackward");
  EXPECT_NE(plain_top, recompute_top);
  EXPECT_TRUE(torch::allclose(x0, x1, 1e-4, 1e-7)) << (x0 - x1).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(a0, a1, 1e-4, 1e-7)) << (a0 - a1).abs().max().item<double>();
  EXPECT_GT(a1.abs().sum().item<double>(), 0.0);
}

// An unpacked micro-batch of random tokens (BOS first, the last two tokens targets), lengths given.
MicroBatch RandomUnpacked(const std::vector<int32_t>& lengths, int64_t vocab, int bucket) {
  MicroBatch mb;
  mb.task = 1;
  mb.batch_size = static_cast<int>(lengths.size());
  const int longest = *std::max_element(lengths.begin(), lengths.end());
  mb.seq_len = (longest + bucket - 1) / bucket * bucket;
  mb.input_ids.assign(lengths.size() * mb.seq_len, 0);
  mb.target_mask.assign(lengths.size() * mb.seq_len, 0);
  auto ids = torch::randint(3, vocab, {static_cast<int64_t>(lengths.size()), mb.seq_len}, torch::kInt64);
  for (size_t i = 0; i < lengths.size(); ++i) {
    for (int j = 0; j < lengths[i]; ++j) {
      mb.input_ids[i * mb.seq_len + j] = j == 0 ? 1 : static_cast<int32_t>(ids[i][j].item<int64_t>());
      mb.target_mask[i * mb.seq_len + j] = j >= lengths[i] - 2 ? 1 : 0;
    }
    mb.lengths.push_back(lengths[i]);
    mb.prompt_lengths.push_back(lengths[i] - 2);
    mb.label_index.push_back(-1);
    mb.label_value.push_back(0.0f);
    mb.rows.push_back(static_cast<int64_t>(i));
  }
  return mb;
}

// Packed batch tensors describe the same examples: the same labels in the same order (at the
// packed positions), a pool matrix of 1/len on each example's own tokens, and an attention mask
// that is causal inside each example (built here from example_row / example_offset directly).
TEST(Llama, PackedBatchTensorsDescribeTheSameExamples) {
  torch::manual_seed(11);
  const std::vector<int32_t> lengths = {9, 5, 12, 3, 7, 6};
  const auto u = RandomUnpacked(lengths, 500, 4);
  const auto p = PackMicroBatch(u, 16, 4, 0);
  auto tu = ToTensors(u, torch::kCPU), tp = ToTensors(p, torch::kCPU);
  const int64_t L = p.seq_len, R = p.num_rows;
  ASSERT_LT(R, u.batch_size);
  EXPECT_EQ(tp.ids.sizes(), (std::vector<int64_t>{R, L}));
  EXPECT_EQ(tp.num_labels, tu.num_labels);
  EXPECT_TRUE(torch::equal(tp.label_targets, tu.label_targets));
  std::vector<int64_t> want_pos;
  for (size_t e = 0; e < lengths.size(); ++e)
    for (int j = lengths[e] - 3; j < lengths[e] - 1; ++j) want_pos.push_back(p.example_row[e] * L + p.example_offset[e] + j);
  EXPECT_TRUE(torch::equal(tp.label_pos, torch::tensor(want_pos, torch::kInt64)));
  EXPECT_EQ(tp.loss_mask.sum().item<double>(), static_cast<double>(want_pos.size()));
  ASSERT_EQ(tp.pool_matrix.sizes(), (std::vector<int64_t>{6, R * L}));
  auto allowed = torch::zeros({R, 1, L, L}, torch::kBool);
  auto pool = torch::zeros({6, R * L});
  for (size_t e = 0; e < lengths.size(); ++e) {
    const int64_t r = p.example_row[e], off = p.example_offset[e], n = lengths[e];
    for (int64_t i = 0; i < n; ++i) {
      pool[static_cast<int64_t>(e)][r * L + off + i] = 1.0 / static_cast<double>(n);
      EXPECT_EQ(tp.positions[r][off + i].item<int64_t>(), i);
      for (int64_t j = 0; j <= i; ++j) allowed[r][0][off + i][off + j] = true;
    }
  }
  EXPECT_TRUE(torch::equal(tp.pool_matrix, pool));
  // real tokens: as the example mask says; padding cells attend causally among the row's padding
  auto real = torch::zeros({R, L}, torch::kBool);
  for (size_t e = 0; e < lengths.size(); ++e)
    real[p.example_row[e]].narrow(0, p.example_offset[e], lengths[e]).fill_(true);
  EXPECT_TRUE(torch::equal(tp.token_mask, real.to(torch::kFloat32)));
  auto real_cells = real.unsqueeze(1).unsqueeze(3).expand({R, 1, L, L});   // query is real
  EXPECT_TRUE(torch::equal(tp.attn_mask.logical_and(real_cells), allowed));
  EXPECT_TRUE(torch::equal(tp.attn_mask.logical_and(real_cells.transpose(2, 3)), allowed));  // key is real
  EXPECT_TRUE(tp.attn_mask.diagonal(0, 2, 3).all().item<bool>());  // every query sees itself
  EXPECT_FALSE(tu.positions.defined());
}

// The model on packed rows computes what it computes on each example alone (one per row): the
// labelled tokens' NLL, the contrastive losses (pooled per example) and every adapter gradient,
// also with the layers recomputed in backward (the recompute context carries the packed layout).
// The unpacked forward is the one checked against the independent reference above.
TEST(Llama, PackedForwardAndGradientsEqualUnpacked) {
  auto grid = ProcessGrid::Single();
  const auto base = TestData("tiny");
  auto cfg = LoadLlamaConfig(base);
  AdapterOptions ao;
  ao.rank = 4;
  ao.num_tasks = 3;
  ao.dropout = 0.0;
  auto adapters = RandomAdapters(cfg, ao, *grid, 5, 0.1);
  SafetensorsCollection st(base);
  LlamaStage stage(cfg, st, *grid, adapters.get(), torch::kFloat32, torch::kCPU);
  torch::manual_seed(12);
  const auto u = RandomUnpacked({9, 5, 12, 3, 7, 6, 2, 10}, cfg.vocab_size, 4);
  const auto p = PackMicroBatch(u, 16, 4, 0);
  ASSERT_LT(p.num_rows, u.batch_size);
  struct Out {
    torch::Tensor nll, cl, grad;
  };
  auto run = [&](const MicroBatch& mb, int64_t recompute) {
    stage.SetRecompute(recompute);
    adapters->ZeroGrad();
    auto bt = ToTensors(mb, torch::kCPU);
    ForwardContext ctx;
    ctx.task = bt.task;
    ctx.training = true;
    ctx.contrastive = true;
    ctx.token_mask = bt.token_mask;
    ctx.positions = bt.positions;
    ctx.attn_mask = bt.attn_mask;
    ctx.pool_matrix = bt.pool_matrix;
    auto h = stage.Layers(stage.Embed(bt.ids), ctx);
    auto nll = stage.TokenNllAt(h, bt.label_pos, bt.label_targets);
    auto cl = torch::stack(ctx.cl_losses).sum();
    (nll.sum() + cl).backward();
    return Out{nll.detach(), cl.detach(), adapters->flat_grad().clone()};
  };
  const auto ref = run(u, 0);
  for (int64_t recompute : {int64_t{0}, cfg.num_hidden_layers}) {
    const auto got = run(p, recompute);
    EXPECT_TRUE(torch::allclose(got.nll, ref.nll, 1e-5, 1e-6)) << (got.nll - ref.nll).abs().max().item<double>();
    EXPECT_TRUE(torch::allclose(got.cl, ref.cl, 1e-5, 1e-6)) << got.cl.item<double>() << " " << ref.cl.item<double>();
    const double scale = ref.grad.abs().max().item<double>();
    EXPECT_GT(scale, 0.0);
    EXPECT_LT((got.grad - ref.grad).abs().max().item<double>(), 1e-5 * scale) << "recompute " << recompute;
  }
  stage.SetRecompute(0);
}

}  // namespace
}  // namespace more
