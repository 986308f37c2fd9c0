// more_bench: the measurements of docs/benchmarks.md (launch/bench.sh runs them all).
//
//   more_bench matmul [--bench.threads=T] [--bench.device=cuda] [--bench.dtype=D]
//                                                         libtorch matmul ceiling (fp32 CPU, bf16 GPU)
//   more_bench train  --config F [overrides] [--bench.*]  step time, tokens/s, MFU, peak RSS vs plan
//                                                         (any layout, under mpirun)
//   more_bench ratio  --config F [overrides]              MoRE vs LoRA step time, same batches
//   more_bench loader --config F [overrides]              HDF5 loader samples/s vs consumption
//   more_bench ckpt   --config F [overrides]              checkpoint write/read MB/s vs the disk
//   more_bench batches --config F [overrides]             the examples the first warmup + steps steps of
//                                                         `train` draw, as JSON lines (for peer_bench.py)
//
// bench options: --bench.warmup=N (2), --bench.steps=N (5), --bench.threads=T (matmul),
// --bench.lora_rank=R (8), --bench.seconds=S (3, loader), --bench.out=FILE (append JSON lines),
// --bench.profile=PREFIX (train: one extra step under the autograd profiler, chrome trace per rank),
// --bench.tag=NAME (a label copied into the JSON line), --bench.ceiling=0 (train: skip the matmul
// ceiling measurements, which take ~5 s; no MFU then).
// Every mode prints a human summary and, on world rank 0, one JSON line "BENCH {...}".
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>

#include <nlohmann/json.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>
#ifdef MORE_WITH_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "more/ckpt/checkpoint.h"
#include "more/config/config.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/core/proc.h"
#include "more/core/safetensors.h"
#include "more/dist/device.h"
#include "more/dist/memory_plan.h"
#include "more/dist/process_grid.h"
#include "more/model/hf_config.h"
#include "more/train/trainer.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace more {
namespace {

double Seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Args {
  std::string mode, config;
  std::vector<std::string> overrides;
  std::map<std::string, std::string> bench;
  int64_t Int(const std::string& k, int64_t d) const { return bench.count(k) ? std::stoll(bench.at(k)) : d; }
  double Real(const std::string& k, double d) const { return bench.count(k) ? std::stod(bench.at(k)) : d; }
};

constexpr const char* kUsage = R"(usage: more_bench MODE [--config F] [--section.key=value ...] [--bench.key=value ...]

modes:
  matmul [--bench.threads=T] [--bench.device=cuda] [--bench.dtype=D]
                                     libtorch matmul ceiling (fp32 CPU, bf16 GPU)
  train  --config F [overrides]      step time, tokens/s, MFU, peak RSS vs plan (any layout, under mpirun)
  ratio  --config F [overrides]      MoRE vs LoRA step time, same batches
  loader --config F [overrides]      HDF5 loader samples/s vs consumption
  ckpt   --config F [overrides]      checkpoint write/read MB/s vs the disk
  batches --config F [overrides]     writes (--bench.out) the examples the first warmup + steps steps of
                                     `train` with the same config draw: one JSON line per micro-batch

bench options: --bench.warmup=N (2), --bench.steps=N (5), --bench.threads=T (matmul),
  --bench.lora_rank=R (8), --bench.seconds=S (3, loader), --bench.out=FILE (append JSON lines),
  --bench.profile=PREFIX (train: one extra step under the autograd profiler, chrome trace per rank),
  --bench.tag=NAME (a label copied into the JSON line), --bench.ceiling=0 (train: skip the matmul
  ceiling measurements; no MFU then).
Every mode prints a human summary and, on world rank 0, one JSON line "BENCH {...}".
See docs/benchmarks.md.
)";

Args Parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw Error("usage: more_bench matmul|train|ratio|loader|ckpt|batches [--config F] [--k=v ...]", "see more_bench --help");
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--config" && i + 1 < argc) a.config = argv[++i];
    else if (s.rfind("--config=", 0) == 0) a.config = s.substr(9);
    else if (s.rfind("--bench.", 0) == 0) {
      const auto eq = s.find('=');
      if (eq == std::string::npos) throw Error("bench option '" + s + "' needs =value");
      a.bench[s.substr(8, eq - 8)] = s.substr(eq + 1);
    } else if (s.rfind("--", 0) == 0) a.overrides.push_back(s.substr(2));
    else throw Error("unexpected argument '" + s + "'");
  }
  return a;
}

