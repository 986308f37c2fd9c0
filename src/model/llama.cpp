#include "more/model/llama.h"

#include <algorithm>
#include <cmath>

#include <torch/csrc/autograd/functions/utils.h>

#include "more/core/error.h"
#include "more/core/strings.h"
#include "more/model/fused_ops.h"
#include "more/model/weights.h"
#include "more/parallel/tp_ops.h"
#include "more/parallel/vocab_parallel.h"

namespace more {

std::vector<ModuleShape> LlamaModuleShapes(const LlamaConfig& c) {
  const int64_t d = c.hidden_size, hd = c.head_dim(), i = c.intermediate_size;
  return {{"q", d, c.num_attention_heads * hd, ParallelKind::kColumn},
          {"k", d, c.num_key_value_heads * hd, ParallelKind::kColumn},
          {"v", d, c.num_key_value_heads * hd, ParallelKind::kColumn},
          {"o", c.num_attention_heads * hd, d, ParallelKind::kRow},
          {"gate", d, i, ParallelKind::kColumn},
          {"up", d, i, ParallelKind::kColumn},
          {"down", i, d, ParallelKind::kRow}};
}

std::pair<int64_t, int64_t> StageLayerRange(const LlamaConfig& c, int pp_rank, int pp) {
  MORE_CHECK(c.num_hidden_layers % pp == 0, "num_hidden_layers {} is not divisible by pp {}",
             c.num_hidden_layers, pp);
  const int64_t per = c.num_hidden_layers / pp;
  return {pp_rank * per, (pp_rank + 1) * per};
}

std::unique_ptr<AdapterSet> BuildAdapters(const LlamaConfig& c, const AdapterOptions& opt,
                                          const std::vector<std::string>& targets, const ProcessGrid& grid,
                                          torch::Device device) {
  auto [first, last] = StageLayerRange(c, grid.pp_rank(), grid.layout().pp);
  std::vector<std::unique_ptr<MoreAdapter>> adapters;
  const auto shapes = LlamaModuleShapes(c);
  for (int64_t layer = first; layer < last; ++layer)
    for (const auto& s : shapes)
      if (std::find(targets.begin(), targets.end(), s.kind) != targets.end())
        adapters.push_back(std::make_unique<MoreAdapter>(fmt::format("layers.{}.{}", layer, s.kind), s.d_in,
                                                         s.d_out, opt, s.parallel, grid.tp_rank(),
                                                         grid.layout().tp));
  return std::make_unique<AdapterSet>(std::move(adapters), device);
}

std::string HfModuleName(const std::string& kind) {
  if (kind == "q") return "self_attn.q_proj";
  if (kind == "k") return "self_attn.k_proj";
  if (kind == "v") return "self_attn.v_proj";
  if (kind == "o") return "self_attn.o_proj";
  if (kind == "gate") return "mlp.gate_proj";
  if (kind == "up") return "mlp.up_proj";
  if (kind == "down") return "mlp.down_proj";
  Fail("unknown module kind '{}'", kind);
}

LlamaStage::LlamaStage(const LlamaConfig& cfg, const SafetensorsCollection& st, const ProcessGrid& grid,
                       AdapterSet* adapters, torch::ScalarType dtype, torch::Device device)
    : cfg_(cfg), grid_(grid), dtype_(dtype) {
  cfg_.Validate("model config");
  const int tp = grid.layout().tp, tr = grid.tp_rank();
  std::tie(first_, last_) = StageLayerRange(cfg, grid.pp_rank(), grid.layout().pp);
  head_dim_ = cfg.head_dim();
  heads_local_ = cfg.num_attention_heads / tp;
  kv_local_ = cfg.num_key_value_heads / tp;
  MORE_CHECK(cfg.num_attention_heads % tp == 0 && cfg.num_key_value_heads % tp == 0,
             "heads {} / kv heads {} not divisible by tp {} (tp may not exceed num_key_value_heads: kv heads are "
             "split, not replicated)", cfg.num_attention_heads, cfg.num_key_value_heads, tp);
  const int64_t d = cfg.hidden_size, v = cfg.vocab_size;
  auto load = [&](const std::string& name, std::vector<int64_t> shape, int split) {
    return LoadTensorSlice(st, name, shape, split, tr, tp, dtype, device);
  };
  if (grid.first_stage()) embed_ = load("model.embed_tokens.weight", {v, d}, 0);
  if (grid.last_stage()) {
    norm_ = load("model.norm.weight", {d}, -1);
    if (cfg.tie_word_embeddings)  // one tensor where the stage holds both ends (a trainable tie)
      lm_head_ = embed_.defined() ? embed_ : load("model.embed_tokens.weight", {v, d}, 0);
    else
      lm_head_ = load("lm_head.weight", {v, d}, 0);
  }
  const auto shapes = LlamaModuleShapes(cfg);
  for (int64_t i = first_; i < last_; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    Layer l;
    l.ln1 = load(p + "input_layernorm.weight", {d}, -1);
    l.ln2 = load(p + "post_attention_layernorm.weight", {d}, -1);
    for (const auto& s : shapes) {
      const int split = s.parallel == ParallelKind::kColumn ? 0 : 1;
      auto w = load(p + HfModuleName(s.kind) + ".weight", {s.d_out, s.d_in}, split);
      // q, k, v biases (qwen2): frozen, split with their output rows
      const bool bias = cfg.qkv_bias && (s.kind == "q" || s.kind == "k" || s.kind == "v");
      auto b = bias ? load(p + HfModuleName(s.kind) + ".bias", {s.d_out}, 0) : torch::Tensor();
      MoreAdapter* a = adapters ? adapters->Find(fmt::format("layers.{}.{}", i, s.kind)) : nullptr;
      AdaptedLinear lin(w, s.parallel, a, &grid.tp(), b);
      if (s.kind == "q") l.q = lin;
      else if (s.kind == "k") l.k = lin;
      else if (s.kind == "v") l.v = lin;
      else if (s.kind == "o") l.o = lin;
      else if (s.kind == "gate") l.gate = lin;
      else if (s.kind == "up") l.up = lin;
      else l.down = lin;
    }
    layers_.push_back(std::move(l));
  }
  // rotary tables [max_pos, hd]; inv_freq of the config's rope type (default, linear, llama3)
  const auto inv_freq = cfg.RopeInvFreq();
  auto inv = torch::tensor(inv_freq, torch::kFloat64);                     // [hd/2]
  auto pos = torch::arange(cfg.max_position_embeddings, torch::kFloat64);
  auto freqs = torch::outer(pos, inv);                                      // [P, hd/2]
  auto emb = torch::cat({freqs, freqs}, -1);                                // [P, hd]
  cos_ = emb.cos().to(device, torch::kFloat32);
  sin_ = emb.sin().to(device, torch::kFloat32);
}

const AdaptedLinear& LlamaStage::Linear(int64_t layer, const std::string& kind) const {
  MORE_CHECK(layer >= first_ && layer < last_, "layer {} is not on this stage [{}, {})", layer, first_, last_);
  const auto& l = layers_[layer - first_];
  if (kind == "q") return l.q;
  if (kind == "k") return l.k;
  if (kind == "v") return l.v;
  if (kind == "o") return l.o;
  if (kind == "gate") return l.gate;
  if (kind == "up") return l.up;
  if (kind == "down") return l.down;
  Fail("unknown module kind '{}'", kind);
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaStage::BaseWeights() const {
  std::vector<std::pair<std::string, torch::Tensor>> w;
  if (embed_.defined()) w.emplace_back("model.embed_tokens.weight", embed_);
  for (int64_t i = first_; i < last_; ++i) {
    const auto& l = layers_[i - first_];
    const std::string p = fmt::format("model.layers.{}.", i);
    w.emplace_back(p + "input_layernorm.weight", l.ln1);
    w.emplace_back(p + "post_attention_layernorm.weight", l.ln2);
    for (const auto& s : LlamaModuleShapes(cfg_)) {
      const auto& lin = Linear(i, s.kind);
      w.emplace_back(p + HfModuleName(s.kind) + ".weight", lin.weight());
      if (lin.bias().defined()) w.emplace_back(p + HfModuleName(s.kind) + ".bias", lin.bias());
    }
  }
  if (norm_.defined()) w.emplace_back("model.norm.weight", norm_);
  if (lm_head_.defined() && !(cfg_.tie_word_embeddings && embed_.defined())) {
    w.emplace_back(cfg_.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", lm_head_);
  }
  return w;
}

torch::Tensor LlamaStage::RmsNorm(const torch::Tensor& x, const torch::Tensor& w) const {
  return FusedRmsNorm(x, w, cfg_.rms_norm_eps);
}

torch::Tensor LlamaStage::ApplyRope(const torch::Tensor& x, int64_t seq, double scale,
                                    const torch::Tensor& positions) const {
  MORE_CHECK(seq <= cos_.size(0), "sequence length {} exceeds max_position_embeddings {}", seq, cos_.size(0));
  cfg_.CheckSequenceLength(seq, "sequences");
  torch::Tensor c, s;
  if (positions.defined()) {  // packed rows: each token at its position inside its example
    const auto b = positions.size(0);
    auto p = positions.to(cos_.device()).flatten();                         // [B*S] < S <= max_pos
    c = cos_.index_select(0, p).view({b, 1, seq, cos_.size(1)});           // [B, 1, S, hd]
    s = sin_.index_select(0, p).view({b, 1, seq, sin_.size(1)});
  } else {
    c = cos_.narrow(0, 0, seq);                                             // [S, hd]
    s = sin_.narrow(0, 0, seq);
  }
  if (scale != 1.0) {
    c = c * scale;  // the attention scale folded into the [S, hd] tables: no pass over q
    s = s * scale;
  }
  c = c.to(x.scalar_type());
  s = s.to(x.scalar_type());
  return FusedRope(x, c, s);                                                // x c + rotate_half(x) s
}

torch::Tensor LlamaStage::Attention(const Layer& l, const torch::Tensor& x, ForwardContext& ctx) const {
  const int64_t b = x.size(0), s = x.size(1);
  auto n = CopyToTp(RmsNorm(x, l.ln1), grid_.tp());                        // [B, S, D]
  auto q = l.q.Forward(n, ctx).view({b, s, heads_local_, head_dim_}).transpose(1, 2);  // [B, H/tp, S, hd]
  auto k = l.k.Forward(n, ctx).view({b, s, kv_local_, head_dim_}).transpose(1, 2);     // [B, KV/tp, S, hd]
  auto v = l.v.Forward(n, ctx).view({b, s, kv_local_, head_dim_}).transpose(1, 2);     // [B, KV/tp, S, hd]
  q = ApplyRope(q, s, 1.0 / std::sqrt(static_cast<double>(head_dim_)), ctx.positions);  // q / sqrt(hd)
  k = ApplyRope(k, s, 1.0, ctx.positions);
  const int64_t groups = heads_local_ / kv_local_;
  if (groups > 1) {
    k = k.repeat_interleave(groups, 1);                                     // [B, H/tp, S, hd]
    v = v.repeat_interleave(groups, 1);
  }
  // packed rows: causal inside each example only (the block-diagonal mask)
  auto att = ctx.attn_mask.defined() ? SegmentCausalAttention(q, k, v, ctx.attn_mask, attention_)
                                     : CausalAttention(q, k, v, attention_);  // [B, H/tp, S, hd]
  auto out = att.transpose(1, 2).reshape({b, s, heads_local_ * head_dim_});  // [B, S, H/tp*hd]
  return l.o.Forward(out, ctx);                                            // [B, S, D]
}

torch::Tensor LlamaStage::Embed(const torch::Tensor& ids) const {
  MORE_CHECK(embed_.defined(), "Embed() called on a stage without the embedding (pp rank {})", grid_.pp_rank());
  return VocabParallelEmbedding(ids, embed_, grid_.tp_rank() * embed_.size(0), grid_.tp());
}

torch::Tensor LlamaStage::LayerForward(const Layer& l, torch::Tensor h, ForwardContext& ctx) const {
  h = h + Attention(l, h, ctx);
  auto n = CopyToTp(RmsNorm(h, l.ln2), grid_.tp());
  auto a = FusedSwiGlu(l.gate.Forward(n, ctx), l.up.Forward(n, ctx));     // [B, S, I/tp]
  return h + l.down.Forward(a, ctx);
}

namespace {

// The context a layer's forward needs, without the contrastive terms already collected or the
// pooling cache (a recomputation starts from a fresh one).
ForwardContext FreshContext(const ForwardContext& c) {
  ForwardContext f;
  f.task = c.task;
  f.training = c.training;
  f.token_mask = c.token_mask;
  f.positions = c.positions;
  f.attn_mask = c.attn_mask;
  f.pool_matrix = c.pool_matrix;
  f.contrastive = c.contrastive;
  return f;
}

// State of a device's default generator (adapter dropout), so a recomputation draws the masks
// the first forward drew.
struct RngState {
  c10::Device device = c10::kCPU;
  torch::Tensor state;
  static RngState Save(c10::Device d) {
    auto gen = at::globalContext().defaultGenerator(d);
    std::lock_guard<std::mutex> lock(gen.mutex());
    return {d, gen.get_state()};
  }
  void Restore() const {
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(state);
  }
};

}  // namespace

// Backward of a recomputed layer (reentrant activation checkpointing): it holds only the layer
// input; its backward reruns the layer's forward with gradients on (same dropout masks, same TP
// collectives in the same order on every TP rank) and back-propagates through that graph, which
// accumulates the adapters' gradients and yields the input's.
class LlamaStage::RecomputeBackward : public torch::autograd::Node {
 public:
  RecomputeBackward(const LlamaStage& stage, const Layer& layer, torch::Tensor input, ForwardContext ctx,
                    RngState rng, bool has_cl)
      : stage_(stage), layer_(layer), input_(std::move(input)), ctx_(std::move(ctx)), rng_(std::move(rng)),
        has_cl_(has_cl) {}
  std::string name() const override { return "more::RecomputeBackward"; }
  void release_variables() override { input_.reset(); }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    MORE_CHECK(input_.defined(), "recomputed layer: backward called twice");
    const auto now = RngState::Save(rng_.device);
    rng_.Restore();
    torch::Tensor x, out, cl;
    {
      torch::AutoGradMode on(true);
      x = input_.detach().requires_grad_(true);
      auto ctx = FreshContext(ctx_);
      out = stage_.LayerForward(layer_, x, ctx);
      ctx.FlushContrastive();
      if (has_cl_) cl = torch::stack(ctx.cl_losses).sum();
    }
    now.Restore();
    std::vector<torch::Tensor> outs, gs;
    if (grads.at(0).defined()) {
      outs.push_back(out);
      gs.push_back(grads[0]);
    }
    if (has_cl_ && grads.size() > 1 && grads[1].defined()) {
      outs.push_back(cl);
      gs.push_back(grads[1]);
    }
    if (!outs.empty()) torch::autograd::backward(outs, gs);
    input_.reset();
    return {x.grad()};
  }

 private:
  const LlamaStage& stage_;
  const Layer& layer_;
  torch::Tensor input_;
  ForwardContext ctx_;
  RngState rng_;
  bool has_cl_;
};

torch::Tensor LlamaStage::RecomputedLayer(const Layer& l, const torch::Tensor& h, ForwardContext& ctx) const {
  auto rng = RngState::Save(h.device());
  auto inner = FreshContext(ctx);
  torch::Tensor out, cl;
  {
    torch::NoGradGuard ng;  // no graph: only the input is kept
    out = LayerForward(l, h, inner);
    inner.FlushContrastive();
    if (!inner.cl_losses.empty()) cl = torch::stack(inner.cl_losses).sum();
  }
  const bool has_cl = cl.defined();
  auto node = std::make_shared<RecomputeBackward>(*this, l, h.detach(), FreshContext(ctx), std::move(rng), has_cl);
  node->set_next_edges(torch::autograd::collect_next_edges(h));
  torch::autograd::create_gradient_edge(out, node);  // output 0
  if (has_cl) {
    torch::autograd::create_gradient_edge(cl, node);  // output 1: the layer's contrastive terms, summed
    ctx.cl_losses.push_back(cl);
  }
  return out;
}

torch::Tensor LlamaStage::Layers(torch::Tensor h, ForwardContext& ctx) const {
  const bool recompute = recompute_layers_ > 0 && torch::GradMode::is_enabled();
  for (size_t i = 0; i < layers_.size(); ++i)
    h = recompute && static_cast<int64_t>(i) < recompute_layers_ ? RecomputedLayer(layers_[i], h, ctx)
                                                                : LayerForward(layers_[i], h, ctx);
  ctx.FlushContrastive();  // the stage's contrastive terms, batched across its layers
  return h;
}

torch::Tensor LlamaStage::HeadInput(const torch::Tensor& hidden) const {
  MORE_CHECK(lm_head_.defined(), "LM head called on a stage that is not the last (pp rank {})", grid_.pp_rank());
  return CopyToTp(RmsNorm(hidden, norm_), grid_.tp());                     // [B, S, D]
}

torch::Tensor LlamaStage::LocalLogits(const torch::Tensor& hidden) const {
  return torch::matmul(HeadInput(hidden), lm_head_.t());                   // [B, S, V/tp]
}

torch::Tensor LlamaStage::TokenNll(const torch::Tensor& hidden, const torch::Tensor& targets) const {
  const auto b = hidden.size(0), s = hidden.size(1);
  auto n = HeadInput(hidden);
  auto nll = LinearVocabParallelNll(n.reshape({b * s, n.size(2)}), lm_head_, targets.reshape({b * s}),
                                    grid_.tp_rank() * lm_head_.size(0), grid_.tp());
  return nll.view({b, s});                                                  // [B, S]
}

torch::Tensor LlamaStage::TokenNllAt(const torch::Tensor& hidden, const torch::Tensor& pos,
                                     const torch::Tensor& targets_at) const {
  MORE_CHECK(pos.dim() == 1 && targets_at.sizes() == pos.sizes(), "TokenNllAt: pos [{}] and targets [{}] must be [n]",
             fmt::join(pos.sizes(), ", "), fmt::join(targets_at.sizes(), ", "));
  const auto d = hidden.size(2);
  auto rows = hidden.reshape({-1, d}).index_select(0, pos);                 // [n, D]
  return LinearVocabParallelNll(HeadInput(rows), lm_head_, targets_at, grid_.tp_rank() * lm_head_.size(0),
                                grid_.tp());                                // [n]
}

torch::Tensor LlamaStage::FullLogits(const torch::Tensor& ids, ForwardContext& ctx) const {
  MORE_CHECK(grid_.layout().pp == 1, "FullLogits needs the whole model on one stage");
  return GatherFromTp(LocalLogits(Layers(Embed(ids), ctx)), grid_.tp());  // [B, S, V]
}

}  // namespace more
