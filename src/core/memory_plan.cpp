// Memory plan of a tp x pp x dp layout (formulas in include/more/dist/memory_plan.h).
#include "more/dist/memory_plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "more/config/config.h"
#include "more/core/error.h"

namespace more {

namespace {

struct Shape {
  const char* kind;
  int64_t d_in, d_out;
};

// The adapted modules and their global shapes: the same list as LlamaModuleShapes
// (src/model/llama.cpp, torch side), repeated here so the planner stays torch-free.
// q, k, v, gate, up are column-parallel (output split), o and down row-parallel (input split).
std::vector<Shape> ModuleShapes(const LlamaConfig& c) {
  const int64_t d = c.hidden_size, hd = c.head_dim(), i = c.intermediate_size;
  return {{"q", d, c.num_attention_heads * hd},
          {"k", d, c.num_key_value_heads * hd},
          {"v", d, c.num_key_value_heads * hd},
          {"o", c.num_attention_heads * hd, d},
          {"gate", d, i},
          {"up", d, i},
          {"down", i, d}};
}

std::string RankList(const std::vector<int64_t>& ranks) {
  // contiguous runs as "a-b", joined by commas
  std::string out;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += j == i ? fmt::format("{}", ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]);
    i = j + 1;
  }
  return out;
}

// 6.74B, 203.17M, 30.2K, 17
std::string FormatCount(int64_t n) {
  const double x = static_cast<double>(n);
  if (x >= 1e9) return fmt::format("{:.2f}B", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}K", x / 1e3);
  return fmt::format("{}", n);
}

}  // namespace

std::vector<std::string> LlamaPresetNames() {
  return {"llama2-7b", "llama2-13b", "llama2-70b", "llama3.1-8b", "llama3.1-70b", "mistral-7b", "qwen2.5-7b"};
}

LlamaConfig LlamaPreset(const std::string& name) {
  LlamaConfig c;  // defaults: vocab 32000, max positions 4096, eps 1e-5, theta 1e4
  c.vocab_size = 32000;
  // The Hugging Face config.json values of each model (the planner uses the shapes; the Llama 3.1
  // llama3 rope scaling, which does not change a shape, is not part of LlamaConfig).
  if (name == "llama3.1-8b" || name == "llama3.1-70b") {
    const bool big = name == "llama3.1-70b";
    c.vocab_size = 128256, c.max_position_embeddings = 131072, c.rope_theta = 500000.0;
    c.hidden_size = big ? 8192 : 4096, c.intermediate_size = big ? 28672 : 14336;
    c.num_hidden_layers = big ? 80 : 32, c.num_attention_heads = big ? 64 : 32, c.num_key_value_heads = 8;
    c.bos_token_id = 128000, c.eos_token_id = 128001, c.torch_dtype = "bfloat16";
  } else if (name == "mistral-7b") {  // Mistral-7B-v0.3
    c.vocab_size = 32768, c.max_position_embeddings = 32768, c.rope_theta = 1000000.0;
    c.hidden_size = 4096, c.intermediate_size = 14336, c.num_hidden_layers = 32;
    c.num_attention_heads = 32, c.num_key_value_heads = 8, c.torch_dtype = "bfloat16";
  } else if (name == "qwen2.5-7b") {
    c.vocab_size = 152064, c.max_position_embeddings = 131072, c.rope_theta = 1000000.0, c.rms_norm_eps = 1e-6;
    c.hidden_size = 3584, c.intermediate_size = 18944, c.num_hidden_layers = 28;
    c.num_attention_heads = 28, c.num_key_value_heads = 4, c.qkv_bias = true;
    c.bos_token_id = 151643, c.eos_token_id = 151643, c.torch_dtype = "bfloat16";
  } else if (name == "llama2-7b") {
    c.hidden_size = 4096, c.intermediate_size = 11008, c.num_hidden_layers = 32;
    c.num_attention_heads = 32, c.num_key_value_heads = 32;
  } else if (name == "llama2-13b") {
    c.hidden_size = 5120, c.intermediate_size = 13824, c.num_hidden_layers = 40;
    c.num_attention_heads = 40, c.num_key_value_heads = 40;
  } else if (name == "llama2-70b") {
    c.hidden_size = 8192, c.intermediate_size = 28672, c.num_hidden_layers = 80;
    c.num_attention_heads = 64, c.num_key_value_heads = 8;  // grouped-query attention
  } else {
    throw Error(fmt::format("unknown model preset '{}'", name),
                fmt::format("choose one of {}, or give --model DIR", fmt::join(LlamaPresetNames(), ", ")));
  }
  c.Validate("preset " + name);
  return c;
}