int WorldSize() {
  int w = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &w);
  return w;
}
int WorldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

void Emit(const Args& a, nlohmann::json j) {
  if (WorldRank() != 0) return;
  j["mode"] = a.mode;
  if (a.bench.count("tag")) j["tag"] = a.bench.at("tag");
  j["threads"] = torch::get_num_threads();
  j["world"] = WorldSize();
  std::cout << "BENCH " << j.dump() << std::endl;
  if (a.bench.count("out")) std::ofstream(a.bench.at("out"), std::ios::app) << j.dump() << "\n";
}

// ---- matmul ceiling ------------------------------------------------------------------------

// GPU work is asynchronous: wait for it before reading the clock.
void Sync(const torch::TensorOptions& o) {
  if (o.device().is_cuda()) torch::cuda::synchronize();
}

double MatmulGflops(int64_t m, int64_t k, int64_t n, const torch::TensorOptions& o) {
  torch::NoGradGuard ng;
  auto x = torch::randn({m, k}, o), w = torch::randn({k, n}, o);
  auto y = torch::mm(x, w);
  for (int i = 0; i < 2; ++i) y = torch::mm(x, w);  // warm-up (threads, caches)
  Sync(o);
  int reps = 0;
  const auto t0 = Clock::now();
  double t = 0;
  while (t < 0.4 || reps < 3) {
    y = torch::mm(x, w);
    ++reps;
    if (reps % 8 == 0) Sync(o);  // a GPU: keep a few GEMMs queued; a no-op on the CPU
    t = Seconds(t0);
  }
  Sync(o);
  t = Seconds(t0);
  return 2.0 * m * k * n * reps / t / 1e9;
}

// Best GFLOP/s of this process over shapes like the training matmuls (tokens x d x d'), in the
// base model's dtype on its device.
double MatmulCeiling(nlohmann::json* shapes, const torch::TensorOptions& o) {
  double best = 0;
  std::vector<std::array<int64_t, 3>> dims{
      {1024, 768, 768}, {1024, 768, 2048}, {1024, 2048, 768}, {2048, 2048, 2048}, {4096, 4096, 4096}};
  if (o.device().is_cuda()) dims.push_back({8192, 8192, 8192});
  for (auto [m, k, n] : dims) {
    const double g = MatmulGflops(m, k, n, o);
    if (shapes) shapes->push_back({{"m", m}, {"k", k}, {"n", n}, {"gflops", g}});
    best = std::max(best, g);
  }
  return best;
}

// fp32 GFLOP/s of this rank's own linear GEMMs at one micro-batch of `tokens`: forward x W^T
// and input gradient g W for every projection of its layers (local TP shards) and, on the
// last stage, the LM head, combined by their FLOPs. The best rate the model's matmuls could
// reach on this BLAS, whatever the rest of the step costs.
double OwnShapeRate(const LlamaConfig& m, int64_t tokens, const ProcessGrid& grid, const torch::TensorOptions& o) {
  const int64_t tp = grid.layout().tp, d = m.hidden_size, hd = m.head_dim(), i = m.intermediate_size / tp;
  const int64_t q = m.num_attention_heads * hd / tp, kv = m.num_key_value_heads * hd / tp;
  const double layers = static_cast<double>(m.num_hidden_layers / grid.layout().pp);
  struct W { int64_t out, in; double count; };
  std::vector<W> ws{{q, d, layers}, {kv, d, 2 * layers}, {d, q, layers}, {i, d, 2 * layers}, {d, i, layers}};
  if (grid.last_stage()) ws.push_back({m.vocab_size / tp, d, 1.0});
  torch::NoGradGuard ng;
  double flops = 0, secs = 0;
  for (const auto& w : ws) {
    auto wt = torch::randn({w.out, w.in}, o), x = torch::randn({tokens, w.in}, o), g = torch::randn({tokens, w.out}, o);
    for (int backward = 0; backward < 2; ++backward) {
      auto run = [&] { return backward ? torch::matmul(g, wt) : torch::matmul(x, wt.t()); };
      run();
      Sync(o);
      int reps = 0;
      const auto t0 = Clock::now();
      while (Seconds(t0) < 0.2 || reps < 2) {
        run();
        Sync(o);
        ++reps;
      }
      flops += w.count * 2.0 * static_cast<double>(tokens * w.out * w.in);
      secs += w.count * Seconds(t0) / reps;
    }
  }
  return flops / secs / 1e9;
}

