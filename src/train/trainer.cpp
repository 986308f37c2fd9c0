#include "more/train/trainer.h"

#include <unistd.h>

#include <cmath>
#include <limits>
#include <filesystem>

#include <ATen/Context.h>
#include <torch/version.h>

#include "more/ckpt/export.h"
#include "more/ckpt/peft_import.h"
#include "more/ckpt/run_record.h"
#include "more/ckpt/tensor_file.h"
#include "more/core/cpu_features.h"
#include "more/core/error.h"
#include "more/core/fault.h"
#include "more/core/hash.h"
#include "more/core/proc.h"
#include "more/core/safetensors.h"
#include "more/core/strings.h"
#include "more/data/sampler.h"
#include "more/dist/device.h"
#include "more/train/loss.h"
#include "more/train/stop_signal.h"

namespace fs = std::filesystem;

namespace more {
namespace {

int LocalRanks() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
    if (const char* s = std::getenv(v)) return std::max(1, std::atoi(s));
  return 1;
}

// The seed of the random stream (adapter dropout) of one step: a function of (seed, step, data
// replica, pipeline stage) only. Tensor-parallel ranks of a stage draw the same masks for their
// replicated adapter inputs, and a resumed run - on any layout with the same dp - draws exactly
// what the uninterrupted run drew, with no generator state in the checkpoint.
uint64_t StepSeed(uint64_t seed, int64_t step, int dp_rank, int pp_rank) {
  uint64_t x = seed;
  for (uint64_t v : {static_cast<uint64_t>(step), static_cast<uint64_t>(dp_rank), static_cast<uint64_t>(pp_rank)}) {
    x ^= v + 0x9E3779B97F4A7C15ull + (x << 6) + (x >> 2);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64 finaliser
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
  }
  return x;
}

}  // namespace

int SetComputeThreads(int64_t requested, int world_rank) {
  const int64_t cores = AffinityCores();
  int64_t threads =
      requested > 0 ? requested : std::max<int64_t>(1, std::thread::hardware_concurrency() / LocalRanks());
  if (requested <= 0 && cores > 0) threads = std::min(threads, cores);
  if (cores > 0 && threads > cores)
    spdlog::warn("rank {}: {} threads but bound to {} core(s), so they share it: launch with mpirun --bind-to none "
                 "(launch/env.sh sets this) or --map-by slot:PE={}", world_rank, threads, cores, threads);
  torch::set_num_threads(static_cast<int>(threads));
  SetBlasThreads(static_cast<int>(threads));
  return static_cast<int>(threads);
}

BaseDtypeChoice ResolveBaseDtype(const std::string& dtype, const std::string& device) {
  if (dtype == "bfloat16") return {torch::kBFloat16, "model.dtype=bfloat16"};
  if (dtype != "auto") return {torch::kFloat32, "model.dtype=" + dtype};
  if (device == "cuda") return {torch::kBFloat16, "model.dtype=auto, bf16: model.device=cuda"};
  const auto cpu = CpuAutoBf16(at::hasMKLDNN());
  return {cpu.bf16 ? torch::kBFloat16 : torch::kFloat32, "model.dtype=auto, " + cpu.reason};
}

torch::ScalarType BaseDtype(const std::string& dtype, const std::string& device) {
  return ResolveBaseDtype(dtype, device).dtype;
}

