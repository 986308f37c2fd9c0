// Same-task sequence packing (data.packing): the B examples of one micro-batch, read unpacked
// ([B, L_b], one example per row), laid into as few rows of at most `capacity` tokens as the
// rule below finds, rows padded to a multiple of `bucket` (capped at capacity).
//
// Rule: first-fit decreasing. Examples are taken longest first (ties: lower example index
// first); each goes into the first row (in creation order) with room for it, else opens a new
// row. Inside a row examples lie in the order they were placed. Why: FFD uses at most
// 11/9 OPT + 6/9 rows (in-order next-fit can need nearly 2x), it is a pure function of the
// lengths (deterministic on every rank and stage, so every pipeline stage and a resumed run
// rebuild the same layout from the same batch), and it costs O(B * R) integer work.
// No example is ever split: capacity must be >= every example's length (shards hold rows of
// at most max_len tokens, over-long examples were handled at shard time by --overlong).
//
// The per-example vectors stay [B] in the sampler's order; see batch.h for the packed fields.
// Padding positions get pad_id, target mask 0, and form one segment per row (position ids
// 0, 1, ... from the padding's start), so no softmax row is empty.
#pragma once
#include <cstdint>

#include "more/data/batch.h"

namespace more {

// mb must be unpacked. Throws (naming the example and its length) if an example is longer than
// capacity; capacity and bucket must be >= 1.
MicroBatch PackMicroBatch(const MicroBatch& mb, int capacity, int bucket, int32_t pad_id);

}  // namespace more
