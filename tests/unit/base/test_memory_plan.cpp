// Memory planner (include/more/dist/memory_plan.h): every expected number is derived by hand
// from the formulas of the header comment for a small model, so a change of formula shows here.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "more/config/config.h"
#include "more/core/error.h"
#include "more/dist/memory_plan.h"
#include "more/model/hf_config.h"

using namespace more;

namespace {

// vocab 64, hidden 16, intermediate 32, 2 layers, 4 heads / 2 kv heads (hd 4).
// Global projection elements of one layer: q 16*16 = 256, k 16*8 = 128, v 128, o 256,
// gate 16*32 = 512, up 512, down 512: 2304; RMSNorm weights 2*16 = 32.
LlamaConfig Small() {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 64;
  return c;
}

Config Layout(int64_t tp, int64_t pp, const std::string& schedule = "1f1b") {
  Config c;
  c.parallel.tp = tp;
  c.parallel.pp = pp;
  c.parallel.schedule = schedule;
  c.train.global_batch = 32;
  c.train.micro_batch = 8;
  c.adapter.rank = 4;
  return c;
}

PlanOptions Opts(int64_t elem_bytes) {
  PlanOptions o;
  o.seq_len = 8;
  o.num_tasks = 3;
  o.elem_bytes = elem_bytes;
  return o;
}

// Runs f, expects a more::Error whose message contains `text`.
template <typename F>
void ExpectErrorWith(F&& f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << text << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(MemoryPlan, RankFormulaIsTpFastest) {
  EXPECT_EQ(WorldRank(2, 2, 0, 0, 0), 0);
  EXPECT_EQ(WorldRank(2, 2, 1, 0, 0), 1);
  EXPECT_EQ(WorldRank(2, 2, 0, 1, 0), 2);
  EXPECT_EQ(WorldRank(2, 2, 1, 1, 1), 7);  // 1 + 2*(1 + 2*1)
  EXPECT_EQ(WorldRank(8, 2, 3, 1, 0), 11);
}

TEST(MemoryPlan, BaseWeightsOfTwoLayersAtTp2Pp2) {
  const auto m = Small();
  // one layer per stage: 2304/2 + 32 = 1184; embedding 64*16/2 = 512; LM head 512 + final norm 16
  EXPECT_EQ(BaseElementsPerRank(m, 2, 2, 0), 1184 + 512);       // 1696
  EXPECT_EQ(BaseElementsPerRank(m, 2, 2, 1), 1184 + 512 + 16);  // 1712
  // pp = 1 holds both ends: 2*1184 + 512 + 16 + 512
  EXPECT_EQ(BaseElementsPerRank(m, 2, 1, 0), 3408);
  // one replica's ranks together hold NumParams plus the (tp - 1) extra copies of the norms
  const int64_t tp = 2, norms = 2 * 32 + 16;
  EXPECT_EQ(m.NumParams(), 6736);
  EXPECT_EQ(tp * (BaseElementsPerRank(m, 2, 2, 0) + BaseElementsPerRank(m, 2, 2, 1)) - (tp - 1) * norms,
            m.NumParams());

  const auto plan = PlanMemory(Layout(2, 2), m, 4, Opts(4));  // f32: 4 bytes per element
  ASSERT_EQ(plan.stages.size(), 2u);
  EXPECT_EQ(plan.dp, 1);
  EXPECT_EQ(plan.stages[0].base_bytes, 1696 * 4);
  EXPECT_EQ(plan.stages[1].base_bytes, 1712 * 4);
  EXPECT_EQ(plan.stages[0].first_layer, 0);
  EXPECT_EQ(plan.stages[0].last_layer, 1);
  EXPECT_EQ(plan.stages[1].first_layer, 1);
  EXPECT_EQ(plan.stages[1].last_layer, 2);
  EXPECT_EQ(PlanMemory(Layout(2, 2), m, 4, Opts(2)).stages[1].base_bytes, 1712 * 2);  // bf16
}

TEST(MemoryPlan, AdapterBytes) {
  const auto m = Small();
  const std::vector<std::string> all = {"q", "k", "v", "o", "gate", "up", "down"};
  // MoRE, r = 4, T = 3, per module r*(d_in + d_out) + T*d_in + r*d_in + r:
  //   q 4*32 + 48 + 64 + 4 = 244, k 4*24 + 48 + 64 + 4 = 212, v 212, o 244,
  //   gate 4*48 + 48 + 64 + 4 = 308, up 308, down 4*48 + 96 + 128 + 4 = 420  -> 1948
  EXPECT_EQ(AdapterParamsPerLayer(m, all, true, 4, 3), 1948);
  // LoRA: r*(d_in + d_out): 128 + 96 + 96 + 128 + 192 + 192 + 192 = 1024
  EXPECT_EQ(AdapterParamsPerLayer(m, all, false, 4, 3), 1024);
  EXPECT_EQ(AdapterParamsPerLayer(m, {"q", "v"}, true, 4, 3), 244 + 212);

  // fp32 x (param, grad, m, v) = 16 bytes per parameter; one layer per stage at pp = 2
  auto plan = PlanMemory(Layout(2, 2), m, 4, Opts(2));
  EXPECT_EQ(plan.adapter_params, 2 * 1948);
  EXPECT_EQ(plan.stages[0].adapter_bytes, 1948 * 16);
  EXPECT_EQ(plan.stages[1].adapter_bytes, 1948 * 16);
  // full copies: tp does not divide them; pp = 1 holds both layers
  EXPECT_EQ(PlanMemory(Layout(1, 1), m, 1, Opts(2)).stages[0].adapter_bytes, 2 * 1948 * 16);
  auto lora = Layout(2, 2);
  lora.adapter.method = "lora";
  EXPECT_EQ(PlanMemory(lora, m, 4, Opts(2)).stages[0].adapter_bytes, 1024 * 16);
}

TEST(MemoryPlan, MicroBatchesInFlight1f1bVsGpipe) {
  // 1F1B: stage i of p keeps min(p - i, m); GPipe keeps all m
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 0, 8), 4);
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 1, 8), 3);
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 2, 8), 2);
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 3, 8), 1);
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 0, 2), 2);  // fewer micro-batches than stages
  EXPECT_EQ(MicroBatchesInFlight("1f1b", 4, 3, 2), 1);
  for (int stage = 0; stage < 4; ++stage) EXPECT_EQ(MicroBatchesInFlight("gpipe", 4, stage, 8), 8);
  EXPECT_THROW(MicroBatchesInFlight("zigzag", 4, 0, 8), Error);

  // in a plan: m = 32 / (8 * 1) = 4 micro-batches, p = 2
  const auto m = Small();
  auto f = PlanMemory(Layout(2, 2, "1f1b"), m, 4, Opts(2));
  auto g = PlanMemory(Layout(2, 2, "gpipe"), m, 4, Opts(2));
  EXPECT_EQ(f.micro_batches, 4);
  EXPECT_EQ(f.stages[0].in_flight, 2);
  EXPECT_EQ(f.stages[1].in_flight, 1);
  EXPECT_EQ(g.stages[0].in_flight, 4);
  EXPECT_EQ(g.stages[1].in_flight, 4);
  EXPECT_DOUBLE_EQ(f.bubble(), 1.0 / 5.0);  // (p-1)/(m+p-1)
  EXPECT_DOUBLE_EQ(BubbleFraction(1, 4), 0.0);
  EXPECT_DOUBLE_EQ(BubbleFraction(8, 1), 7.0 / 8.0);
}

