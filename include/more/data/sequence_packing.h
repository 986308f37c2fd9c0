// Same-task sequence packing (data.packing): the B examples of one micro-batch, read unpacked
// ([B, L_b], one example per row), laid into rows of L <= `capacity` tokens, L a multiple of
// `bucket` (or capacity itself), by the rule below.
//
// Rule: first-fit decreasing at each candidate row length, keeping the layout with the fewest
// positions R * L. Examples are taken longest first (ties: lower example index first); each goes
// into the first row (in creation order) with room for it, else opens a new row; inside a row
// examples lie in the order they were placed. This is run with the row length c = each multiple
// of bucket from the longest example (rounded up) to capacity, and capacity itself; a run's L is
// its fullest row rounded up to bucket (<= c), its cost R * L positions. The fewest positions
// win, ties the shorter rows (less attention work: the segment mask costs R * L^2); the search
// stops early when a layout has no padding. So rows are balanced (two rows of 48 rather than one
// of 64 and one of 32 when both hold the same examples) and the result never computes more
// positions than FFD at capacity alone (one of the candidates). Why FFD: it uses at most
// 11/9 OPT + 6/9 rows (in-order next-fit can need nearly 2x), it is a pure function of the
// lengths (deterministic on every rank and stage, so every pipeline stage and a resumed run
// rebuild the same layout from the same batch), and it costs O(B * R) integer work per
// candidate, O(B * R * capacity / bucket) in all.
// No example is ever split: capacity must be >= every example's length (shards hold rows of
// at most max_len tokens, over-long examples were handled at shard time by --overlong; capacity
// is data.pack_len, else the shards' max_len).
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
