// Run configuration: typed structs, one source of truth for each option's name, default and
// help (VisitConfig below). Loaded from a TOML file ([section] key = value) and then
// `--section.key=value` command-line overrides; Validate() checks what can be checked without
// the model, ValidateAgainstModel() the divisibility constraints of the parallel layout.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace more {

struct LlamaConfig;

struct ModelConfig {
  std::string path = "";           // HF directory: config.json + *.safetensors (+ tokenizer.model)
  std::string dtype = "auto";      // base weights: auto (bf16 on GPU and on CPUs with native bf16, else f32) | float32 | bfloat16
  std::string device = "cpu";      // cpu | cuda
  std::string attention = "auto";  // auto (fused where available) | measure (timed at start-up:
                                   // model/attention_choice.h) | fused | composed
};

struct AdapterConfig {
  std::string method = "more";     // more | lora (plain LoRA of fixed rank: the baseline)
  int64_t rank = 8;                // max rank r (MoRE: experts are ranks 1..r)
  double alpha = 16.0;             // LoRA alpha; scale alpha / r
  double dropout = 0.05;           // dropout on the adapter input
  std::string targets = "q,k,v,o,gate,up,down";
  std::string scaling = "paper";   // paper (r_t/|T|) | none | per_component
  std::string selection = "ste";   // ste (hard argmax + straight-through) | soft (ablation)
  double lambda_cl = 0.1;          // weight of the contrastive loss
  double tau = 0.05;               // contrastive temperature
  std::string init_from = "";      // a PEFT LoRA directory to start from (ckpt/peft_import.h)
  std::string experts = "";        // ranks that are experts, ascending ("2,4,6,8"); empty = 1..r
  std::string gate_input = "task"; // task (e_t per task) | shared (one learned input: ablation)
  std::string gate = "learned";    // learned (the paper: the gate trains through the STE) |
                                   // frozen_at_init (the released code: ranks fixed at init)
  std::string task_emb_init = "kaiming";  // kaiming (N(0, 2/d_in), the paper) | normal (N(0, std^2))
  double task_emb_std = 0.01;      // std of task_emb_init = normal
  std::string dtype = "float32";   // compute dtype of A/B: float32 | bfloat16 (needs a bf16 base; the
                                   // parameters, gradients, optimizer and checkpoints stay fp32)
};

struct DataConfig {
  std::string train = "";          // shard directory or files (comma separated)
  std::string eval = "";           // eval shard directory (empty: same directory, split "eval")
  std::string tokenizer = "";      // tokenizer file the shards were made with; empty = the model's (tokenizer_paths)
  std::string tasks = "";          // comma-separated subset of tasks; empty = all
  int64_t bucket = 16;             // pad sequence lengths to a multiple of this
  std::string sampling = "paper";  // paper | uniform | proportional | temperature
  double temperature = 2.0;        // for sampling = temperature
  int64_t prefetch = 4;            // micro-batches prefetched by the loader thread
  bool packing = false;            // same-task sequence packing of training micro-batches (sequence_packing.h)
  int64_t pack_len = 0;            // packed rows' longest length; 0 = the shards' max_len (needs packing)
};

struct TrainConfig {
  int64_t steps = 1000;            // optimizer steps
  int64_t global_batch = 32;       // samples per optimizer step over all data-parallel ranks
  int64_t micro_batch = 8;         // samples per micro-batch per rank
  double lr = 3e-4;
  int64_t warmup = 500;            // linear warmup steps, then linear decay to min_lr_ratio*lr
  double min_lr_ratio = 0.0;
  double weight_decay = 0.0;       // AdamW decoupled decay (adapter A/B and gate weights only)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double grad_clip = 1.0;          // global L2 norm; 0 = off
  int64_t seed = 42;
  int64_t log_every = 10;
  std::string out_dir = "runs/default";  // metrics.jsonl, resolved config, exports
  int64_t threads = 0;             // intra-op threads per rank; 0 = cores / local ranks
  int64_t recompute_layers = 0;    // activation recomputation: first N layers of each stage; 0 = off
  std::string nan_policy = "stop"; // stop | skip (skip the step, count it, stop after 10 in a row)
  bool progress = true;            // rank-0 progress bar on a terminal
  bool dump_grads = false;         // write synced adapter grads per step (equivalence tests)
};