TEST(MemoryPlan, ActivationsAndLogits) {
  // s*b*h*(10 + 24/t + 5*a*s/(h*t)), s 8, b 2, h 16, a 4:
  //   t = 2: 256*(10 + 12 + 5) = 6912 bytes (bf16), 13824 (f32); t = 1: 256*(10 + 24 + 10) = 11264
  EXPECT_EQ(ActivationBytesPerLayer(8, 2, 16, 4, 2, 2), 6912);
  EXPECT_EQ(ActivationBytesPerLayer(8, 2, 16, 4, 2, 4), 13824);
  EXPECT_EQ(ActivationBytesPerLayer(8, 2, 16, 4, 1, 2), 11264);

  // plan: s 8, b 8, t 2: per layer 8*8*16*27 = 27648 bytes; 1 layer per stage
  const auto m = Small();
  auto f = PlanMemory(Layout(2, 2, "1f1b"), m, 4, Opts(2));
  EXPECT_EQ(f.stages[0].activation_bytes, 27648 * 2);  // 2 in flight
  EXPECT_EQ(f.stages[1].activation_bytes, 27648 * 1);
  // logits on the last stage only: b*s*V/t*4 = 8*8*32*4 = 8192 fp32 bytes per micro-batch in
  // flight, plus one bf16 copy (b*s*V/t*2 = 4096)
  EXPECT_EQ(f.stages[0].logits_bytes, 0);
  EXPECT_EQ(f.stages[1].logits_bytes, 8192 + 4096);
  // GPipe keeps the logits of all 4 micro-batches
  auto g = PlanMemory(Layout(2, 2, "gpipe"), m, 4, Opts(2));
  EXPECT_EQ(g.stages[0].activation_bytes, 27648 * 4);
  EXPECT_EQ(g.stages[1].logits_bytes, 8192 * 4 + 4096);
  EXPECT_EQ(f.stages[1].total_bytes(), 1712 * 2 + 1948 * 16 + 27648 + 8192 + 4096);
}

