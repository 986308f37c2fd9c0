// Memory plan of a parallel layout (torch-free: src/core/memory_plan.cpp is part of more_base;
// used by the more_plan tool): what one rank of each pipeline stage holds for a LLaMA model
// under world = tp x pp x dp, so a layout can be chosen before a job is launched. All ranks of
// a stage (its tp x dp ranks) hold the same amounts. Every number is bytes PER RANK; notation:
//   L layers, D hidden, I intermediate, H heads, KV kv heads, hd = D/H, V vocab,
//   t = tp, p = pp, stage i holds layers [i*L/p, (i+1)*L/p), T tasks, r adapter rank,
//   s sequence length (padded), b micro_batch, m = global_batch / (b * dp) micro-batches per
//   step per replica, e = bytes per base element (bf16 2, f32 4).
//
// Base weights (frozen, base dtype e; the sharding of src/model/llama.cpp):
//   per layer: (q D*H*hd + k,v 2*D*KV*hd + o H*hd*D + gate,up,down 3*D*I
//               [+ q,k,v biases (H + 2*KV)*hd with qkv_bias]) / t   (column- and
//              row-parallel shards) + 2*D (the two RMSNorm weights, replicated on every rank)
//   first stage: + V*D/t (vocab-parallel embedding)
//   last stage:  + D (final norm) + V*D/t (vocab-parallel LM head; a tied LM head is loaded
//                as its own copy, so it counts the same)
//   Summed over all ranks of one replica this is NumParams() plus the replicated norms.
// Adapters (fp32, a FULL copy of the stage's adapters on every rank, see more_adapter.h), per
// adapted module W0 [d_out, d_in] in adapter.targets:
//   LoRA: A [r, d_in] + B [d_out, r]
//   MoRE: + E [T, d_in] + gate_w [r, d_in] + gate_b [r]
//   bytes = 4 * 4 * params: parameter, gradient, AdamW m and v (the flat buffers of
//   AdapterSet / FlatAdamW; the small weight-decay mask is not counted).
// Activations (Megatron-LM's estimate for a transformer layer under tensor parallelism without
// sequence parallelism or recomputation, Korthikanti et al. 2022), per layer per micro-batch:
//   s*b*D*(10 + 24/t + 5*H*s/(D*t)) bytes at 2-byte activations, scaled by e/2 for f32.
//   It is the GPT layer's count (4D MLP); used as is for LLaMA's SwiGLU MLP it is an estimate.
//   Times the micro-batches whose activations are alive at once on stage i:
//     1f1b: min(p - i, m)      gpipe: m
//   With recomputation of R = min(train.recompute_layers, layers) layers of a stage, those keep
//   only their input, s*b*D*e bytes, and one layer's full activations exist during the backward
//   that reruns it:  in_flight * ((layers - R) * full + R * s*b*D*e) + (R > 0 ? full : 0).
// LM-head logits (last stage): b*s*V/t fp32 values per micro-batch in flight on the last stage
//   (the fused loss keeps exp(l - m) in the logits' own buffer and turns it into the gradient
//   in place), plus, with a 16-bit base, one b*s*V/t copy in the base dtype (the GEMM's bf16
//   logits before the fp32 cast, or the gradient's cast for the backward GEMM):
//   4 * b*s*V/t * in_flight + (e < 4 ? e * b*s*V/t : 0).
// Total = base + adapters + activations + logits; it fits when total <= (1 - reserve) * GPU
// memory (reserve 10%: CUDA context, NCCL buffers, allocator fragmentation). Not counted:
// kernel temporaries, pipeline receive buffers, the data loader.
// Pipeline bubble fraction (both schedules): (p - 1) / (m + p - 1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "more/model/hf_config.h"