struct EvalConfig {
  int64_t every = 100;             // steps between evaluations; 0 = only at the end
  int64_t max_samples = 0;         // per task; 0 = all
  int64_t batch = 32;              // sequences per scoring forward
  bool at_start = true;            // evaluate the untrained adapters first (baseline)
  bool dump = false;               // also write <out_dir>/eval/step-N.jsonl: every scored sequence
};

struct CheckpointConfig {
  std::string dir = "";            // empty: <train.out_dir>/checkpoints
  int64_t every = 100;             // steps between checkpoints; 0 = only at the end
  int64_t keep_last = 3;
  bool resume = true;              // resume from <dir>/latest when present
  std::string allow_changes = "";  // comma-separated ResumeGuardedKeys() allowed to differ from
                                   // the checkpoint's on resume, or "all"; empty = none
};

// The settings that change what a resumed run optimises without changing any tensor shape:
// resuming with another value is refused (naming the key) unless ckpt.allow_changes lists it.
const std::vector<std::string>& ResumeGuardedKeys();

// Few-shot domain transfer (paper Sec. 5): start from a trained MoRE checkpoint; tasks of this
// run's shards that the checkpoint lacks get the task embeddings of a named source task.
struct TransferConfig {
  std::string from = "";           // checkpoint: a step directory or a checkpoint root (its latest)
  std::string tasks = "";          // new=source pairs, comma separated: "review=sentiment"
};

struct ParallelConfig {
  int64_t tp = 1;
  int64_t pp = 1;
  int64_t dp = 0;                  // 0 = world / (tp * pp)
  std::string schedule = "1f1b";   // 1f1b | gpipe
  double timeout_s = 600;          // watchdog on every collective / p2p wait (dist/watchdog.h); 0 = off
};

struct Config {
  ModelConfig model;
  AdapterConfig adapter;
  DataConfig data;
  TrainConfig train;
  EvalConfig eval;
  CheckpointConfig ckpt;
  TransferConfig transfer;
  ParallelConfig parallel;

  // Checks value ranges and choices; throws more::Error naming the key and the problem.
  void Validate() const;
  // Layout against the model and world: heads % tp, kv_heads % tp, layers % pp, batch % ...
  void ValidateAgainstModel(const LlamaConfig& m, int world_size) const;
  int64_t dp_size(int world_size) const { return parallel.dp > 0 ? parallel.dp : world_size / (parallel.tp * parallel.pp); }
  std::vector<std::string> TargetModules() const;
  std::vector<int64_t> ExpertRanks() const;
  // transfer.tasks parsed: (new task, source task) pairs.
  std::vector<std::pair<std::string, std::string>> TransferPairs() const;  // adapter.experts parsed (empty = all ranks)
  std::string checkpoint_dir() const;
  // The tokenizer files the shards may have been made with (their tokenizer_hash is one of
  // these files' hash): data.tokenizer if set, else those of <model.path>/tokenizer.model and
  // <model.path>/tokenizer.json that exist (a model may ship both, e.g. Mistral).
  std::vector<std::string> tokenizer_paths() const;
};

// One entry per option: name "section.key", a pointer-like accessor and help text.
// F is called as f(name, field&, help) for every field.
template <typename C, typename F>
void VisitConfig(C& c, F&& f);

// Loads defaults <- TOML file (if non-empty) <- overrides ("section.key=value" strings, as given
// on the command line without the leading "--"). Unknown keys and bad values are errors that
// name the key, the file and the expected type.
Config LoadConfig(const std::string& toml_path, const std::vector<std::string>& overrides);
std::string ConfigToToml(const Config& c);
nlohmann::json ConfigToJson(const Config& c);
Config ConfigFromJson(const nlohmann::json& j);
// Help text: every option with its default and help.
std::string ConfigHelp();

}  // namespace more

#include "more/config/config_fields.h"