Trainer::Trainer(Config cfg, const ProcessGrid& grid) : cfg_(std::move(cfg)), grid_(grid) {
  cfg_.Validate();
  SetComputeThreads(cfg_.train.threads, grid_.world_rank());
  SetFaultRank(grid_.world_rank());

  model_cfg_ = LoadLlamaConfig(cfg_.model.path);
  model_cfg_.Validate(cfg_.model.path + "/config.json");
  cfg_.ValidateAgainstModel(model_cfg_, grid_.world_size());
  const int64_t dp = grid_.layout().dp;
  n_micro_ = cfg_.train.global_batch / (cfg_.train.micro_batch * dp);

  // The shards must come from the model's tokenizer: their tokenizer_hash is the hash of the file
  // they were made with (a SentencePiece tokenizer.model, or the tokenizer.json a pre-tokenized
  // manifest names). The trainer itself needs no tokenizer library: the shards carry token ids,
  // candidate ids and special ids.
  if (!cfg_.data.tokenizer.empty() && !fs::exists(cfg_.data.tokenizer))
    throw Error(fmt::format("data.tokenizer '{}' does not exist", cfg_.data.tokenizer));
  const auto tok_files = cfg_.tokenizer_paths();
  train_ = std::make_shared<ShardSet>(SplitList(cfg_.data.train), "train");
  if (tok_files.empty()) {
    spdlog::warn("no tokenizer.model or tokenizer.json in '{}': the shards' tokenizer cannot be checked",
                 cfg_.model.path);
  } else {
    std::vector<std::string> seen;
    bool match = false;
    for (const auto& file : tok_files) {
      const std::string h = HashFileHex(file);
      match = match || h == train_->tokenizer_hash();
      seen.push_back(fmt::format("{} (hash {})", file, h));
    }
    if (!match)
      throw Error(fmt::format("shards '{}' were made with another tokenizer: their tokenizer_hash is {}, the "
                              "model's tokenizer files are {}",
                              cfg_.data.train, train_->tokenizer_hash(), fmt::join(seen, ", ")),
                  "shard the data with the model's own tokenizer (tokenizer.model with shard_data build "
                  "--tokenizer, tokenizer.json through launch/hf_tokenize.py), or set data.tokenizer");
  }
  const std::string tok_hash = train_->tokenizer_hash();
  const auto& meta = train_->shards().at(0);
  pad_id_ = meta.pad_id;
  // ShardSet::Read refuses ids >= the shards' vocab_size, so this makes every id a row of the
  // model's embedding (a model may pad its vocabulary beyond the tokenizer's, never the reverse)
  auto check_vocab = [&](const ShardSet& set, const std::string& paths) {
    const int64_t v = set.shards().at(0).vocab_size;
    if (v > model_cfg_.vocab_size)
      throw Error(fmt::format("shards '{}' use a tokenizer of {} pieces but the model's vocab_size is {}", paths, v,
                              model_cfg_.vocab_size),
                  "shard the data with the tokenizer.model that belongs to the model");
  };
  check_vocab(*train_, cfg_.data.train);
  if (meta.max_len > model_cfg_.max_position_embeddings)
    throw Error(fmt::format("shards '{}' hold samples of up to {} tokens but the model's max_position_embeddings "
                            "is {}", cfg_.data.train, meta.max_len, model_cfg_.max_position_embeddings),
                "re-shard with shard_data --max-len <= max_position_embeddings");
  model_cfg_.CheckSequenceLength(meta.max_len, fmt::format("the samples of shards '{}'", cfg_.data.train));
  for (const auto& t : train_->tasks()) task_names_.push_back(t.name);

  // task subset: unselected tasks get sampling weight 0 and are not evaluated
  std::vector<int64_t> sizes;
  for (const auto& t : train_->tasks()) sizes.push_back(t.size);
  std::vector<bool> use(task_names_.size(), cfg_.data.tasks.empty());
  for (const auto& name : SplitList(cfg_.data.tasks)) use[train_->TaskId(name)] = true;
  std::vector<int64_t> used_sizes = sizes;
  for (size_t t = 0; t < sizes.size(); ++t) {
    if (use[t]) trained_tasks_.push_back(static_cast<int>(t));
    if (!use[t]) used_sizes[t] = 0;
    else if (sizes[t] == 0)
      throw Error(fmt::format("task '{}' has no training rows in '{}'", task_names_[t], cfg_.data.train),
                  "remove it with data.tasks or rebuild the shards");
  }
  auto mode = ParseSamplingMode(cfg_.data.sampling);
  auto weights = TaskWeights(mode, used_sizes, cfg_.data.temperature);
  for (size_t t = 0; t < weights.size(); ++t)
    spdlog::info("task {:<14} size {:>6}  sampling weight ({}) {:.4f}", task_names_[t], sizes[t],
                 cfg_.data.sampling, weights[t]);
  // data.packing's row length (one owner: the loader packs to it, the log says it)
  int64_t pack_len = 0;
  if (cfg_.data.packing) {
    pack_len = cfg_.data.pack_len > 0 ? cfg_.data.pack_len : static_cast<int64_t>(meta.max_len);
    if (pack_len < static_cast<int64_t>(meta.max_len) || pack_len > model_cfg_.max_position_embeddings)
      throw Error(fmt::format("data.pack_len = {} is outside [{}, {}]: the shards' max_len (packing never splits "
                              "an example) to the model's max_position_embeddings", pack_len, meta.max_len,
                              model_cfg_.max_position_embeddings),
                  "set data.pack_len within that range, or 0 for the shards' max_len");
  }
  BatchSampler sampler(sizes, weights, static_cast<int>(cfg_.train.micro_batch), static_cast<int>(dp),
                       static_cast<uint64_t>(cfg_.train.seed));
  loader_ = std::make_unique<StreamingLoader>(train_, std::move(sampler), grid_.dp_rank(), static_cast<int>(dp),
                                              static_cast<int>(cfg_.train.micro_batch),
                                              static_cast<int>(cfg_.data.bucket), pad_id_,
                                              static_cast<int>(cfg_.data.prefetch),
                                              static_cast<int>(pack_len));
  if (cfg_.data.packing)
    spdlog::info("data.packing: each micro-batch's {} examples packed into rows of up to {} tokens "
                 "(first-fit decreasing, the row length giving the fewest positions; evaluation unpacked)",
                 cfg_.train.micro_batch, pack_len);

  // eval shards: data.eval, or eval-*.h5 next to the training shards
  std::vector<std::string> eval_paths = cfg_.data.eval.empty() ? SplitList(cfg_.data.train) : SplitList(cfg_.data.eval);
  if (!cfg_.data.eval.empty() || ShardSet::HasSplit(eval_paths, "eval")) {
    eval_ = std::make_unique<ShardSet>(eval_paths, "eval", tok_hash);
    check_vocab(*eval_, fmt::format("{}", fmt::join(eval_paths, ",")));
    std::vector<int> ids;
    for (const auto& t : eval_->tasks()) {
      auto it = std::find(task_names_.begin(), task_names_.end(), t.name);
      if (it == task_names_.end())
        throw Error(fmt::format("eval task '{}' is not a training task", t.name), "build both splits together");
      const int id = static_cast<int>(it - task_names_.begin());
      ids.push_back(use[id] ? id : -1);
    }
    evaluator_ = std::make_unique<Evaluator>(*eval_, ids, cfg_.eval.max_samples, cfg_.eval.batch);
  } else {
    spdlog::warn("no eval shards found next to '{}': evaluation disabled", cfg_.data.train);
  }

  // The adapter record (ckpt/run_record.h): a resumed run's is its checkpoint's, a fresh run
  // decides it now (a transfer run from its source's). Read once, here: everything below builds
  // from it.
  ckpt_ = std::make_unique<CheckpointManager>(cfg_.checkpoint_dir(), cfg_.ckpt.keep_last);
  if (cfg_.ckpt.resume) {
    if (grid_.is_world_root())
      for (const auto& d : ckpt_->RemoveIncomplete())
        spdlog::warn("removed '{}': an incomplete checkpoint of a save that did not finish", d);
    grid_.world().Barrier();
    if (auto latest = ckpt_->Latest()) {
      resume_dir_ = *latest;
      resume_ = std::make_unique<CheckpointManager::Loaded>(CheckpointManager::Load(*latest));
    }
  }
  if (!cfg_.transfer.from.empty()) transfer_dir_ = ResolveTransferSource(cfg_.transfer.from);
  record_ = resume_ ? ResumedRecord() : DecideAdapterRecord(cfg_, task_names_);
  const auto ao = record_.ForRun(cfg_);
  const auto& targets = record_.targets;
  // model.device=cuda: this rank's GPU is its node-local rank (made current before the grid's
  // NCCL communicators were created); base weights bf16 by default, adapters and optimizer fp32
  const bool cuda = cfg_.model.device == "cuda";
  if (cuda && grid_.world_size() > 1 && grid_.backend() != CommBackend::kNccl)
    throw Error("model.device=cuda with several ranks needs a process grid on the NCCL backend",
                "build the grid with MakeRunGrid (more_train does)");
  device_ = cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(SelectDevice("cuda", MPI_COMM_WORLD)))
                 : torch::Device(torch::kCPU);
  adapters_ = BuildAdapters(model_cfg_, ao, targets, grid_, device_);
  if (!cfg_.adapter.init_from.empty()) {  // every rank reads it; a resumed checkpoint overrides it
    const int n = ImportPeftLora(cfg_.adapter.init_from, model_cfg_, targets, *adapters_);
    spdlog::info("adapters: started from the PEFT LoRA '{}' ({} of {} modules of this stage)", cfg_.adapter.init_from,
                 n, adapters_->size());
  }
  num_modules_ = ao.more ? model_cfg_.num_hidden_layers * static_cast<int64_t>(targets.size()) : 0;

  const auto dtype_choice = ResolveBaseDtype(cfg_.model.dtype, cfg_.model.device);
  const auto dtype = dtype_choice.dtype;
  if (grid_.is_world_root()) spdlog::info("base weights {} ({})", c10::toString(dtype), dtype_choice.reason);
  if (cfg_.adapter.dtype == "bfloat16" && dtype != torch::kBFloat16)  // before the weights are read
    throw Error(fmt::format("adapter.dtype=bfloat16 needs a bf16 base, but the base weights are {} ({})",
                            c10::toString(dtype), dtype_choice.reason),
                "set model.dtype=bfloat16 (or auto on a GPU or a CPU with native bf16), or adapter.dtype=float32");
  weights_ = std::make_unique<SafetensorsCollection>(cfg_.model.path);
  stage_ = std::make_unique<LlamaStage>(model_cfg_, *weights_, grid_, adapters_.get(), dtype, device_);
  // attention at the largest shape of the run's rows: [micro_batch, local heads, longest row, head_dim]
  // (the longest row: the packed rows' length with data.packing, else max_len), up to 4 of the
  // stage's layers alive at once
  const AttentionShape att_shape{cfg_.train.micro_batch, model_cfg_.num_attention_heads / grid_.layout().tp,
                                 cfg_.data.packing ? pack_len : static_cast<int64_t>(meta.max_len),
                                 model_cfg_.head_dim(),
                                 std::clamp<int64_t>(stage_->last_layer() - stage_->first_layer(), 1, 4)};
  attention_ = ResolveAttention(cfg_.model.attention, resume_ ? resume_->state.value("attention", "") : "",
                                resume_dir_, att_shape, dtype, device_, grid_.world());
  stage_->set_attention(attention_.impl);
  if (grid_.is_world_root()) spdlog::info("{}", attention_.Describe());
  if (cfg_.adapter.dtype == "bfloat16") {
    stage_->set_adapter_dtype(torch::kBFloat16);
    if (grid_.is_world_root())
      spdlog::info("adapters compute in bf16 (adapter.dtype); parameters, gradients and optimizer state stay fp32");
  }
  stage_->SetRecompute(cfg_.train.recompute_layers);
  pipeline_ = std::make_unique<Pipeline>(*stage_, grid_, cfg_.parallel.schedule);
  AdamWOptions oo{cfg_.train.beta1, cfg_.train.beta2, cfg_.train.eps, cfg_.train.weight_decay};
  opt_ = std::make_unique<FlatAdamW>(adapters_->numel(), oo, device_);
  adapters_->RefreshSelections();  // the initial (or imported) gates' expert choices, one host read

  spdlog::info("layout: {}", grid_.Describe());
  spdlog::info("model: {} layers, hidden {}, heads {} (kv {}), vocab {}, {:.2f}M base params ({})",
               model_cfg_.num_hidden_layers, model_cfg_.hidden_size, model_cfg_.num_attention_heads,
               model_cfg_.num_key_value_heads, model_cfg_.vocab_size, model_cfg_.NumParams() / 1e6,
               c10::toString(dtype));
  spdlog::info("adapters: {} x {} modules on this stage, {} trainable params{}; {} micro-batches of {} per step",
               ao.more ? "more" : "lora", adapters_->size(), adapters_->numel() - adapters_->frozen_numel(),
               ao.frozen_gate ? fmt::format(" (and {} of the frozen gates)", adapters_->frozen_numel()) : "", n_micro_,
               cfg_.train.micro_batch);
  if (grid_.is_world_root()) {
    fs::create_directories(cfg_.train.out_dir);
    WriteFileAtomic(cfg_.train.out_dir + "/config.resolved.toml", ConfigToToml(cfg_));
    spdlog::info("resolved config:\n{}", ConfigToToml(cfg_));
  }
}

