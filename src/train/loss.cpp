#include "more/train/loss.h"

#include "more/core/error.h"

namespace more {

BatchTensors ToTensors(const MicroBatch& mb, torch::Device device) {
  const int64_t b = mb.batch_size, l = mb.seq_len, rows = mb.RowCount();
  BatchTensors t;
  t.task = mb.task;
  auto ids = torch::from_blob(const_cast<int32_t*>(mb.input_ids.data()), {rows, l}, torch::kInt32).to(torch::kInt64);
  auto tmask = torch::from_blob(const_cast<uint8_t*>(mb.target_mask.data()), {rows, l}, torch::kUInt8)
                   .to(torch::kFloat32);
  t.ids = ids.to(device);
  // next-token targets: position j predicts token j+1
  auto targets = torch::cat({ids.narrow(1, 1, l - 1), ids.narrow(1, l - 1, 1)}, 1);  // [R, L]
  t.targets = targets.to(device);
  if (!mb.packed) {
    auto loss_mask = torch::cat({tmask.narrow(1, 1, l - 1), torch::zeros({rows, 1})}, 1);  // [B, L]
    auto lengths = torch::from_blob(const_cast<int32_t*>(mb.lengths.data()), {b}, torch::kInt32).to(torch::kInt64);
    t.loss_mask = loss_mask.to(device);
    t.token_mask = (torch::arange(l).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kFloat32).to(device);
    // on the host, before the copy: the labelled rows' indices need no read back from a GPU
    auto pos = loss_mask.flatten().nonzero().flatten();                     // [n] ascending = by example
    t.num_labels = pos.size(0);
    t.label_pos = pos.to(device);
    t.label_targets = targets.flatten().index_select(0, pos).to(device);
    return t;
  }
  // Packed: an example's last token never predicts the next example's first (its mask is 0, as
  // the shifted mask of an unpacked row ends in 0); labels are listed example by example.
  std::vector<int64_t> pos;
  std::vector<float> pool(static_cast<size_t>(b * rows * l), 0.0f);        // [B, R*L]
  std::vector<float> real(static_cast<size_t>(rows * l), 0.0f);            // [R*L]
  for (int64_t e = 0; e < b; ++e) {
    const auto start = static_cast<int64_t>(mb.ExampleStart(static_cast<int>(e))), n = static_cast<int64_t>(mb.lengths[e]);
    for (int64_t j = 0; j + 1 < n; ++j)
      if (mb.target_mask[static_cast<size_t>(start + j + 1)]) pos.push_back(start + j);
    const float w = 1.0f / static_cast<float>(n);  // MeanPoolWeights' mask / count
    for (int64_t j = 0; j < n; ++j) {
      pool[static_cast<size_t>(e * rows * l + start + j)] = w;
      real[static_cast<size_t>(start + j)] = 1.0f;
    }
  }
  auto label_pos = torch::tensor(pos, torch::kInt64);                       // [n]
  t.num_labels = label_pos.size(0);
  t.label_pos = label_pos.to(device);
  t.label_targets = targets.flatten().index_select(0, label_pos).to(device);
  t.loss_mask = torch::zeros({rows * l}).index_fill_(0, label_pos, 1.0f).view({rows, l}).to(device);  // [R, L]
  t.token_mask = torch::tensor(real).view({rows, l}).to(device);
  t.pool_matrix = torch::tensor(pool).view({b, rows * l}).to(device);
  t.positions = torch::from_blob(const_cast<int32_t*>(mb.position_ids.data()), {rows, l}, torch::kInt32)
                    .to(torch::kInt64).to(device);
  // segment id of every token of the flattened grid, then allowed = same segment and j <= i
  const auto nseg = static_cast<int64_t>(mb.segment_example.size());
  MORE_CHECK(static_cast<int64_t>(mb.cu_seqlens.size()) == nseg + 1 && mb.cu_seqlens.back() == rows * l,
             "packed micro-batch: cu_seqlens ({} entries, last {}) do not cover {} x {} tokens", mb.cu_seqlens.size(),
             mb.cu_seqlens.empty() ? -1 : mb.cu_seqlens.back(), rows, l);
  t.cu_seqlens = torch::tensor(mb.cu_seqlens, torch::kInt32);              // [S+1]
  auto seg = torch::repeat_interleave(torch::arange(nseg), t.cu_seqlens.to(torch::kInt64).diff()).view({rows, l});
  auto causal = torch::ones({l, l}, torch::kBool).tril();                  // [L, L]
  t.attn_mask = (seg.unsqueeze(2) == seg.unsqueeze(1)).logical_and(causal).unsqueeze(1).to(device);  // [R, 1, L, L]
  return t;
}

}  // namespace more
