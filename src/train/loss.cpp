#include "more/train/loss.h"

namespace more {

BatchTensors ToTensors(const MicroBatch& mb, torch::Device device) {
  const int64_t b = mb.batch_size, l = mb.seq_len;
  BatchTensors t;
  t.task = mb.task;
  auto ids = torch::from_blob(const_cast<int32_t*>(mb.input_ids.data()), {b, l}, torch::kInt32).to(torch::kInt64);
  auto tmask = torch::from_blob(const_cast<uint8_t*>(mb.target_mask.data()), {b, l}, torch::kUInt8)
                   .to(torch::kFloat32);
  auto lengths = torch::from_blob(const_cast<int32_t*>(mb.lengths.data()), {b}, torch::kInt32).to(torch::kInt64);
  t.ids = ids.to(device);
  // next-token targets: position j predicts token j+1
  t.targets = torch::cat({ids.narrow(1, 1, l - 1), ids.narrow(1, l - 1, 1)}, 1).to(device);
  t.loss_mask = torch::cat({tmask.narrow(1, 1, l - 1), torch::zeros({b, 1})}, 1).to(device);
  t.token_mask = (torch::arange(l).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kFloat32).to(device);
  // on the host, before the copy: the labelled rows' indices need no read back from a GPU
  auto loss_mask = torch::cat({tmask.narrow(1, 1, l - 1), torch::zeros({b, 1})}, 1).flatten();
  auto pos = loss_mask.nonzero().flatten();                                 // [n] ascending
  auto targets = torch::cat({ids.narrow(1, 1, l - 1), ids.narrow(1, l - 1, 1)}, 1).flatten();
  t.num_labels = pos.size(0);
  t.label_pos = pos.to(device);
  t.label_targets = targets.index_select(0, pos).to(device);
  return t;
}

}  // namespace more
