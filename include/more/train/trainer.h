// Trainer: builds everything a run needs from a Config and a ProcessGrid (tokenizer, shards,
// sampler + streaming loader, frozen base stage, adapters, optimizer, checkpoints, evaluator),
// then runs optimizer steps:
//   zero grads; for each of global_batch / (micro_batch * dp) micro-batches:
//     forward (single task), (L / n_micro).backward()
//   all-reduce adapter grads (stage tp x dp group) -> clip -> non-finite policy -> AdamW
// Metrics go to <out_dir>/metrics.jsonl (rank 0): one "train" line every log_every steps and an
// "eval" line per evaluation; a progress bar on a terminal.
#pragma once
#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "more/adapter/adapter_record.h"
#include "more/adapter/adapter_set.h"
#include "more/ckpt/checkpoint.h"
#include "more/config/config.h"
#include "more/data/shard_set.h"
#include "more/data/streaming_loader.h"
#include "more/dist/process_grid.h"
#include "more/eval/evaluator.h"
#include "more/model/hf_config.h"
#include "more/model/llama.h"
#include "more/train/metrics_log.h"
#include "more/train/optimizer.h"
#include "more/train/pipeline.h"

namespace more {

// Sets this rank's intra-op threads (libtorch and the BLAS library) and returns the count:
// `requested` if > 0, else the node's cores divided among its local ranks, capped at the cores
// the rank may run on. Warns when the count exceeds those cores (a rank bound by mpirun).
int SetComputeThreads(int64_t requested, int world_rank);

// The base weights' dtype of model.dtype on model.device: bfloat16 -> bf16; float32 -> f32;
// auto -> bf16 on cuda; on the CPU bf16 where it has native bf16 matmuls (AVX512-BF16 or
// AMX-BF16, enabled by the OS) and this LibTorch has oneDNN, else f32 (core/cpu_features.h;
// MORE_CPU_BF16=0/1 forces the CPU answer). `reason` says why, for the start-up log.
struct BaseDtypeChoice {
  torch::ScalarType dtype = torch::kFloat32;
  std::string reason;
};
BaseDtypeChoice ResolveBaseDtype(const std::string& dtype, const std::string& device);
torch::ScalarType BaseDtype(const std::string& dtype, const std::string& device);

struct StepResult {
  int64_t step = 0;   // steps completed after this one
  double loss = 0, gen = 0, cl = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0;      // tokens (incl. prompts) processed by all data-parallel replicas
  int64_t grid_tokens = 0;  // rows x padded length summed: the positions the model computed, padding included
  double seconds = 0;
  bool skipped = false;  // non-finite and nan_policy = skip
  std::vector<int> tasks;  // task of each micro-batch
};

// SIGTERM (pre-emption, scontrol requeue) and SIGUSR1 (Slurm's --signal warning before a time
// limit) set a flag that the training loop reads at each step boundary: save a checkpoint, exit 0.
// more_train installs this first thing, so a signal during start-up (model loading can take
// minutes) is not fatal either: the run stops after its first step. Trainer::Run installs it too.
void InstallStopSignalHandlers();

class Trainer {
 public:
  Trainer(Config cfg, const ProcessGrid& grid);
  ~Trainer();

  // Resumes from the checkpoint the constructor found (<ckpt>/latest when ckpt.resume is on; its
  // adapter record is what the adapters were built from): checks it against this run, loads
  // adapters, optimizer and sampler. Returns the step resumed at (0 if none).
  // Without a checkpoint of its own and with transfer.from set, starts from that checkpoint's
  // adapters and gates instead (few-shot transfer; LoadTransfer) and returns 0.
  int64_t MaybeResume();
  StepResult Step();
  // The whole run: evaluation at start, steps, periodic eval/checkpoints, final checkpoint,
  // eval and export. Returns the last evaluation.
  std::vector<TaskScore> Run();
  std::vector<TaskScore> Evaluate();
  std::string SaveCheckpoint();

