// model.attention = measure: the causal-attention implementation chosen by measurement at start-up
// (opt-in; model.attention = auto, the default, is the fixed rule: fused where this LibTorch has
// it, else composed, so two fresh runs of one config on one build compute the same bits; a
// measured choice can flip between two fresh runs on a loaded machine).
//
// The candidates are the implementations this build has that can run the batch's attention
// (AttentionCandidates: composed always, fused where LibTorch has scaled_dot_product_attention).
// Each rank times every candidate, forward + backward, on the run's largest attention shape
// ([micro_batch, local heads, longest padded row, head_dim] in the base dtype on the run's
// device; the forwards of up to 4 of the stage's layers kept alive before their backward, as in a
// step, so that the composed path's [B, H, S, S] scores are timed out of the caches), alternating, the fastest of at least `iters` timed rounds after one warm-up (more, up to
// 50, until the rounds took 0.1 s: small shapes get a stable minimum); the times are
// all-reduced (max over ranks: the slowest rank sets the step), so every rank makes the same
// choice. The default of the fixed rule (fused where available: O(S) memory) is kept unless
// another candidate is faster by more than `margin` (a relative margin: a choice that flips on
// noise would make two fresh runs of one config differ in their last bits).
// A resumed run does not measure: it uses the choice recorded in its checkpoint (state.json
// "attention"), so it computes what the run it resumes computed.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "more/dist/communicator.h"
#include "more/model/fused_ops.h"

namespace more {

const char* AttentionName(AttentionImpl impl);  // "auto" | "fused" | "composed"
// "fused" | "composed" (a recorded or configured choice); throws more::Error naming `what`.
AttentionImpl ParseAttentionImpl(const std::string& name, const std::string& what);
// The implementations of this build that can run unmasked causal attention, the fixed rule's
// default first (fused where available, then composed).
std::vector<AttentionImpl> AttentionCandidates();

struct AttentionShape {
  int64_t batch = 1, heads = 1, seq = 1, head_dim = 1;
  int64_t layers = 1;  // forwards kept alive before their backward (a stage's layers, capped by the caller)
};

struct AttentionChoice {
  AttentionImpl impl = AttentionImpl::kAuto;
  std::string how;                           // for the log: "measured", "checkpoint ...", "model.attention=..."
  std::vector<std::pair<AttentionImpl, double>> seconds;  // measured forward + backward per candidate (max
                                                          // over ranks); empty when not measured
  std::string Describe() const;              // one log line: the choice, how, and the times
};

// Times `candidates` (forward + backward of CausalAttention on random inputs of `shape`) and
// picks as described above. `comm`: the ranks that must agree (the whole world); collective.
AttentionChoice MeasureAttention(const std::vector<AttentionImpl>& candidates, const AttentionShape& shape,
                                 torch::ScalarType dtype, torch::Device device, const Communicator& comm,
                                 int iters = 3, double margin = 0.10);

// The run's choice for model.attention = `setting`: fused / composed as configured (fused needs
// LibTorch >= 2.1: refused otherwise); auto and measure: `recorded` (the choice in the checkpoint
// a run resumes, `source` names it; "" = none, e.g. a fresh run or a checkpoint older than the
// record), else for auto the fixed rule (AttentionCandidates().front()) and for measure
// MeasureAttention over AttentionCandidates(). A recorded fused on a build without it is
// refused (the resumed run would compute something else). Collective over `comm` when it measures.
AttentionChoice ResolveAttention(const std::string& setting, const std::string& recorded, const std::string& source,
                                 const AttentionShape& shape, torch::ScalarType dtype, torch::Device device,
                                 const Communicator& comm);

}  // namespace more
