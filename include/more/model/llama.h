// LLaMA-family decoder (HF LlamaForCausalLM semantics; MistralForCausalLM and Qwen2ForCausalLM
// through the switches of LlamaConfig: head_dim, rope type, q/k/v biases, tied head) split for
// tensor and pipeline parallelism.
// A LlamaStage holds the layers of one pipeline stage (pp rank i owns layers
// [i*L/pp, (i+1)*L/pp)), plus the token embedding on the first stage and the final norm and
// LM head on the last. Base weights are frozen (no autograd leaves); only adapters train
// (more_pretrain alone makes them trainable, through BaseWeights()).
//
// Per layer (x [B, S, D], local head counts H/tp and KV/tp):
//   h  = x + o( attn( rope(q(n1)), rope(k(n1)), v(n1) ) ),  n1 = RMSNorm(x)
//   y  = h + down( silu(gate(n2)) * up(n2) ),               n2 = RMSNorm(h)
//   RMSNorm(x) = x * rsqrt(mean(x^2) + eps) * w              (in fp32)
//   q, k, v = n1 W^T (+ b for qwen2);  hd = head_dim (config, or D / H)
//   rope: HF rotate_half form, inv_freq_j = theta^(-2j/hd) (scaled by the rope type:
//         LlamaConfig::RopeInvFreq), cos/sin over cat(freqs, freqs)
//   attn: grouped-query: query head h uses kv head h / (H/KV); causal softmax(q k^T/sqrt(hd)) v
// q, k, v, gate, up are column-parallel; o, down row-parallel; embedding and LM head are
// vocabulary-parallel. Sequences are right-padded, so the causal mask alone keeps padding out
// of every real token's attention. Packed rows (data.packing, ForwardContext::positions /
// attn_mask): RoPE at each token's position inside its example, attention causal inside each
// example and never across (SegmentCausalAttention).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "more/adapter/adapter_set.h"
#include "more/config/config.h"
#include "more/core/safetensors.h"
#include "more/dist/process_grid.h"
#include "more/model/fused_ops.h"
#include "more/model/hf_config.h"
#include "more/parallel/adapted_linear.h"

namespace more {

// The adapted module kinds and their global shapes for a model.
struct ModuleShape {
  std::string kind;      // q k v o gate up down
  int64_t d_in, d_out;
  ParallelKind parallel;
};
std::vector<ModuleShape> LlamaModuleShapes(const LlamaConfig& c);
std::pair<int64_t, int64_t> StageLayerRange(const LlamaConfig& c, int pp_rank, int pp);
// Hugging Face name of a module kind inside a layer: "q" -> "self_attn.q_proj", ...
std::string HfModuleName(const std::string& kind);
// Creates the adapters of this stage's layers (names "layers.<i>.<kind>"), fp32 on `device`.
std::unique_ptr<AdapterSet> BuildAdapters(const LlamaConfig& c, const AdapterOptions& opt,
                                          const std::vector<std::string>& targets, const ProcessGrid& grid,
                                          torch::Device device = torch::kCPU);

class LlamaStage {
 public:
  // Loads this rank's slices. adapters may be null (plain base model).
  LlamaStage(const LlamaConfig& cfg, const SafetensorsCollection& weights, const ProcessGrid& grid,
             AdapterSet* adapters, torch::ScalarType dtype, torch::Device device);