int Matmul(const Args& a) {
  SetComputeThreads(a.Int("threads", 1), WorldRank());
  nlohmann::json shapes = nlohmann::json::array();
  // the base model's matmul dtype on its device (model.dtype=auto: bf16 on a GPU and on a CPU with
  // native bf16 (AVX512-BF16 / AMX-BF16 and oneDNN), else fp32; --bench.dtype chooses)
  const std::string device = a.bench.count("device") ? a.bench.at("device") : "cpu";
  const int gpu = SelectDevice(device, MPI_COMM_WORLD);
  const auto o = torch::TensorOptions(BaseDtype(a.bench.count("dtype") ? a.bench.at("dtype") : "auto", device))
                     .device(gpu >= 0 ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu))
                                      : torch::Device(torch::kCPU));
  const double best = MatmulCeiling(&shapes, o);
  for (const auto& s : shapes)
    std::printf("matmul %5lld x %5lld x %5lld: %7.1f GFLOP/s\n", s["m"].get<long long>(), s["k"].get<long long>(),
                s["n"].get<long long>(), s["gflops"].get<double>());
  std::printf("ceiling (%s, %d thread(s)): %.1f GFLOP/s\n", o.device().str().c_str(), torch::get_num_threads(), best);
  Emit(a, {{"ceiling_gflops", best}, {"shapes", shapes}});
  return 0;
}

// ---- training ------------------------------------------------------------------------------
Config LoadBenchConfig(const Args& a) {
  auto cfg = LoadConfig(a.config, a.overrides);
  cfg.ckpt.resume = false;
  cfg.ckpt.every = 0;  // only the ckpt mode saves, explicitly
  cfg.eval.at_start = false;
  cfg.train.progress = false;
  cfg.Validate();
  return cfg;
}

// Parameters that take part in a matmul per token (all linears of all layers + LM head): a
// frozen base costs 2N flops forward and 2N backward (input gradients only) per token.
double MatmulParams(const LlamaConfig& m) {
  const double d = m.hidden_size, hd = m.head_dim(), h = m.num_attention_heads, kv = m.num_key_value_heads,
               i = m.intermediate_size;
  const double layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * i;
  return m.num_hidden_layers * layer + m.vocab_size * d;
}

struct StepTimes {
  std::vector<double> seconds;
  std::vector<int64_t> step_tokens, step_padded;  // per step: real (non-pad) tokens, positions run
  int64_t tokens = 0;         // real (non-pad) tokens
  int64_t padded_tokens = 0;  // positions the model ran (rows x padded row length)
  int64_t samples = 0;
};

// {"fused": ms, "composed": ms} of a measured model.attention = auto (empty otherwise)
nlohmann::json AttentionTimesMs(const AttentionChoice& c) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [impl, s] : c.seconds) j[AttentionName(impl)] = s * 1e3;
  return j;
}

StepTimes RunSteps(Trainer& t, int64_t n) {
  StepTimes s;
  for (int64_t i = 0; i < n; ++i) {
    auto r = t.Step();
    s.seconds.push_back(r.seconds);
    s.step_tokens.push_back(r.tokens);
    s.step_padded.push_back(r.grid_tokens);
    s.tokens += r.tokens;
    s.padded_tokens += r.grid_tokens;
    s.samples += t.config().train.global_batch;
  }
  return s;
}