Trainer::~Trainer() = default;

void Trainer::OpenMetrics() {
  if (!grid_.is_world_root() || metrics_.is_open()) return;
  const auto path = cfg_.train.out_dir + "/metrics.jsonl";
  const int64_t dropped = metrics_.Open(path, step_);
  if (dropped > 0)
    spdlog::info("{}: dropped {} row(s) of steps after {} (this run logs them again) or torn by a crash", path,
                 dropped, step_);
}

void Trainer::Log(const nlohmann::json& j) {
  if (!grid_.is_world_root()) return;
  OpenMetrics();
  metrics_.Append(j);  // checked: a lost row is warned about (once) and the file stays valid JSONL
}

StepResult Trainer::Step() {
  const auto t0 = std::chrono::steady_clock::now();
  // fault injection for the reliability tests (core/fault.h)
  MaybeKillAt("kill", step_ + 1);
  if (FaultAt("throw", step_ + 1))
    throw Error(fmt::format("injected failure (MORE_FAIL_AT={}) at step {}", std::getenv("MORE_FAIL_AT"), step_ + 1));
  torch::manual_seed(StepSeed(static_cast<uint64_t>(cfg_.train.seed), step_ + 1, grid_.dp_rank(), grid_.pp_rank()));
  StepResult r;
  adapters_->ZeroGrad();
  // the gates' expert choices for this step's forwards: free when the last step's refresh still
  // holds, one host read when something (a load, an import) changed the gates since
  adapters_->RefreshSelections();
  // all micro-batches of the step first: the objective is normalised by the step's target tokens
  std::vector<BatchTensors> batches;
  int64_t target_tokens = 0;  // counted on the host (ToTensors)
  for (int64_t i = 0; i < n_micro_; ++i) {
    auto mb = loader_->Next();
    batches.push_back(ToTensors(mb, device_));
    target_tokens += batches.back().num_labels;
    for (auto l : mb.lengths) r.tokens += l;
    r.grid_tokens += static_cast<int64_t>(mb.RowCount()) * mb.seq_len;
    r.tasks.push_back(mb.task);
  }
  auto tokens = torch::tensor({static_cast<double>(target_tokens)}, torch::kFloat64);
  grid_.dp().AllReduceSum(tokens);
  const double dp = static_cast<double>(grid_.layout().dp);
  const double gen_scale = dp / std::max(1.0, tokens.item<double>());
  const double cl_scale = cfg_.adapter.lambda_cl / static_cast<double>(n_micro_);
  const bool contrastive = cfg_.adapter.lambda_cl > 0;
  auto sums = pipeline_->TrainStep(batches, gen_scale, cl_scale, contrastive, num_modules_);
  // gen lives on the last stage, contrastive terms on every stage: sum over the pipeline (one
  // rank per stage), then over data-parallel replicas
  auto reduced = torch::tensor({sums.gen_sum, sums.cl_sum, 0.0, 0.0}, torch::kFloat64);
  grid_.pp().AllReduceSum(reduced);
  reduced[2] = static_cast<double>(r.tokens);
  reduced[3] = static_cast<double>(r.grid_tokens);
  grid_.dp().AllReduceSum(reduced);
  r.tokens = static_cast<int64_t>(reduced[2].item<double>());  // over all data-parallel replicas
  r.grid_tokens = static_cast<int64_t>(reduced[3].item<double>());
  r.gen = reduced[0].item<double>() / std::max(1.0, tokens.item<double>());
  r.cl = reduced[1].item<double>() / (static_cast<double>(n_micro_) * dp);
  r.loss = r.gen + cfg_.adapter.lambda_cl * r.cl;
  // before the all-reduce, so every replica and stage sees the same non-finite norm
  if (FaultAt("nan", step_ + 1)) adapters_->flat_grad().fill_(std::numeric_limits<float>::quiet_NaN());
  adapters_->SyncGrads(grid_);
  if (cfg_.train.dump_grads && grid_.is_stage_root()) {
    fs::create_directories(cfg_.train.out_dir + "/grads");
    SaveTensorFile(fmt::format("{}/grads/step-{}.stage-{}.safetensors", cfg_.train.out_dir, step_ + 1,
                               grid_.pp_rank()),
                   adapters_->NamedGrads());
  }
  r.grad_norm = ClipGradNorm(adapters_->flat_grad(), cfg_.train.grad_clip, &grid_.pp());
  r.lr = LearningRate(step_, cfg_.train.steps, cfg_.train.warmup, cfg_.train.lr, cfg_.train.min_lr_ratio);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    std::vector<std::string> names;
    for (int t : r.tasks) names.push_back(task_names_.at(static_cast<size_t>(t)));
    if (cfg_.train.nan_policy == "stop")
      throw Error(fmt::format("non-finite loss {} / grad norm {} at step {} (micro-batch tasks: {})", r.loss,
                              r.grad_norm, step_ + 1, fmt::join(names, ", ")),
                  "lower train.lr, or set train.nan_policy=skip to skip such steps");
    r.skipped = true;
    ++skipped_total_;
    if (++skipped_in_row_ >= 10)
      throw Error(fmt::format("10 non-finite steps in a row (last at step {})", step_ + 1), "lower train.lr");
    spdlog::warn("step {}: non-finite loss, update skipped ({} so far)", step_ + 1, skipped_total_);
  } else {
    skipped_in_row_ = 0;
    opt_->Step(adapters_->flat(), adapters_->flat_grad(), adapters_->decay_mask(), r.lr);
    adapters_->RefreshSelections();  // the new gates' expert choices: one device-to-host read per step
  }
  r.step = ++step_;
  if (device_.is_cuda()) torch::cuda::synchronize();  // the optimizer's kernels are part of the step's time
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<TaskScore> Trainer::Evaluate() {
  if (!evaluator_) return {};
  auto scores = evaluator_->Run(*pipeline_, grid_,
                                cfg_.eval.dump ? fmt::format("{}/eval/step-{}.jsonl", cfg_.train.out_dir, step_) : "");
  nlohmann::json ranks = GatherTaskRanks();
  Log({{"type", "eval"}, {"step", step_}, {"scores", Evaluator::ToJson(scores)}, {"mean", Evaluator::Mean(scores)},
       {"task_names", task_names_}, {"task_ranks", ranks}});
  std::string line;
  for (const auto& s : scores) line += fmt::format(" {}={:.3f}", s.task, s.score);
  spdlog::info("eval @ step {}: mean {:.4f} |{}", step_, Evaluator::Mean(scores), line);
  return scores;
}