int64_t WorldRank(int64_t tp, int64_t pp, int64_t tp_rank, int64_t pp_rank, int64_t dp_rank) {
  return tp_rank + tp * (pp_rank + pp * dp_rank);
}

int64_t BaseElementsPerRank(const LlamaConfig& m, int64_t tp, int64_t pp, int64_t stage) {
  const int64_t d = m.hidden_size, layers = m.num_hidden_layers / pp;
  int64_t linear = 0;  // global elements of one layer's seven projections
  for (const auto& s : ModuleShapes(m)) linear += s.d_in * s.d_out;
  // q, k, v biases (Qwen2) are sharded with their output columns
  const int64_t bias = m.qkv_bias ? (m.num_attention_heads + 2 * m.num_key_value_heads) * m.head_dim() : 0;
  int64_t n = layers * ((linear + bias) / tp + 2 * d);  // shards + replicated RMSNorm weights
  if (stage == 0) n += m.vocab_size * d / tp;            // vocab-parallel embedding
  if (stage == pp - 1) n += d + m.vocab_size * d / tp;   // final norm + vocab-parallel LM head
  return n;
}

int64_t AdapterParamsPerLayer(const LlamaConfig& m, const std::vector<std::string>& targets, bool more,
                              int64_t rank, int64_t num_tasks) {
  int64_t n = 0;
  for (const auto& s : ModuleShapes(m)) {
    if (std::find(targets.begin(), targets.end(), s.kind) == targets.end()) continue;
    n += rank * s.d_in + s.d_out * rank;                         // A [r, d_in], B [d_out, r]
    if (more) n += num_tasks * s.d_in + rank * s.d_in + rank;    // E [T, d_in], gate [r, d_in] + [r]
  }
  return n;
}

int64_t ActivationBytesPerLayer(int64_t s, int64_t b, int64_t hidden, int64_t heads, int64_t tp,
                                int64_t elem_bytes) {
  // s*b*h*(10 + 24/t + 5*a*s/(h*t)) = s*b*(10*h + 24*h/t + 5*a*s/t): exact in integers for a
  // valid layout (h % t == 0 as h % a == 0 and a % t == 0); 2-byte figure times e/2.
  const int64_t at2 = s * b * (10 * hidden + 24 * hidden / tp + 5 * heads * s / tp);
  return at2 * elem_bytes / 2;
}

int64_t MicroBatchesInFlight(const std::string& schedule, int64_t pp, int64_t stage, int64_t m) {
  if (schedule == "gpipe") return m;
  if (schedule == "1f1b") return std::min(pp - stage, m);
  throw Error(fmt::format("unknown pipeline schedule '{}'", schedule), "parallel.schedule is 1f1b or gpipe");
}

double BubbleFraction(int64_t pp, int64_t m) {
  return static_cast<double>(pp - 1) / static_cast<double>(m + pp - 1);
}

double MemoryPlan::usable_bytes() const {
  return (1.0 - options.reserve) * options.gpu_gib * 1024.0 * 1024.0 * 1024.0;
}

double MemoryPlan::bubble() const { return BubbleFraction(pp, micro_batches); }