TEST(MemoryPlan, RecomputationKeepsOnlyLayerInputs) {
  // 2 layers at tp 1, pp 1, s 8, b 8, bf16: 11264 * 4 = 45056 bytes per layer per micro-batch
  // (b = 8 is 4x the b = 2 above); a layer input is s*b*D*e = 8*8*16*2 = 2048 bytes; 1F1B on
  // one stage keeps 1 micro-batch in flight.
  const auto m = Small();
  auto c = Layout(1, 1);
  const int64_t full = 45056, input = 2048;
  EXPECT_EQ(PlanMemory(c, m, 1, Opts(2)).stages[0].activation_bytes, 2 * full);
  c.train.recompute_layers = 1;  // one layer keeps its input; one full layer while it reruns
  EXPECT_EQ(PlanMemory(c, m, 1, Opts(2)).stages[0].activation_bytes, full + input + full);
  c.train.recompute_layers = 5;  // more than the stage has: all of them
  auto all = PlanMemory(c, m, 1, Opts(2));
  EXPECT_EQ(all.recompute_layers, 2);
  EXPECT_EQ(all.stages[0].activation_bytes, 2 * input + full);
  EXPECT_NE(FormatPlan(all, "small").find("recompute 2 layer(s) per stage"), std::string::npos);
  // in flight multiplies what is kept, not the one rerun layer
  EXPECT_EQ(ActivationBytesPerStage(full, 2, 2, input, 3), 3 * 2 * input + full);
}

TEST(MemoryPlan, StageRanksAndDataParallel) {
  // world 8 = tp 2 x pp 2 x dp 2: stage 0 = ranks {0,1} (dp 0) and {4,5} (dp 1)
  const auto m = Small();
  auto c = Layout(2, 2);
  c.train.micro_batch = 4;  // 32 / (4 * 2) = 4 micro-batches
  auto plan = PlanMemory(c, m, 8, Opts(2));
  EXPECT_EQ(plan.dp, 2);
  EXPECT_EQ(plan.micro_batches, 4);
  EXPECT_EQ(plan.stages[0].ranks, (std::vector<int64_t>{0, 1, 4, 5}));
  EXPECT_EQ(plan.stages[1].ranks, (std::vector<int64_t>{2, 3, 6, 7}));
}