  int64_t step() const { return step_; }
  AdapterSet& adapters() { return *adapters_; }
  const LlamaStage& stage() const { return *stage_; }
  const Config& config() const { return cfg_; }
  const std::vector<std::string>& task_names() const { return task_names_; }
  // What the adapters compute (adapter/adapter_record.h), saved in every checkpoint.
  const AdapterRecord& adapter_record() const { return record_; }
  StreamingLoader& loader() { return *loader_; }  // benchmarks read batches directly
  const ShardSet& train_shards() const { return *train_; }
  const ProcessGrid& grid() const { return grid_; }
  FlatAdamW& optimizer() { return *opt_; }
  torch::Device device() const { return device_; }

 private:
  void Log(const nlohmann::json& j);
  // World rank 0: opens metrics.jsonl for a run at step_, dropping rows of steps it will re-run.
  void OpenMetrics();
  nlohmann::json ModelFingerprint() const;    // what a checkpoint must match to be resumed
  nlohmann::json AdapterFingerprint() const;  // of this run's config
  static nlohmann::json AdapterFingerprintOf(const AdapterRecord& r);
  // The guarded keys (ResumeGuardedKeys) whose value differs from the checkpoint's resolved
  // config `saved` (keys it predates are skipped), and whether ckpt.allow_changes lets each differ.
  struct GuardedChange {
    std::string key;
    nlohmann::json was, is;
    bool allowed = false;
  };
  std::vector<GuardedChange> GuardedChanges(const nlohmann::json& saved) const;
  // The record of the checkpoint being resumed (resume_), with the changes ckpt.allow_changes
  // allows applied (each one logged).
  AdapterRecord ResumedRecord() const;
  // Refuses a resume whose ResumeGuardedKeys() differ from the checkpoint's resolved config
  // (`saved`), naming the key, unless ckpt.allow_changes lists it (then it warns).
  void CheckResumeConfig(const nlohmann::json& saved, const std::string& ckpt) const;
  // Copies A, B and the gates of the transfer checkpoint; E row of each task of this run = the
  // row of the same-named task there, or of its source in transfer.tasks (else an error).
  void LoadTransfer();
  void Progress(const StepResult& r);
  // Throws if the replicated adapters of this stage differ (CRC-32 of the flat buffer) between
  // the ranks of the stage's tp x dp group. Called on every logging step.
  void CheckReplicasInSync() const;
  // True on every rank once any rank received SIGTERM or SIGUSR1 (one all-reduce per step).
  bool StopRequested() const;
  // {module: [rank per task]} of the whole model, complete on world rank 0 (stage maps sent
  // over the pipeline group).
  nlohmann::json GatherTaskRanks() const;
  // One "ranks" metrics line: the whole task->rank map and how many modules choose
  // task-dependent ranks (collective over the pipeline group, like GatherTaskRanks).
  void LogTaskRanks();

  Config cfg_;
  const ProcessGrid& grid_;
  LlamaConfig model_cfg_;
  int32_t pad_id_ = 0;
  std::shared_ptr<ShardSet> train_;
  std::unique_ptr<ShardSet> eval_;
  std::unique_ptr<StreamingLoader> loader_;
  std::unique_ptr<AdapterSet> adapters_;
  std::unique_ptr<SafetensorsCollection> weights_;
  std::unique_ptr<LlamaStage> stage_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<FlatAdamW> opt_;
  torch::Device device_ = torch::kCPU;
  std::unique_ptr<CheckpointManager> ckpt_;
  std::unique_ptr<Evaluator> evaluator_;
  std::vector<std::string> task_names_;
  std::vector<int> trained_tasks_;  // ids of the tasks being trained (data.tasks; all if empty)
  int64_t num_modules_ = 0;
  std::string transfer_dir_;  // resolved transfer.from (empty: none)
  AdapterRecord record_;      // decided (or read from the resumed checkpoint) by the constructor
  // the checkpoint to resume (ckpt.resume and a latest one exist), read by the constructor for
  // its adapter record, consumed by MaybeResume
  std::unique_ptr<CheckpointManager::Loaded> resume_;
  std::string resume_dir_;
  int64_t n_micro_ = 1;
  int64_t step_ = 0;
  int64_t skipped_in_row_ = 0, skipped_total_ = 0;
  MetricsLog metrics_;  // world rank 0: <out_dir>/metrics.jsonl, opened by OpenMetrics
};

}  // namespace more