MemoryPlan PlanMemory(const Config& cfg, const LlamaConfig& model, int world, const PlanOptions& opt) {
  if (world < 1) throw Error(fmt::format("world size must be >= 1, got {}", world), "pass --world N");
  if (opt.seq_len < 1) throw Error(fmt::format("sequence length must be >= 1, got {}", opt.seq_len));
  if (opt.num_tasks < 1) throw Error(fmt::format("number of tasks must be >= 1, got {}", opt.num_tasks));
  if (opt.elem_bytes != 2 && opt.elem_bytes != 4)
    throw Error(fmt::format("bytes per base element must be 2 (bf16) or 4 (f32), got {}", opt.elem_bytes));
  model.Validate("model config");
  cfg.ValidateAgainstModel(model, world);

  MemoryPlan p;
  p.model = model;
  p.options = opt;
  p.tp = cfg.parallel.tp;
  p.pp = cfg.parallel.pp;
  p.dp = cfg.dp_size(world);
  p.micro_batch = cfg.train.micro_batch;
  p.global_batch = cfg.train.global_batch;
  p.micro_batches = cfg.train.global_batch / (cfg.train.micro_batch * p.dp);
  p.schedule = cfg.parallel.schedule;
  p.method = cfg.adapter.method;
  p.rank = cfg.adapter.rank;
  p.targets = cfg.TargetModules();
  const bool more = cfg.adapter.method == "more";
  const int64_t per_layer = AdapterParamsPerLayer(model, p.targets, more, p.rank, opt.num_tasks);
  p.adapter_params = per_layer * model.num_hidden_layers;
  const int64_t layers = model.num_hidden_layers / p.pp;
  p.recompute_layers = std::min(layers, cfg.train.recompute_layers);
  const int64_t act_layer = ActivationBytesPerLayer(opt.seq_len, p.micro_batch, model.hidden_size,
                                                    model.num_attention_heads, p.tp, opt.elem_bytes);
  for (int64_t i = 0; i < p.pp; ++i) {
    StagePlan s;
    s.stage = i;
    s.first_layer = i * layers;
    s.last_layer = (i + 1) * layers;
    for (int64_t d = 0; d < p.dp; ++d)
      for (int64_t t = 0; t < p.tp; ++t) s.ranks.push_back(WorldRank(p.tp, p.pp, t, i, d));
    std::sort(s.ranks.begin(), s.ranks.end());
    s.in_flight = MicroBatchesInFlight(p.schedule, p.pp, i, p.micro_batches);
    s.base_bytes = BaseElementsPerRank(model, p.tp, p.pp, i) * opt.elem_bytes;
    s.adapter_bytes = per_layer * layers * 4 /* fp32 */ * 4 /* param, grad, m, v */;
    s.activation_bytes = ActivationBytesPerStage(act_layer, layers, p.recompute_layers,
                                                 opt.seq_len * p.micro_batch * model.hidden_size * opt.elem_bytes,
                                                 s.in_flight);
    if (i == p.pp - 1) {
      const int64_t logits = p.micro_batch * opt.seq_len * (model.vocab_size / p.tp);  // b*s*V/t values
      s.logits_bytes = logits * 4 * s.in_flight + (opt.elem_bytes < 4 ? logits * opt.elem_bytes : 0);
    }
    p.stages.push_back(std::move(s));
  }
  return p;
}

int64_t ActivationBytesPerStage(int64_t act_layer, int64_t layers, int64_t recomputed, int64_t input_bytes,
                                int64_t in_flight) {
  const int64_t kept = (layers - recomputed) * act_layer + recomputed * input_bytes;
  return kept * in_flight + (recomputed > 0 ? act_layer : 0);
}

std::string FormatBytes(double bytes) {
  const double kib = 1024.0, mib = kib * 1024, gib = mib * 1024;
  if (bytes >= gib) return fmt::format("{:.2f} GiB", bytes / gib);
  if (bytes >= mib) return fmt::format("{:.1f} MiB", bytes / mib);
  if (bytes >= kib) return fmt::format("{:.1f} KiB", bytes / kib);
  return fmt::format("{:.0f} B", bytes);
}

