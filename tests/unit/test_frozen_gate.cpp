// adapter.gate = frozen_at_init (the paper's released code): each task's rank is the gate's
// choice at initialisation and never changes, the gate gets no gradient, E still trains through
// the contrastive loss; checkpoints keep the choice. And the default (learned) gate is unchanged.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "more/adapter/adapter_record.h"
#include "more/adapter/more_adapter.h"
#include "more/core/error.h"
#include "more/train/trainer.h"
#include "gate_reference.h"
#include "torch_test_util.h"
#include "trainer_test_util.h"

namespace more {
namespace {

using testing::ExpectError;
using testing::ScratchDir;
using testing::TinyConfig;

// The rank (1-based) a hard gate picks for each row of e, from the independent logits
// (gate_reference.h): the first maximum on ties.
std::vector<int64_t> GateChoice(const torch::Tensor& gate_w, const torch::Tensor& gate_b, const torch::Tensor& e) {
  std::vector<int64_t> out;
  for (const auto& logit : testing::ReferenceGateLogits(gate_w, gate_b, e)) {
    int64_t best = 0;
    for (int64_t k = 1; k < static_cast<int64_t>(logit.size()); ++k)
      if (logit[static_cast<size_t>(k)] > logit[static_cast<size_t>(best)]) best = k;
    out.push_back(best + 1);
  }
  return out;
}

AdapterOptions Options(bool frozen) {
  AdapterOptions o;
  o.rank = 4;
  o.alpha = 8.0;
  o.num_tasks = 3;
  o.seed = 3;
  o.frozen_gate = frozen;
  return o;
}

std::vector<std::string> ParamNames(MoreAdapter& a) {
  std::vector<std::string> out;
  for (auto& [n, t] : a.Params()) out.push_back(n);
  return out;
}

// The default gate is the learned one, and a frozen gate adds its copy of E and changes no other
// tensor, value or gradient of the learned path.
TEST(FrozenGate, DefaultIsTheLearnedGateAndFreezingAddsOnlyACopyOfE) {
  Config c;
  const auto rec = AdapterRecordFromConfig(c, {"a", "b"});
  EXPECT_FALSE(rec.options.frozen_gate);
  EXPECT_EQ(AdapterRecordToJson(rec).at("gate"), "learned");
  // a version-1 record (written before adapter.gate existed) reads as a learned gate
  auto v1 = AdapterRecordToJson(rec);
  v1["version"] = 1;
  v1.erase("gate");
  EXPECT_FALSE(AdapterRecordFromJson(v1, "v1.json").options.frozen_gate);
  auto v2 = AdapterRecordToJson(rec);
  v2.erase("gate");
  ExpectError([&] { AdapterRecordFromJson(v2, "v2.json"); }, {"v2.json", "'gate'", "missing"});
  v2["gate"] = "frozen_at_init";
  EXPECT_TRUE(AdapterRecordFromJson(v2, "v2.json").options.frozen_gate);
  v2["method"] = "lora";
  ExpectError([&] { AdapterRecordFromJson(v2, "v2.json"); }, {"'gate'", "method more"});

  MoreAdapter learned("layers.0.q", 6, 5, Options(false), ParallelKind::kColumn, 0, 1);
  MoreAdapter frozen("layers.0.q", 6, 5, Options(true), ParallelKind::kColumn, 0, 1);
  EXPECT_EQ(ParamNames(learned), (std::vector<std::string>{"A", "B", "E", "gate_w", "gate_b"}));
  EXPECT_EQ(ParamNames(frozen), (std::vector<std::string>{"A", "B", "E", "gate_w", "gate_b", "E_gate"}));
  for (const char* n : {"A", "E", "gate_w", "gate_b"}) {
    auto get = [&](MoreAdapter& a) {
      for (auto& [name, t] : a.Params())
        if (name == n) return *t;
      return torch::Tensor();
    };
    EXPECT_TRUE(torch::equal(get(learned), get(frozen))) << n;
  }
  EXPECT_TRUE(torch::equal(frozen.E_gate, frozen.E));
  // at init both choose the same ranks and compute the same update
  torch::manual_seed(5);
  const auto b = torch::randn({5, 4});
  learned.B = b.clone().requires_grad_(true);
  frozen.B = b.clone().requires_grad_(true);
  for (auto* a : {&learned, &frozen}) {
    a->gate_w.requires_grad_(true);
    a->gate_b.requires_grad_(true);
    a->E.requires_grad_(true);
  }
  frozen.E_gate.requires_grad_(true);
  const auto x = torch::randn({2, 3, 6});
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(learned.ChosenRank(t), frozen.ChosenRank(t));
    EXPECT_TRUE(torch::allclose(learned.Delta(x, t, false), frozen.Delta(x, t, false), 0, 0)) << t;
  }
  // the learned gate trains through the STE; nothing of the frozen gate is in the graph
  learned.Delta(x, 1, false).pow(2).sum().backward();
  frozen.Delta(x, 1, false).pow(2).sum().backward();
  EXPECT_GT(learned.gate_w.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(learned.E.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(frozen.gate_w.grad().defined());
  EXPECT_FALSE(frozen.gate_b.grad().defined());
  EXPECT_FALSE(frozen.E.grad().defined());
  EXPECT_FALSE(frozen.E_gate.grad().defined());
  EXPECT_TRUE(torch::allclose(learned.B.grad(), frozen.B.grad(), 0, 0));
}

// The frozen gate reads E_gate, never E: moving E (as the contrastive loss does) changes a learned
// gate's choice and not a frozen one's.
TEST(FrozenGate, ChoiceFollowsTheFrozenCopyNotTheTrainedEmbeddings) {
  MoreAdapter learned("layers.0.q", 6, 5, Options(false), ParallelKind::kColumn, 0, 1);
  MoreAdapter frozen("layers.0.q", 6, 5, Options(true), ParallelKind::kColumn, 0, 1);
  const auto at_init = GateChoice(frozen.gate_w, frozen.gate_b, frozen.E_gate);
  torch::manual_seed(9);
  bool moved = false;
  for (int trial = 0; trial < 20; ++trial) {
    const auto e = torch::randn({3, 6}) * 3.0;
    {
      torch::NoGradGuard ng;
      learned.E.copy_(e);  // in place: the version counters make the cached choices stale
      frozen.E.copy_(e);
    }
    const auto want_learned = GateChoice(learned.gate_w, learned.gate_b, e);
    for (int t = 0; t < 3; ++t) {
      EXPECT_EQ(learned.ChosenRank(t), want_learned[t]);
      EXPECT_EQ(frozen.ChosenRank(t), at_init[t]);
      EXPECT_EQ(frozen.Select(t).rank, at_init[t]);
      moved = moved || want_learned[t] != at_init[t];
    }
  }
  EXPECT_TRUE(moved);  // the case where the two differ was exercised
}

// Training: the ranks stay the gate's choice at init (computed above from the initial tensors),
// gate_w, gate_b and E_gate get zero gradient and keep their values (under weight decay too),
// E, A and B train; a resumed run (another train.seed: the tensors come from the checkpoint)
// keeps the ranks; resuming with a learned gate is refused.
TEST(FrozenGate, TrainingKeepsTheRanksChosenAtInit) {
  auto grid = ProcessGrid::Single();
  const auto dir = ScratchDir("frozen_gate");
  auto c = TinyConfig(dir);
  c.adapter.gate = "frozen_at_init";
  c.adapter.scaling = "per_component";
  c.train.weight_decay = 0.1;
  c.Validate();
  auto suffix = [](const std::string& name) { return name.substr(name.rfind('.') + 1); };
  nlohmann::json expected = nlohmann::json::object();
  std::map<std::string, torch::Tensor> init;
  {
    Trainer t(c, *grid);
    t.MaybeResume();
    for (auto& [k, v] : t.adapters().NamedTensors()) init[k] = v.clone();
    int64_t tasks = 0;
    for (const auto& a : t.adapters().adapters()) {
      const auto& n = a->name();
      expected[n] = GateChoice(init.at(n + ".gate_w"), init.at(n + ".gate_b"), init.at(n + ".E"));
      tasks = a->E.size(0);
    }
    ASSERT_GT(tasks, 1);
    EXPECT_EQ(t.adapters().TaskRankMap(static_cast<int>(tasks)), expected);
    for (int s = 0; s < 4; ++s) {
      t.Step();
      for (auto& [k, g] : t.adapters().NamedGrads()) {
        const auto sfx = suffix(k);
        if (sfx == "gate_w" || sfx == "gate_b" || sfx == "E_gate")
          EXPECT_EQ(g.abs().max().item<double>(), 0.0) << k << " step " << s + 1;
      }
      EXPECT_EQ(t.adapters().TaskRankMap(static_cast<int>(tasks)), expected) << "step " << s + 1;
    }
    int e_moved = 0, b_moved = 0;
    for (auto& [k, v] : t.adapters().NamedTensors()) {
      const auto sfx = suffix(k);
      const bool same = torch::equal(v, init.at(k));
      if (sfx == "gate_w" || sfx == "gate_b" || sfx == "E_gate") EXPECT_TRUE(same) << k;
      if (sfx == "E") e_moved += !same;
      if (sfx == "B") b_moved += !same;
    }
    EXPECT_GT(e_moved, 0);  // the contrastive loss trains E, as in the released code
    EXPECT_GT(b_moved, 0);
    t.SaveCheckpoint();
  }
  auto r = c;
  r.train.seed = 77;  // other init tensors: only the checkpoint's can give the same ranks
  {
    Trainer t(r, *grid);
    EXPECT_EQ(t.MaybeResume(), 4);
    const auto tasks = static_cast<int>(t.adapters().adapters().front()->E.size(0));
    EXPECT_EQ(t.adapters().TaskRankMap(tasks), expected);
    t.Step();
    EXPECT_EQ(t.adapters().TaskRankMap(tasks), expected);
  }
  auto l = c;
  l.adapter.gate = "learned";
  Trainer t(l, *grid);
  ExpectError([&] { t.MaybeResume(); }, {"was written for adapters", "frozen_at_init"});
}

// Settings where a frozen gate makes no sense are refused, naming adapter.gate.
TEST(FrozenGate, RefusedWhereItMakesNoSense) {
  Config v;
  v.model.path = "m";
  v.data.train = "d";
  v.adapter.gate = "frozen";
  ExpectError([&] { v.Validate(); }, {"adapter.gate", "learned or frozen_at_init", "'frozen'"});
  v.adapter.gate = "frozen_at_init";
  v.Validate();
  v.adapter.method = "lora";
  ExpectError([&] { v.Validate(); }, {"adapter.gate", "adapter.method = more"});
  v.adapter.method = "more";
  v.adapter.selection = "soft";
  ExpectError([&] { v.Validate(); }, {"adapter.gate", "adapter.selection = ste"});
  v.adapter.selection = "ste";
  v.adapter.gate_input = "shared";
  v.adapter.lambda_cl = 0;
  ExpectError([&] { v.Validate(); }, {"adapter.gate", "adapter.gate_input = task"});
  v.adapter.gate_input = "task";
  v.transfer.from = "ckpt";
  ExpectError([&] { v.Validate(); }, {"transfer.from", "adapter.gate = learned"});
}

}  // namespace
}  // namespace more