int Train(const Args& a) {
  auto cfg = LoadBenchConfig(a);
  auto model = LoadLlamaConfig(cfg.model.path);
  auto grid = MakeRunGrid(cfg, model, MPI_COMM_WORLD);
  Trainer t(cfg, *grid);
  // the matmul ceiling of every rank measured at the same time (they share the machine);
  // --bench.ceiling=0 skips it (short real-data runs: tokens/s only)
  const bool measure_ceiling = a.Int("ceiling", 1) != 0;
  grid->world().Barrier();
  const int64_t tokens = cfg.train.micro_batch * t.train_shards().max_len();
  const auto mo = torch::TensorOptions(t.stage().dtype()).device(t.device());  // the base model's matmuls
  auto ceil = torch::zeros({2}, torch::kFloat64);
  if (measure_ceiling)
    ceil = torch::tensor({MatmulCeiling(nullptr, mo), OwnShapeRate(model, tokens, *grid, mo)}, torch::kFloat64);
  grid->world().AllReduceSum(ceil);
  const double own_rate = ceil[1].item<double>();
  RunSteps(t, a.Int("warmup", 2));
  if (a.bench.count("profile")) {  // one profiled step, chrome-trace JSON (not counted below)
    torch::autograd::profiler::RecordProfile guard(a.bench.at("profile") + ".rank" +
                                                   std::to_string(grid->world_rank()) + ".json");
    RunSteps(t, 1);
  }
  const auto s = RunSteps(t, a.Int("steps", 5));
  // and again after the steps: this VM's speed drifts by 10-20% over minutes, so the MFU divides
  // by the mean of the two (both are reported)
  grid->world().Barrier();
  auto ceil_after = torch::tensor({measure_ceiling ? MatmulCeiling(nullptr, mo) : 0.0}, torch::kFloat64);
  grid->world().AllReduceSum(ceil_after);
  const double ceiling_before = ceil[0].item<double>(), ceiling_after = ceil_after[0].item<double>();
  const double ceiling = 0.5 * (ceiling_before + ceiling_after);
  const double total = std::accumulate(s.seconds.begin(), s.seconds.end(), 0.0);
  const double tok_s = s.tokens / total;  // real (non-pad) tokens
  const double padded_s = s.padded_tokens / total;
  const double pad_fraction = 1.0 - static_cast<double>(s.tokens) / std::max<int64_t>(1, s.padded_tokens);
  const double n = MatmulParams(model);
  const double achieved = tok_s * 4.0 * n / 1e9;
  // peak RSS of every rank against the planner's estimate of its stage, in the run's base dtype
  PlanOptions po;
  po.elem_bytes = t.stage().dtype() == torch::kBFloat16 ? 2 : 4;
  po.num_tasks = static_cast<int64_t>(t.task_names().size());
  po.seq_len = t.train_shards().max_len();
  const auto plan = PlanMemory(cfg, model, grid->world_size(), po);
  const int64_t planned = plan.stages.at(static_cast<size_t>(grid->pp_rank())).total_bytes();
  // per rank: peak RSS, the plan, and on a GPU the caching allocator's peak of allocated bytes
  // (what torch.cuda.max_memory_allocated reports), which is what the plan estimates there
  auto mem = torch::zeros({3 * grid->world_size()}, torch::kFloat64);
  mem[3 * grid->world_rank()] = PeakResidentMiB();
  mem[3 * grid->world_rank() + 1] = static_cast<double>(planned) / (1 << 20);
#ifdef MORE_WITH_NCCL
  if (t.stage().device().is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(t.stage().device().index());
    mem[3 * grid->world_rank() + 2] =
        static_cast<double>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
        (1 << 20);
  }
#endif
  grid->world().AllReduceSum(mem);
  nlohmann::json ranks = nlohmann::json::array();
  for (int r = 0; r < grid->world_size(); ++r) {
    ranks.push_back({{"rank", r}, {"peak_rss_mib", mem[3 * r].item<double>()},
                     {"planned_mib", mem[3 * r + 1].item<double>()}});
    if (mem[3 * r + 2].item<double>() > 0) ranks.back()["cuda_peak_allocated_mib"] = mem[3 * r + 2].item<double>();
  }
  if (grid->is_world_root()) {
    std::printf("%s: %s, %.1fM params (%.1fM in matmuls), %s\n", cfg.adapter.method.c_str(),
                grid->Describe().c_str(), model.NumParams() / 1e6, n / 1e6, cfg.model.path.c_str());
    std::printf("step %.3f s (median of %zu), %.0f real tokens/s (%.0f positions/s with padding, %.1f%% "
                "padding)\n", Median(s.seconds), s.seconds.size(), tok_s, padded_s, 100 * pad_fraction);
    if (measure_ceiling) {
      std::printf("%.1f GFLOP/s (4N per real token) = %.1f%% of the matmul ceiling %.1f GFLOP/s (%.1f before the "
                  "steps, %.1f after)\n", achieved, 100 * achieved / ceiling, ceiling, ceiling_before, ceiling_after);
      std::printf("the model's own GEMM shapes (micro-batch of %lld tokens) reach %.1f GFLOP/s on this BLAS: "
                  "%.1f%% of that\n", static_cast<long long>(tokens), own_rate, 100 * achieved / own_rate);
    }
    for (const auto& r : ranks)
      std::printf("rank %d: peak RSS %.0f MiB, %splanner %.0f MiB (weights, adapters, activations only)\n",
                  r["rank"].get<int>(), r["peak_rss_mib"].get<double>(),
                  r.contains("cuda_peak_allocated_mib")
                      ? fmt::format("GPU peak allocated {:.0f} MiB, ", r["cuda_peak_allocated_mib"].get<double>()).c_str()
                      : "",
                  r["planned_mib"].get<double>());
  }
  nlohmann::json j{{"method", cfg.adapter.method}, {"rank", cfg.adapter.rank}, {"model", cfg.model.path},
                   {"data", cfg.data.train}, {"dtype", c10::toString(t.stage().dtype())}, {"bucket", cfg.data.bucket},
                   {"overrides", a.overrides},
                   {"tp", grid->layout().tp}, {"pp", grid->layout().pp}, {"dp", grid->layout().dp},
                   {"schedule", cfg.parallel.schedule}, {"micro_batch", cfg.train.micro_batch},
                   {"global_batch", cfg.train.global_batch},
                   {"micro_batches", cfg.train.global_batch / (cfg.train.micro_batch * grid->layout().dp)},
                   {"params", model.NumParams()}, {"matmul_params", n}, {"step_s_median", Median(s.seconds)},
                   {"step_s", s.seconds}, {"tokens_per_s", tok_s}, {"real_tokens_per_s", tok_s},
                   {"padded_tokens_per_s", padded_s}, {"pad_fraction", pad_fraction},
                   {"step_tokens", s.step_tokens}, {"step_padded_tokens", s.step_padded},
                   {"samples_per_s", s.samples / total}, {"gflops", achieved}, {"ranks", ranks},
                   {"adapter_dtype", cfg.adapter.dtype}, {"attention", AttentionName(t.attention_choice().impl)},
                   {"attention_ms", AttentionTimesMs(t.attention_choice())}};
  if (measure_ceiling) {
    j.update({{"ceiling_gflops", ceiling}, {"ceiling_before_gflops", ceiling_before},
              {"ceiling_after_gflops", ceiling_after}, {"mfu", achieved / ceiling}, {"own_shape_gflops", own_rate},
              {"of_own_shape_rate", achieved / own_rate}});
  }
  Emit(a, j);
  return 0;
}