  // First stage: ids [B, S] int64 -> hidden [B, S, D].
  torch::Tensor Embed(const torch::Tensor& ids) const;
  // This stage's layers: hidden [B, S, D] -> [B, S, D].
  torch::Tensor Layers(torch::Tensor hidden, ForwardContext& ctx) const;
  // Last stage: final norm + LM head: hidden [B, S, D] -> local logits [B, S, V/tp].
  torch::Tensor LocalLogits(const torch::Tensor& hidden) const;
  // Last stage: per-token next-token NLL. hidden [B, S, D], targets [B, S] -> [B, S] fp32.
  torch::Tensor TokenNll(const torch::Tensor& hidden, const torch::Tensor& targets) const;
  // Last stage: the same NLL at the given positions only: the final norm, the LM head's GEMM and
  // the cross-entropy run on those rows ([n, D] x [D, V/tp]), not on all B*S. hidden [B, S, D];
  // pos [n] int64 flat positions (row * S + col); targets_at [n] -> [n] fp32. Equal to
  // TokenNll(hidden, targets).flatten().index_select(0, pos), values and gradients.
  torch::Tensor TokenNllAt(const torch::Tensor& hidden, const torch::Tensor& pos,
                           const torch::Tensor& targets_at) const;
  // Full-vocabulary logits [B, S, V] (gathered over TP; single-stage only) for tests/tools.
  torch::Tensor FullLogits(const torch::Tensor& ids, ForwardContext& ctx) const;

  const LlamaConfig& config() const { return cfg_; }
  int64_t first_layer() const { return first_; }
  int64_t last_layer() const { return last_; }
  torch::ScalarType dtype() const { return dtype_; }
  // causal attention kernel (model.attention); kAuto until set
  void set_attention(AttentionImpl impl) { attention_ = impl; }
  // Activation recomputation: the first `layers` layers of this stage keep only their input
  // during the forward and rerun it in the backward (0 = none; more than the stage has = all).
  // Same losses and gradients, up to float summation order of the contrastive terms.
  void SetRecompute(int64_t layers) { recompute_layers_ = layers; }
  torch::Device device() const { return cos_.device(); }
  // Base weight of module "layers.<i>.<kind>" (local shard), for merge tests and export.
  const AdaptedLinear& Linear(int64_t layer, const std::string& kind) const;
  // This rank's base weights under their Hugging Face names: the stage's own tensors (not
  // copies), so more_pretrain can make them trainable. A tied LM head held together with the
  // embedding is one tensor, listed once.
  std::vector<std::pair<std::string, torch::Tensor>> BaseWeights() const;

 private:
  struct Layer {
    torch::Tensor ln1, ln2;  // [D]
    AdaptedLinear q, k, v, o, gate, up, down;
  };
  class RecomputeBackward;
  torch::Tensor LayerForward(const Layer& l, torch::Tensor h, ForwardContext& ctx) const;
  torch::Tensor RecomputedLayer(const Layer& l, const torch::Tensor& h, ForwardContext& ctx) const;
  torch::Tensor RmsNorm(const torch::Tensor& x, const torch::Tensor& w) const;
  // Last stage: the LM head's input, the final norm of hidden [.., D] made TP-replicated.
  torch::Tensor HeadInput(const torch::Tensor& hidden) const;
  torch::Tensor Attention(const Layer& l, const torch::Tensor& x, ForwardContext& ctx) const;
  // x [B, h, S, hd]; scale multiplies the result (folded into the cos / sin tables); positions
  // [B, S] int64 (packed rows) or undefined (0..S-1 in every row)
  torch::Tensor ApplyRope(const torch::Tensor& x, int64_t seq, double scale = 1.0,
                          const torch::Tensor& positions = {}) const;

  LlamaConfig cfg_;
  const ProcessGrid& grid_;
  torch::ScalarType dtype_;
  AttentionImpl attention_ = AttentionImpl::kAuto;
  int64_t recompute_layers_ = 0;
  int64_t first_ = 0, last_ = 0;
  int64_t heads_local_ = 0, kv_local_ = 0, head_dim_ = 0;
  torch::Tensor embed_;    // [V/tp, D]   first stage
  torch::Tensor norm_;     // [D]         last stage
  torch::Tensor lm_head_;  // [V/tp, D]   last stage
  torch::Tensor cos_, sin_;  // [max_pos, hd] fp32
  std::vector<Layer> layers_;
};

}  // namespace more
