// more_pretrain: trains the *base* weights of a small LLaMA with a causal language-model loss,
// so the quality experiment (docs/results.md) fine-tunes adapters on a model that knows the
// language of its tasks instead of a random one. Single process, full model (tp = pp = 1).
//
//   more_pretrain --model DIR --data SHARD_DIR --out DIR [options]
//
// Text: the prompt part of every row of the HDF5 shards (train split; eval split for held-out
// loss), i.e. BOS + the example's input, made by shard_data with the model's tokenizer. The
// answers (target tokens) are left out on purpose: the base learns the vocabulary and phrasing
// of the tasks, and the adapters must still learn to answer them. Each example becomes
// [BOS] input [EOS]; the examples, shuffled every epoch, are concatenated and cut into rows of
// seq + 1 tokens (next-token targets), the usual packed pretraining layout. (Reading shards
// rather than text keeps SentencePiece out of the binary: its protobuf clashes with libtorch's.)
// Optimiser: AdamW (betas 0.9/0.95, weight decay on matrices only), linear warm-up then cosine
// decay to 10%, gradient clipping at 1.0.
// Output DIR: model.safetensors (all base weights, the input model's dtype), config.json and
// tokenizer.model copied from --model, and pretrain.jsonl (train/eval loss every --log-every).
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "more/ckpt/tensor_file.h"
#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/core/main_guard.h"
#include "more/core/safetensors.h"
#include "more/data/shard_set.h"
#include "more/dist/process_grid.h"
#include "more/model/hf_config.h"
#include "more/model/llama.h"
#include "more/train/metrics_log.h"
#include "more/train/optimizer.h"
#include "more/train/trainer.h"

namespace fs = std::filesystem;

namespace more {
namespace {

constexpr const char* kUsage = R"(usage: more_pretrain --model DIR --data SHARD_DIR --out DIR [options]
  --model DIR        model directory (config.json, *.safetensors, tokenizer.model), e.g. from make_tiny_llama
  --data DIR         HDF5 shard directory (shard_data build): pretrains on the rows' prompts
  --out DIR          where the pretrained model is written (created; must differ from --model)
  --steps N          optimiser steps (1000)
  --batch N          rows per step (16)
  --seq N            tokens per row (64)
  --lr X             peak learning rate (3e-3)
  --warmup N         warm-up steps (50)
  --weight-decay X   AdamW weight decay on matrices (0.01)
  --seed N           data order and nothing else: the weights start from --model (1)
  --threads N        intra-op threads (the cores this process may run on)
  --log-every N      train / eval loss logging interval (100)
)";

struct Options {
  std::string model, data, out;
  int64_t steps = 1000, batch = 16, seq = 64, warmup = 50, seed = 1, threads = 0, log_every = 100;
  double lr = 3e-3, weight_decay = 0.01;
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    MORE_CHECK(a.rfind("--", 0) == 0 && i + 1 < argc, "more_pretrain: unexpected argument '{}' (see --help)", a);
    const std::string v = argv[++i];
    auto num = [&](int64_t& dst) { dst = std::stoll(v); };
    if (a == "--model") o.model = v;
    else if (a == "--data") o.data = v;
    else if (a == "--out") o.out = v;
    else if (a == "--steps") num(o.steps);
    else if (a == "--batch") num(o.batch);
    else if (a == "--seq") num(o.seq);
    else if (a == "--warmup") num(o.warmup);
    else if (a == "--seed") num(o.seed);
    else if (a == "--threads") num(o.threads);
    else if (a == "--log-every") num(o.log_every);
    else if (a == "--lr") o.lr = std::stod(v);
    else if (a == "--weight-decay") o.weight_decay = std::stod(v);
    else Fail("more_pretrain: unknown option '{}' (see --help)", a);
  }
  MORE_CHECK(!o.model.empty() && !o.data.empty() && !o.out.empty(),
             "more_pretrain needs --model, --data and --out (see --help)");
  MORE_CHECK(o.steps > 0 && o.batch > 0 && o.seq > 1 && o.log_every > 0, "more_pretrain: steps, batch, "
             "log-every must be > 0 and seq > 1");
  MORE_CHECK(fs::weakly_canonical(o.model) != fs::weakly_canonical(o.out),
             "more_pretrain: --out must differ from --model ('{}'): the input model is never overwritten", o.out);
  return o;
}