TEST(MemoryPlan, PresetsHaveTheHuggingFaceParameterCounts) {
  EXPECT_EQ(LlamaPreset("llama2-7b").NumParams(), 6738415616);
  EXPECT_EQ(LlamaPreset("llama2-13b").NumParams(), 13015864320);
  EXPECT_EQ(LlamaPreset("llama2-70b").NumParams(), 68976648192);
  EXPECT_EQ(LlamaPreset("llama2-70b").num_key_value_heads, 8);
  ExpectErrorWith([] { LlamaPreset("llama3-8b"); }, "unknown model preset");
}

// The newer presets against the published models. Dims: the config.json of each model on the
// Hugging Face hub (meta-llama/Llama-3.1-8B, meta-llama/Llama-3.1-70B, mistralai/Mistral-7B-v0.3,
// Qwen/Qwen2.5-7B); counts: their model cards (8.03B, 70.6B, 7.25B; Qwen2.5-7B's card says
// 7.61B, 6.53B without embeddings). The count is computed here from the dims with a plain
// formula, independently of the planner, checked against the card within 0.1%, and the
// planner's preset must have the same dims and give the same count.
struct Published {
  const char* preset;
  int64_t hidden, intermediate, layers, heads, kv_heads, vocab;
  bool tied, qkv_bias;
  double card_params;
};

TEST(MemoryPlan, NewerPresetsMatchThePublishedConfigsAndCounts) {
  const Published models[] = {
      {"llama3.1-8b", 4096, 14336, 32, 32, 8, 128256, false, false, 8.03e9},
      {"llama3.1-70b", 8192, 28672, 80, 64, 8, 128256, false, false, 70.6e9},
      {"mistral-7b", 4096, 14336, 32, 32, 8, 32768, false, false, 7.25e9},
      {"qwen2.5-7b", 3584, 18944, 28, 28, 4, 152064, false, true, 7.61e9},
  };
  for (const auto& m : models) {
    SCOPED_TRACE(m.preset);
    const double d = m.hidden, hd = d / m.heads, v = m.vocab;
    const double per_layer = d * m.heads * hd           // q
                             + 2 * d * m.kv_heads * hd  // k, v
                             + m.heads * hd * d         // o
                             + 3 * d * m.intermediate   // gate, up, down
                             + 2 * d                    // two RMSNorms
                             + (m.qkv_bias ? (m.heads + 2.0 * m.kv_heads) * hd : 0.0);
    const double count = v * d * (m.tied ? 1 : 2) + m.layers * per_layer + d;
    EXPECT_LT(std::abs(count - m.card_params) / m.card_params, 1e-3) << count << " vs the card's " << m.card_params;
    const LlamaConfig c = LlamaPreset(m.preset);
    EXPECT_EQ(c.hidden_size, m.hidden);
    EXPECT_EQ(c.intermediate_size, m.intermediate);
    EXPECT_EQ(c.num_hidden_layers, m.layers);
    EXPECT_EQ(c.num_attention_heads, m.heads);
    EXPECT_EQ(c.num_key_value_heads, m.kv_heads);
    EXPECT_EQ(c.vocab_size, m.vocab);
    EXPECT_EQ(c.tie_word_embeddings, m.tied);
    EXPECT_EQ(c.qkv_bias, m.qkv_bias);
    EXPECT_EQ(static_cast<double>(c.NumParams()), count);
    // the plan's base weights: tp ranks of one stage hold every sharded weight once (biases
    // included), each its own copy of the norms, and an LM head of its own (not tied here)
    const int64_t tp = 4;
    EXPECT_EQ(static_cast<double>(tp * BaseElementsPerRank(c, tp, 1, 0)),
              count + (tp - 1) * (m.layers * 2 * d + d));
  }
  // Qwen2.5-7B's non-embedding count on its card: 6.53B
  const LlamaConfig q = LlamaPreset("qwen2.5-7b");
  const double non_embedding = static_cast<double>(q.NumParams() - 2 * q.vocab_size * q.hidden_size);
  EXPECT_LT(std::abs(non_embedding - 6.53e9) / 6.53e9, 1e-3);
  ExpectErrorWith([] { LlamaPreset("llama3.1-405b"); }, "llama3.1-8b, llama3.1-70b, mistral-7b, qwen2.5-7b");
}