void Trainer::LogTaskRanks() {
  auto ranks = GatherTaskRanks();
  Log({{"type", "ranks"}, {"step", step_}, {"task_names", task_names_}, {"trained_tasks", trained_tasks_},
       {"task_ranks", ranks}, {"task_dependent_modules", AdapterSet::CountTaskDependent(ranks, trained_tasks_)},
       {"modules", ranks.size()}});
}

nlohmann::json Trainer::GatherTaskRanks() const {
  // every stage root sends its stage's map (JSON text) to world rank 0 over the pp group
  auto mine = adapters_->TaskRankMap(static_cast<int>(task_names_.size()));
  if (grid_.layout().pp == 1) return mine;
  const auto& pp = grid_.pp();
  if (grid_.tp_rank() != 0 || grid_.dp_rank() != 0) return mine;  // only the pp group of world rank 0
  if (pp.rank() != 0) {
    auto text = mine.dump();
    auto len = torch::tensor({static_cast<int64_t>(text.size())}, torch::kInt64);
    pp.Send(len, 0, 7001);
    auto bytes = torch::from_blob(text.data(), {static_cast<int64_t>(text.size())}, torch::kUInt8).clone();
    pp.Send(bytes, 0, 7002);
    return mine;
  }
  for (int s = 1; s < pp.size(); ++s) {
    auto len = torch::zeros({1}, torch::kInt64);
    pp.Recv(len, s, 7001);
    auto bytes = torch::empty({len.item<int64_t>()}, torch::kUInt8);
    pp.Recv(bytes, s, 7002);
    auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(bytes.data_ptr()), bytes.numel()));
    mine.update(j);
  }
  return mine;
}

