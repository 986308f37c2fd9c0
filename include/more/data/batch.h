// A single-task micro-batch as the data pipeline hands it to the trainer (no torch here;
// the trainer wraps these buffers in tensors).
//
// Unpacked (the default): row i holds example i alone, padded to L.
// Packed (data.packing; PackMicroBatch in sequence_packing.h): the B examples lie in R <= B rows
// of L columns, several per row, each contiguous and never split across rows. The per-example
// vectors ([B]: lengths, prompt_lengths, labels, rows) keep the sampler's example order in both
// forms; example_row / example_offset say where example i lies.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace more {

struct MicroBatch {
  int task = -1;        // task id: index into the shard set's task list (same on every stage)
  int batch_size = 0;   // B: examples (local to this data-parallel rank)
  int seq_len = 0;      // L: padded to a bucket (multiple of data.bucket) <= max_len
  std::vector<int32_t> input_ids;    // [R, L] row-major, padded with pad id
  std::vector<uint8_t> target_mask;  // [R, L] 1 where token j is a target (loss predicts it from j-1)
  std::vector<int32_t> lengths;      // [B] tokens before padding
  std::vector<int32_t> prompt_lengths;  // [B] BOS + prompt tokens
  std::vector<int32_t> label_index;  // [B] index into the task's candidates, -1 if none
  std::vector<float> label_value;    // [B] numeric label (regression tasks), NaN if none
  std::vector<int64_t> rows;         // [B] row ids inside the task (for debugging / eval)

  // Packed layout (empty vectors and packed = false when unpacked).
  bool packed = false;
  int num_rows = 0;                      // R (packed only; unpacked R = B)
  std::vector<int32_t> example_row;      // [B] the row example i lies in
  std::vector<int32_t> example_offset;   // [B] its first column in that row
  std::vector<int32_t> position_ids;     // [R, L] token's position inside its segment (0 at each start)
  // Segments over the flattened [R * L] token grid, row by row: the row's examples in column
  // order, then the row's padding (if any) as one segment of its own. cu_seqlens [S + 1] are
  // their boundaries (0, ..., R * L): the varlen form (flash-attn's cu_seqlens, max_seqlen = L).
  // Attention is causal inside a segment and never crosses one.
  std::vector<int32_t> cu_seqlens;       // [S + 1]
  std::vector<int32_t> segment_example;  // [S] example index of each segment, -1 for padding

  int RowCount() const { return packed ? num_rows : batch_size; }  // R
  // Where example i's first token lies in the flattened [R, L] grid (packed or not).
  size_t ExampleStart(int i) const {
    const auto e = static_cast<size_t>(i);
    return packed ? static_cast<size_t>(example_row[e]) * static_cast<size_t>(seq_len) + static_cast<size_t>(example_offset[e])
                  : e * static_cast<size_t>(seq_len);
  }
};

}  // namespace more