// MoRE and LoRA trained side by side on the same model and the same batches (same seed), in
// alternating blocks so that machine noise hits both alike.
int Ratio(const Args& a) {
  auto cfg = LoadBenchConfig(a);
  MORE_CHECK(WorldSize() == 1, "more_bench ratio runs on one rank");
  auto model = LoadLlamaConfig(cfg.model.path);
  auto grid = MakeRunGrid(cfg, model, MPI_COMM_WORLD);
  auto more_cfg = cfg, lora_cfg = cfg;
  more_cfg.adapter.method = "more";
  lora_cfg.adapter.method = "lora";
  lora_cfg.adapter.rank = a.Int("lora_rank", 8);
  lora_cfg.adapter.lambda_cl = 0;
  Trainer tm(more_cfg, *grid), tl(lora_cfg, *grid);
  RunSteps(tm, a.Int("warmup", 2));
  RunSteps(tl, a.Int("warmup", 2));
  std::vector<double> sm, sl;
  const int64_t blocks = a.Int("steps", 20) / 2;
  for (int64_t b = 0; b < blocks; ++b) {
    for (double x : RunSteps(tm, 2).seconds) sm.push_back(x);
    for (double x : RunSteps(tl, 2).seconds) sl.push_back(x);
  }
  const double ratio = Median(sm) / Median(sl);
  std::printf("MoRE r=%lld (lambda_cl %.2g): %.4f s/step; LoRA r=%lld: %.4f s/step; ratio %.3f (median of %zu)\n",
              static_cast<long long>(more_cfg.adapter.rank), more_cfg.adapter.lambda_cl, Median(sm),
              static_cast<long long>(lora_cfg.adapter.rank), Median(sl), ratio, sm.size());
  Emit(a, {{"model", cfg.model.path}, {"more_rank", more_cfg.adapter.rank}, {"lora_rank", lora_cfg.adapter.rank},
           {"lambda_cl", more_cfg.adapter.lambda_cl}, {"micro_batch", cfg.train.micro_batch},
           {"more_step_s", Median(sm)}, {"lora_step_s", Median(sl)}, {"ratio", ratio},
           {"more_steps", sm}, {"lora_steps", sl}});
  return 0;
}

