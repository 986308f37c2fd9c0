// A single-task micro-batch as the data pipeline hands it to the trainer (no torch here;
// the trainer wraps these buffers in tensors).
#pragma once
#include <cstdint>
#include <vector>

namespace more {

struct MicroBatch {
  int task = -1;        // task id: index into the shard set's task list (same on every stage)
  int batch_size = 0;   // B (local to this data-parallel rank)
  int seq_len = 0;      // L: padded to a bucket (multiple of data.bucket) <= max_len
  std::vector<int32_t> input_ids;    // [B, L] row-major, padded with pad id
  std::vector<uint8_t> target_mask;  // [B, L] 1 where token j is a target (loss predicts it from j-1)
  std::vector<int32_t> lengths;      // [B] tokens before padding
  std::vector<int32_t> prompt_lengths;  // [B] BOS + prompt tokens
  std::vector<int32_t> label_index;  // [B] index into the task's candidates, -1 if none
  std::vector<float> label_value;    // [B] numeric label (regression tasks), NaN if none
  std::vector<int64_t> rows;         // [B] row ids inside the task (for debugging / eval)
};

}  // namespace more