namespace more {

struct Config;

// Hugging Face config values of "llama2-7b" | "llama2-13b" | "llama2-70b" | "llama3.1-8b" |
// "llama3.1-70b" | "mistral-7b" (v0.3) | "qwen2.5-7b"; throws more::Error otherwise.
LlamaConfig LlamaPreset(const std::string& name);
std::vector<std::string> LlamaPresetNames();

struct PlanOptions {
  int64_t seq_len = 128;     // s: padded tokens per sequence (the shards' max length)
  int64_t num_tasks = 8;     // T: rows of each task embedding E
  int64_t elem_bytes = 2;    // e: bytes per base weight / activation element (2 bf16, 4 f32)
  double gpu_gib = 80;       // device memory per rank, GiB (2^30 bytes)
  double reserve = 0.10;     // fraction of it kept back for the CUDA context / fragmentation
};

struct StagePlan {
  int64_t stage = 0;
  int64_t first_layer = 0, last_layer = 0;  // layers [first_layer, last_layer)
  std::vector<int64_t> ranks;               // world ranks of this stage (its tp x dp ranks)
  int64_t in_flight = 0;                    // micro-batches whose activations are alive at once
  int64_t base_bytes = 0;                   // frozen base weights (this rank's shards)
  int64_t adapter_bytes = 0;                // adapters: param + grad + AdamW m + v, fp32
  int64_t activation_bytes = 0;             // per layer per micro-batch x layers x in_flight
  int64_t logits_bytes = 0;                 // last stage only
  int64_t total_bytes() const { return base_bytes + adapter_bytes + activation_bytes + logits_bytes; }
};

struct MemoryPlan {
  LlamaConfig model;
  PlanOptions options;
  int64_t tp = 1, pp = 1, dp = 1;
  int64_t micro_batch = 1;        // b
  int64_t global_batch = 1;
  int64_t micro_batches = 1;      // m, per step per data-parallel replica
  std::string schedule;           // 1f1b | gpipe
  int64_t recompute_layers = 0;   // per stage (train.recompute_layers, at most the stage's layers)
  std::string method;             // more | lora
  int64_t rank = 0;               // adapter rank r
  std::vector<std::string> targets;
  int64_t adapter_params = 0;     // adapter parameters of the whole model (all stages)
  std::vector<StagePlan> stages;  // one per pipeline stage
  double usable_bytes() const;    // (1 - reserve) * gpu_gib * 2^30
  bool Fits(const StagePlan& s) const { return static_cast<double>(s.total_bytes()) <= usable_bytes(); }
  double bubble() const;
};

// ---- the formulas of the header comment, one function each -------------------------------
// rank = tp_rank + tp * (pp_rank + pp * dp_rank)
int64_t WorldRank(int64_t tp, int64_t pp, int64_t tp_rank, int64_t pp_rank, int64_t dp_rank);
// Base weight elements on one rank of stage `stage` (multiply by e for bytes).
int64_t BaseElementsPerRank(const LlamaConfig& m, int64_t tp, int64_t pp, int64_t stage);
// Adapter parameters of one layer (all of `targets`); more = false: LoRA (A and B only).
int64_t AdapterParamsPerLayer(const LlamaConfig& m, const std::vector<std::string>& targets, bool more,
                              int64_t rank, int64_t num_tasks);
// Megatron-LM per layer per micro-batch activation bytes (see the header comment).
int64_t ActivationBytesPerLayer(int64_t s, int64_t b, int64_t hidden, int64_t heads, int64_t tp,
                                int64_t elem_bytes);
// A stage's activation bytes: `layers` layers of `act_layer` bytes each, `recomputed` of which
// keep only their input (`input_bytes`), times `in_flight`, plus one layer while recomputing.
int64_t ActivationBytesPerStage(int64_t act_layer, int64_t layers, int64_t recomputed, int64_t input_bytes,
                                int64_t in_flight);
// Micro-batches alive at once on stage `stage` of p: 1f1b min(p - stage, m); gpipe m.
int64_t MicroBatchesInFlight(const std::string& schedule, int64_t pp, int64_t stage, int64_t m);
// (p - 1) / (m + p - 1)
double BubbleFraction(int64_t pp, int64_t m);

// The whole plan. Validates the layout first with cfg.ValidateAgainstModel(model, world) (the
// trainer's own check and errors: heads, kv heads, intermediate and vocab % tp, layers % pp,
// global_batch % (micro_batch * dp), world % (tp * pp)).
MemoryPlan PlanMemory(const Config& cfg, const LlamaConfig& model, int world, const PlanOptions& opt);

// "12.34 GiB", "512.0 MiB", "6.6 KiB", "17 B".
std::string FormatBytes(double bytes);
// The report more_plan prints: model, layout formula and groups, step, one row per stage.
std::string FormatPlan(const MemoryPlan& plan, const std::string& model_name);

}  // namespace more