// Token stream of one split: every row's prompt as [BOS] input [EOS], in a seeded order.
class TokenStream {
 public:
  TokenStream(const ShardSet& shards, uint64_t seed) : rng_(seed) {
    const int32_t eos = shards.shards().front().eos_id;
    for (int t = 0; t < shards.num_tasks(); ++t) {
      const int64_t n = shards.tasks()[static_cast<size_t>(t)].size;
      for (int64_t r0 = 0; r0 < n; r0 += 256) {
        std::vector<int64_t> rows(static_cast<size_t>(std::min<int64_t>(256, n - r0)));
        std::iota(rows.begin(), rows.end(), r0);
        const auto mb = shards.Read(t, rows, 1, 0);
        for (int i = 0; i < mb.batch_size; ++i) {
          const auto* row = mb.input_ids.data() + static_cast<size_t>(i) * static_cast<size_t>(mb.seq_len);
          std::vector<int32_t> ids(row, row + mb.prompt_lengths[static_cast<size_t>(i)]);
          ids.push_back(eos);
          tokens_ += static_cast<int64_t>(ids.size());
          examples_.push_back(std::move(ids));
        }
      }
    }
    MORE_CHECK(!examples_.empty(), "shards '{}' have no {} rows to pretrain on", shards.files().front(),
               shards.split());
    order_.resize(examples_.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::shuffle(order_.begin(), order_.end(), rng_);
  }
 int64_t tokens() const { return tokens_; }
  // rows [n, len] int64 of consecutive stream tokens (wrapping into a reshuffled next epoch)
  torch::Tensor Rows(int64_t n, int64_t len) {
    auto out = torch::empty({n, len}, torch::kLong);
    auto* p = out.data_ptr<int64_t>();
    for (int64_t i = 0; i < n * len; ++i) p[i] = Next();
    return out;
  }

 private:
  int32_t Next() {
    while (pos_ >= examples_[order_[ex_]].size()) {
      pos_ = 0;
      if (++ex_ == order_.size()) {
        ex_ = 0;
        std::shuffle(order_.begin(), order_.end(), rng_);
      }
    }
    return examples_[order_[ex_]][pos_++];
  }
  std::mt19937_64 rng_;
  std::vector<std::vector<int32_t>> examples_;
  std::vector<size_t> order_;
  size_t ex_ = 0, pos_ = 0;
  int64_t tokens_ = 0;
};

int Pretrain(const Options& o) {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MORE_CHECK(world == 1, "more_pretrain runs as one process (got {} ranks): launch it without mpirun -np", world);
  const int threads = SetComputeThreads(o.threads, 0);
  torch::manual_seed(static_cast<uint64_t>(o.seed));

  const auto cfg = LoadLlamaConfig(o.model);
  const std::string tok_path = (fs::path(o.model) / "tokenizer.model").string();
  MORE_CHECK(fs::exists(tok_path), "no tokenizer.model in '{}': the shards' tokenizer cannot be checked", o.model);
  const std::string tok_hash = HashFileHex(tok_path);
  TokenStream train(ShardSet({o.data}, "train", tok_hash), static_cast<uint64_t>(o.seed));
  TokenStream eval(ShardSet({o.data}, "eval", tok_hash), 12345);
  MORE_CHECK(o.seq <= cfg.max_position_embeddings, "--seq {} exceeds max_position_embeddings {}", o.seq,
             cfg.max_position_embeddings);

  ProcessGrid grid(MPI_COMM_WORLD, Layout{1, 1, 1});
  SafetensorsCollection weights(o.model);
  const auto dtype = weights.FileFor("model.embed_tokens.weight").Info("model.embed_tokens.weight").dtype;
  MORE_CHECK(dtype == DType::kF32, "more_pretrain trains f32 weights only (model '{}' is {}); make the base "
             "with make_tiny_llama --dtype f32", o.model, DTypeName(dtype));
  LlamaStage model(cfg, weights, grid, nullptr, torch::kFloat32, torch::kCPU);
  auto named = model.BaseWeights();
  std::vector<torch::Tensor> params, decay, no_decay;
  int64_t n_params = 0;
  for (auto& [name, w] : named) {
    w.requires_grad_(true);
    params.push_back(w);
    (w.dim() >= 2 ? decay : no_decay).push_back(w);
    n_params += w.numel();
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(0.0)));
  torch::optim::AdamW opt(groups, torch::optim::AdamWOptions(o.lr));
  spdlog::info("pretraining {} parameters on {} train tokens ({} eval), {} steps of {} x {} tokens, {} threads",
               n_params, train.tokens(), eval.tokens(), o.steps, o.batch, o.seq, threads);