// The streaming loader alone (read + decode + bucket + pad, with its prefetch thread) against
// what training consumes.
int Loader(const Args& a) {
  auto cfg = LoadBenchConfig(a);
  auto model = LoadLlamaConfig(cfg.model.path);
  auto grid = MakeRunGrid(cfg, model, MPI_COMM_WORLD);
  Trainer t(cfg, *grid);
  RunSteps(t, 1);
  const auto train = RunSteps(t, a.Int("steps", 3));
  const double consumed = train.samples / std::accumulate(train.seconds.begin(), train.seconds.end(), 0.0);
  const double budget = a.Real("seconds", 3);
  int64_t samples = 0;
  const auto t0 = Clock::now();
  while (Seconds(t0) < budget) samples += static_cast<int64_t>(t.loader().Next().lengths.size());
  const double rate = samples / Seconds(t0);
  std::printf("loader: %.0f samples/s (micro-batch %lld); training consumes %.1f samples/s: %.0fx headroom\n", rate,
              static_cast<long long>(cfg.train.micro_batch), consumed, rate / consumed);
  Emit(a, {{"model", cfg.model.path}, {"micro_batch", cfg.train.micro_batch}, {"loader_samples_per_s", rate},
           {"train_samples_per_s", consumed}, {"headroom", rate / consumed}});
  return 0;
}

int64_t DirBytes(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}

// Checkpoint save (every stage's files, fsync'ed, renamed) and load (CRC-checked) against a
// plain fsync'ed write and a read of the same number of bytes in the same directory.
int Ckpt(const Args& a) {
  auto cfg = LoadBenchConfig(a);
  auto model = LoadLlamaConfig(cfg.model.path);
  auto grid = MakeRunGrid(cfg, model, MPI_COMM_WORLD);
  Trainer t(cfg, *grid);
  t.Step();
  std::vector<double> ws, rs;
  std::string dir;
  int64_t bytes = 0;
  for (int i = 0; i < a.Int("steps", 3); ++i) {
    auto t0 = Clock::now();
    dir = t.SaveCheckpoint();
    ws.push_back(Seconds(t0));
    if (grid->is_world_root()) {
      bytes = DirBytes(dir);
      t0 = Clock::now();
      auto loaded = CheckpointManager::Load(dir);
      rs.push_back(Seconds(t0));
    }
  }
  if (!grid->is_world_root()) return 0;
  const int64_t raw_bytes = std::max<int64_t>(bytes, 64 << 20);
  std::string blob(static_cast<size_t>(raw_bytes), '\x5a');
  const auto raw = cfg.checkpoint_dir() + "/raw-disk-test.bin";
  auto t0 = Clock::now();
  WriteFileAtomic(raw, blob);
  const double raw_w = raw_bytes / Seconds(t0) / 1e6;
  t0 = Clock::now();
  const auto back = ReadFileToString(raw);
  const double raw_r = raw_bytes / Seconds(t0) / 1e6;
  fs::remove(raw);
  const double w = bytes / Median(ws) / 1e6, r = bytes / Median(rs) / 1e6;
  std::printf("checkpoint %.2f MB: save %.1f MB/s (%.3f s), load %.1f MB/s (%.3f s); disk: write+fsync %.1f MB/s, "
              "read %.1f MB/s (%.0f MB)\n",
              bytes / 1e6, w, Median(ws), r, Median(rs), raw_w, raw_r, raw_bytes / 1e6);
  Emit(a, {{"model", cfg.model.path}, {"bytes", bytes}, {"save_s", Median(ws)}, {"load_s", Median(rs)},
           {"save_mb_s", w}, {"load_mb_s", r}, {"disk_write_mb_s", raw_w}, {"disk_read_mb_s", raw_r}});
  return 0;
}