void Trainer::CheckReplicasInSync() const {
  if (grid_.stage().size() == 1) return;
  auto& flat = adapters_->flat();
  const auto host = flat.to(torch::kCPU).contiguous();
  const double crc = static_cast<double>(Crc32(host.data_ptr(), host.nbytes()));
  auto range = torch::tensor({-crc, crc}, torch::kFloat64);  // one max gives both min and max
  grid_.stage().AllReduceMax(range);
  if (-range[0].item<double>() != range[1].item<double>())
    throw Error(fmt::format("adapter copies of pipeline stage {} are no longer bitwise identical across its "
                            "tp x dp ranks at step {}", grid_.pp_rank(), step_),
                "this is a bug: please report it with the layout");
}

void Trainer::Progress(const StepResult& r) {
  if (!grid_.is_world_root() || !cfg_.train.progress || !isatty(STDERR_FILENO)) return;
  const int width = 30;
  const int done = static_cast<int>(width * r.step / cfg_.train.steps);
  std::fprintf(stderr, "\r[%s%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ", std::string(done, '=').c_str(),
               std::string(width - done, ' ').c_str(), static_cast<long long>(r.step),
               static_cast<long long>(cfg_.train.steps), r.loss, r.lr, r.tokens / std::max(r.seconds, 1e-9));
  if (r.step == cfg_.train.steps) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

bool Trainer::StopRequested() const {
  // every rank must agree (one may have got the signal before the others): max over the world
  auto flag = torch::tensor({static_cast<int64_t>(StopSignalReceived())}, torch::kInt64);
  grid_.world().AllReduceMax(flag);
  return flag.item<int64_t>() != 0;
}

std::vector<TaskScore> Trainer::Run() {
  InstallStopSignalHandlers();
  MaybeResume();
  OpenMetrics();
  std::vector<TaskScore> last;
  if (step_ == 0 && num_modules_ > 0) LogTaskRanks();
  if (step_ == 0 && cfg_.eval.at_start) last = Evaluate();
  while (step_ < cfg_.train.steps) {
    auto r = Step();
    Progress(r);
    if (r.step % cfg_.train.log_every == 0 || r.step == cfg_.train.steps) {
      CheckReplicasInSync();
      // mean chosen rank per task over this stage's modules
      std::vector<double> sum(task_names_.size(), 0.0);
      const auto map = adapters_->TaskRankMap(static_cast<int>(task_names_.size()));
      for (const auto& [module, per_task] : map.items())
        for (size_t t = 0; t < sum.size(); ++t) sum[t] += per_task[t].get<double>();
      nlohmann::json ranks = nlohmann::json::object();
      for (size_t t = 0; t < sum.size(); ++t)
        ranks[task_names_[t]] = adapters_->size() ? sum[t] / static_cast<double>(adapters_->size()) : 0.0;
      // resident memory, max over all ranks (the soak test watches it for growth)
      auto rss = torch::tensor({ResidentMiB(), PeakResidentMiB()}, torch::kFloat64);
      grid_.world().AllReduceMax(rss);
      Log({{"type", "train"}, {"step", r.step}, {"loss", r.loss}, {"gen_loss", r.gen}, {"cl_loss", r.cl},
           {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"tokens_per_s", r.tokens / std::max(r.seconds, 1e-9)},
           {"tokens", r.tokens}, {"grid_tokens", r.grid_tokens}, {"step_s", r.seconds}, {"tasks", r.tasks}, {"mean_rank", ranks}, {"skipped", r.skipped},
           {"skipped_total", skipped_total_}, {"rss_mib", rss[0].item<double>()}, {"peak_rss_mib", rss[1].item<double>()}});
      if (num_modules_ > 0) LogTaskRanks();
      if (!isatty(STDERR_FILENO) || !cfg_.train.progress)
        spdlog::info("step {}/{} loss {:.4f} (gen {:.4f} cl {:.4f}) lr {:.2e} |g| {:.3f} {:.0f} tok/s", r.step,
                     cfg_.train.steps, r.loss, r.gen, r.cl, r.lr, r.grad_norm, r.tokens / std::max(r.seconds, 1e-9));
    }
    if (cfg_.eval.every > 0 && r.step % cfg_.eval.every == 0 && r.step != cfg_.train.steps) last = Evaluate();
    if (cfg_.ckpt.every > 0 && r.step % cfg_.ckpt.every == 0 && r.step != cfg_.train.steps) SaveCheckpoint();
    if (r.step != cfg_.train.steps && StopRequested()) {
      spdlog::warn("stop signal received: saving a checkpoint at step {} and exiting", step_);
      SaveCheckpoint();
      return last;
    }
  }
  const auto dir = SaveCheckpoint();
  last = Evaluate();
  if (metrics_.dropped_rows() > 0)
    spdlog::warn("{} metric row(s) could not be written to '{}' (see the first warning)", metrics_.dropped_rows(),
                 metrics_.path());
  if (grid_.is_world_root()) {
    // from the checkpoint just written: it holds every pipeline stage's adapters
    ExportCheckpoint(dir, cfg_.train.out_dir + "/export", cfg_.model.path);
    spdlog::info("adapters exported to {}/export", cfg_.train.out_dir);
  }
  return last;
}

}  // namespace more