  auto loss_of = [&](const torch::Tensor& rows) {
    ForwardContext ctx;
    ctx.training = true;
    auto ids = rows.narrow(1, 0, o.seq), tgt = rows.narrow(1, 1, o.seq);
    return model.TokenNll(model.Layers(model.Embed(ids), ctx), tgt).mean();
  };
  // held-out loss on a fixed set of eval rows
  const auto eval_rows = eval.Rows(std::max<int64_t>(o.batch, 32), o.seq + 1);
  auto eval_loss = [&] {
    torch::NoGradGuard ng;
    return loss_of(eval_rows).item<double>();
  };

  fs::create_directories(o.out);
  MetricsLog log;  // checked writes: a full disk is warned about and the file stays valid JSONL
  log.Open((fs::path(o.out) / "pretrain.jsonl").string(), 0);
  double first_eval = eval_loss(), last_eval = first_eval, run_loss = 0;
  log.Append({{"step", 0}, {"eval_loss", first_eval}});
  for (int64_t step = 1; step <= o.steps; ++step) {
    const double lr = LearningRate(step - 1, o.steps, o.warmup, o.lr, 0.1);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    auto loss = loss_of(train.Rows(o.batch, o.seq + 1));
    loss.backward();
    const double gn = torch::nn::utils::clip_grad_norm_(params, 1.0);
    const double l = loss.item<double>();
    if (!std::isfinite(l) || !std::isfinite(gn))
      throw Error(fmt::format("non-finite pretraining loss {} at step {}", l, step), "lower --lr");
    opt.step();
    run_loss += l;
    if (step % o.log_every == 0 || step == o.steps) {
      last_eval = eval_loss();
      const double avg = run_loss / static_cast<double>((step - 1) % o.log_every + 1);
      run_loss = 0;
      spdlog::info("step {}/{}: train loss {:.4f}, eval loss {:.4f}, lr {:.2e}", step, o.steps, avg, last_eval, lr);
      log.Append({{"step", step}, {"train_loss", avg}, {"eval_loss", last_eval}, {"lr", lr}, {"grad_norm", gn}});
    }
  }

  const std::map<std::string, torch::Tensor> out_weights(named.begin(), named.end());
  // one file; drop the input's index and shards if the output dir held an older sharded model
  for (const auto& f : fs::directory_iterator(o.out))
    if (f.path().filename().string().rfind("model-", 0) == 0 || f.path().filename() == "model.safetensors.index.json")
      fs::remove(f.path());
  SaveTensorFile((fs::path(o.out) / "model.safetensors").string(), out_weights,
                 {{"format", "pt"},
                  {"more_pretrain", nlohmann::json{{"from", o.model}, {"data", o.data}, {"steps", o.steps},
                                                   {"seed", o.seed}}.dump()}});
  fs::copy_file(fs::path(o.model) / "config.json", fs::path(o.out) / "config.json",
                fs::copy_options::overwrite_existing);
  fs::copy_file(tok_path, fs::path(o.out) / "tokenizer.model", fs::copy_options::overwrite_existing);
  spdlog::info("eval loss {:.4f} -> {:.4f}; wrote {}", first_eval, last_eval, o.out);
  std::cout << nlohmann::json{{"eval_loss_start", first_eval}, {"eval_loss_end", last_eval}, {"out", o.out}}.dump()
            << "\n";
  return 0;
}

}  // namespace
}  // namespace more

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int argc, char** argv) { return more::Pretrain(more::Parse(argc, argv)); });
}