// The examples that `train` with the same config and --bench.warmup / --bench.steps draws (a fresh
// trainer's loader, same seed, same sampler): one JSON line per micro-batch with its step, task,
// and per row the unpadded token ids and the positions of its target tokens (the loss predicts
// ids[j] from position j-1). launch/peer_bench.py --batches replays them, so the peers train on the
// same examples in the same micro-batches as the trainer. With data.packing the examples are read
// out of their packed rows (the sampler draws the same examples either way).
int Batches(const Args& a) {
  auto cfg = LoadBenchConfig(a);
  MORE_CHECK(WorldSize() == 1, "more_bench batches runs on one rank");
  if (!a.bench.count("out"))
    throw Error("more_bench batches needs --bench.out=FILE", "it writes one JSON line per micro-batch there, "
                "for launch/peer_bench.py --batches");
  auto model = LoadLlamaConfig(cfg.model.path);
  auto grid = MakeRunGrid(cfg, model, MPI_COMM_WORLD);
  Trainer t(cfg, *grid);
  const int64_t steps = a.Int("warmup", 2) + a.Int("steps", 5);
  const int64_t micro = cfg.train.global_batch / cfg.train.micro_batch;
  std::ofstream out(a.bench.at("out"), std::ios::trunc);
  if (!out) throw Error("cannot write '" + a.bench.at("out") + "'", "check --bench.out");
  int64_t real = 0, positions = 0;
  for (int64_t step = 0; step < steps; ++step)
    for (int64_t m = 0; m < micro; ++m) {
      const MicroBatch mb = t.loader().Next();
      nlohmann::json ids = nlohmann::json::array(), targets = nlohmann::json::array();
      for (int b = 0; b < mb.batch_size; ++b) {  // example b: where it lies in the [R, L] grid
        const size_t row = mb.ExampleStart(b);
        const auto len = static_cast<size_t>(mb.lengths[static_cast<size_t>(b)]);
        ids.push_back(std::vector<int32_t>(mb.input_ids.begin() + static_cast<std::ptrdiff_t>(row),
                                           mb.input_ids.begin() + static_cast<std::ptrdiff_t>(row + len)));
        std::vector<int32_t> pos;
        for (size_t j = 0; j < len; ++j)
          if (mb.target_mask[row + j]) pos.push_back(static_cast<int32_t>(j));
        targets.push_back(pos);
        real += static_cast<int64_t>(len);
      }
      positions += static_cast<int64_t>(mb.RowCount()) * mb.seq_len;
      out << nlohmann::json{{"step", step}, {"task", t.task_names().at(static_cast<size_t>(mb.task))},
                            {"ids", ids}, {"targets", targets}, {"trainer_seq_len", mb.seq_len}}
                 .dump()
          << "\n";
    }
  out.close();
  if (!out) throw Error("cannot write '" + a.bench.at("out") + "'", "disk full?");
  std::printf("%lld steps x %lld micro-batch(es) of %lld examples: %lld real tokens, %lld positions as the "
              "trainer pads them (%.1f%% padding)\n", static_cast<long long>(steps), static_cast<long long>(micro),
              static_cast<long long>(cfg.train.micro_batch), static_cast<long long>(real),
              static_cast<long long>(positions), 100.0 * (1.0 - static_cast<double>(real) / std::max<int64_t>(1, positions)));
  return 0;
}

}  // namespace
}  // namespace more

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
        std::cout << more::kUsage;
        return 0;
      }
    const auto a = more::Parse(argc, argv);
    spdlog::set_level(spdlog::level::warn);  // the trainer's start-up report would bury the figures
    if (a.mode == "matmul") return more::Matmul(a);
    if (a.mode == "train") return more::Train(a);
    if (a.mode == "ratio") return more::Ratio(a);
    if (a.mode == "loader") return more::Loader(a);
    if (a.mode == "ckpt") return more::Ckpt(a);
    if (a.mode == "batches") return more::Batches(a);
    throw more::Error("unknown mode '" + a.mode + "'", "use matmul, train, ratio, loader, ckpt or batches");
  });
}