std::string FormatPlan(const MemoryPlan& p, const std::string& model_name) {
  const auto& m = p.model;
  const int64_t world = p.tp * p.pp * p.dp;
  std::string o;
  o += fmt::format("model   {}: {} layers, hidden {}, intermediate {}, {} heads / {} kv heads, vocab {}; "
                   "{} base parameters\n",
                   model_name, m.num_hidden_layers, m.hidden_size, m.intermediate_size, m.num_attention_heads,
                   m.num_key_value_heads, m.vocab_size, FormatCount(m.NumParams()));
  o += fmt::format("layout  world = tp x pp x dp = {} x {} x {} = {}\n", p.tp, p.pp, p.dp, world);
  o += "        rank  = tp_rank + tp*(pp_rank + pp*dp_rank)   (tp fastest: a TP group is tp neighbouring "
       "ranks, so it stays within a node)\n";
  o += fmt::format("groups  tp {} (ranks of equal pp, dp rank) | pp {} (equal tp, dp) | dp {} (equal tp, pp) | "
                   "stage = tp x dp {} (adapter all-reduce)\n",
                   p.tp, p.pp, p.dp, p.tp * p.dp);
  o += fmt::format("step    global_batch {} = micro_batch {} x dp {} x m {} micro-batches; schedule {}; "
                   "bubble (p-1)/(m+p-1) = {}/{} = {:.1f}%\n",
                   p.global_batch, p.micro_batch, p.dp, p.micro_batches, p.schedule, p.pp - 1,
                   p.micro_batches + p.pp - 1, 100.0 * p.bubble());
  std::string targets;
  for (const auto& t : p.targets) targets += (targets.empty() ? "" : ",") + t;
  o += fmt::format("adapter {} rank {} on {}, {} tasks: {} fp32 parameters in the model "
                   "(x4 per rank: param, grad, AdamW m, v)\n",
                   p.method, p.rank, targets, p.options.num_tasks, FormatCount(p.adapter_params));
  o += fmt::format("memory  base {} ({} bytes/element, activations too); seq_len {}; recompute {} layer(s) per "
                   "stage; GPU {} GiB - {:.0f}% reserve = {} usable per rank\n\n",
                   p.options.elem_bytes == 2 ? "bf16" : "f32", p.options.elem_bytes, p.options.seq_len,
                   p.recompute_layers,
                   p.options.gpu_gib, 100.0 * p.options.reserve, FormatBytes(p.usable_bytes()));
  o += "per rank (every rank of a stage holds the same):\n";
  o += fmt::format("{:<6}{:<9}{:<16}{:>13}{:>12}{:>10}{:>14}{:>12}{:>13}  {}\n", "stage", "layers", "ranks",
                   "base weights", "adapters", "in flight", "activations", "logits", "total", "fits");
  for (const auto& s : p.stages) {
    o += fmt::format("{:<6}{:<9}{:<16}{:>13}{:>12}{:>10}{:>14}{:>12}{:>13}  {}\n", s.stage,
                     s.last_layer - s.first_layer == 1 ? fmt::format("{}", s.first_layer)
                                                       : fmt::format("{}-{}", s.first_layer, s.last_layer - 1), RankList(s.ranks),
                     FormatBytes(static_cast<double>(s.base_bytes)), FormatBytes(static_cast<double>(s.adapter_bytes)),
                     s.in_flight, FormatBytes(static_cast<double>(s.activation_bytes)),
                     s.logits_bytes ? FormatBytes(static_cast<double>(s.logits_bytes)) : std::string("-"),
                     FormatBytes(static_cast<double>(s.total_bytes())), p.Fits(s) ? "yes" : "NO");
  }
  bool all = true;
  for (const auto& s : p.stages) all = all && p.Fits(s);
  o += all ? fmt::format("fits: every rank within {}\n", FormatBytes(p.usable_bytes()))
           : fmt::format("does NOT fit: some stage exceeds {} (more tp or pp, a smaller micro_batch or "
                         "seq_len, 1f1b, or train.recompute_layers)\n",
                         FormatBytes(p.usable_bytes()));
  return o;
}

}  // namespace more