TEST(MemoryPlan, Llama7bAtTp8Pp2) {
  // stage 0: 16 layers x ((4*4096^2 + 3*4096*11008)/8 + 2*4096) + 32000*4096/8 elements, bf16
  auto c = Layout(8, 2);
  c.train.micro_batch = 1;
  auto plan = PlanMemory(c, LlamaPreset("llama2-7b"), 16, Opts(2));
  EXPECT_EQ(plan.stages[0].base_bytes, (16 * (202375168 / 8 + 8192) + 16384000) * 2);
  EXPECT_EQ(plan.stages[1].base_bytes, (16 * (202375168 / 8 + 8192) + 4096 + 16384000) * 2);
  EXPECT_EQ(plan.micro_batches, 32);
  EXPECT_EQ(plan.stages[0].ranks, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(MemoryPlan, LayoutsThatDoNotDivideAreRejectedLikeTheTrainer) {
  const auto l7 = LlamaPreset("llama2-7b");
  // 32 heads are not divisible by tp = 3 (world 6 = 3 x 2 x 1)
  ExpectErrorWith([&] { PlanMemory(Layout(3, 2), l7, 6, Opts(2)); },
                  "num_attention_heads = 32 is not divisible by parallel.tp = 3");
  // 12 ranks are not a multiple of tp*pp = 16
  ExpectErrorWith([&] { PlanMemory(Layout(8, 2), l7, 12, Opts(2)); }, "world size 12");
  // 32 layers over pp = 3
  ExpectErrorWith([&] { PlanMemory(Layout(1, 3), l7, 3, Opts(2)); }, "num_hidden_layers = 32");
  // 70B: 64 query heads divide by 16, its 8 kv heads do not: tp is capped at 8
  ExpectErrorWith([&] { PlanMemory(Layout(16, 1), LlamaPreset("llama2-70b"), 16, Opts(2)); },
                  "num_key_value_heads = 8 is not divisible by parallel.tp = 16 (tp may not exceed the number of "
                  "kv heads)");
  // global batch 32 over micro_batch 8 x dp 8
  ExpectErrorWith([&] { PlanMemory(Layout(1, 1), l7, 8, Opts(2)); }, "train.global_batch");
}

TEST(MemoryPlan, FitsAndReport) {
  auto c = Layout(8, 2);
  c.train.micro_batch = 1;
  auto opts = Opts(2);
  opts.seq_len = 128;
  auto plan = PlanMemory(c, LlamaPreset("llama2-70b"), 16, opts);
  EXPECT_DOUBLE_EQ(plan.usable_bytes(), 0.9 * 80.0 * 1024 * 1024 * 1024);
  for (const auto& s : plan.stages) EXPECT_TRUE(plan.Fits(s)) << s.stage << ": " << s.total_bytes();
  const auto text = FormatPlan(plan, "llama2-70b");
  EXPECT_NE(text.find("world = tp x pp x dp = 8 x 2 x 1 = 16"), std::string::npos) << text;
  EXPECT_NE(text.find("rank  = tp_rank + tp*(pp_rank + pp*dp_rank)"), std::string::npos) << text;
  opts.gpu_gib = 8;  // 70B on 16 GPUs of 8 GiB does not fit
  auto small = PlanMemory(c, LlamaPreset("llama2-70b"), 16, opts);
  EXPECT_FALSE(small.Fits(small.stages[0]));
  EXPECT_NE(FormatPlan(small, "llama2-70b").find("does NOT fit"), std::string::npos);
  EXPECT_EQ(FormatBytes(17), "17 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(3.0 * 1024 * 1024 * 1024), "3.00 GiB");
}
