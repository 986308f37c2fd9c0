#include "more/data/sequence_packing.h"

#include <algorithm>
#include <numeric>

#include "more/core/error.h"

namespace more {

MicroBatch PackMicroBatch(const MicroBatch& mb, int capacity, int bucket, int32_t pad_id) {
  MORE_CHECK(!mb.packed, "PackMicroBatch: the micro-batch is already packed");
  MORE_CHECK(capacity >= 1 && bucket >= 1, "PackMicroBatch: capacity {} and bucket {} must be >= 1", capacity,
             bucket);
  const int B = mb.batch_size, Lin = mb.seq_len;
  MORE_CHECK(static_cast<int>(mb.lengths.size()) == B && mb.input_ids.size() == static_cast<size_t>(B) * Lin &&
                 mb.target_mask.size() == mb.input_ids.size(),
             "PackMicroBatch: inconsistent micro-batch ({} examples, {} lengths, {} ids for L = {})", B,
             mb.lengths.size(), mb.input_ids.size(), Lin);
  for (int i = 0; i < B; ++i)
    if (mb.lengths[i] < 1 || mb.lengths[i] > capacity || mb.lengths[i] > Lin)
      Fail("data.packing: example {} (task {}, row {}) has {} tokens, outside [1, {}] (hint: packing never splits an "
           "example; rows hold at most max_len tokens, longer examples are handled by shard_data --overlong)",
           i, mb.task, i < static_cast<int>(mb.rows.size()) ? mb.rows[i] : -1, mb.lengths[i], capacity);

  // first-fit decreasing at each candidate row length; keep the layout with the fewest positions
  std::vector<int> order(B);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mb.lengths[a] > mb.lengths[b]; });
  const auto round_up = [&](int n) { return std::min(capacity, (n + bucket - 1) / bucket * bucket); };
  std::vector<int> used, best_used;            // [R] tokens in each row
  std::vector<int32_t> row_of(B), best_row(B);  // [B] the row example i went to
  int64_t best_positions = -1;
  const int64_t total = std::accumulate(mb.lengths.begin(), mb.lengths.end(), int64_t{0});
  int L = 0;
  const int longest_example = B > 0 ? mb.lengths[order[0]] : 0;
  for (int cap = round_up(longest_example);; cap = round_up(cap + 1)) {  // bucket multiples, then capacity
    used.clear();
    for (int i : order) {
      const int n = mb.lengths[i];
      size_t r = 0;
      while (r < used.size() && used[r] + n > cap) ++r;
      if (r == used.size()) used.push_back(0);
      row_of[i] = static_cast<int32_t>(r);
      used[r] += n;
    }
    const int len = used.empty() ? 0 : round_up(*std::max_element(used.begin(), used.end()));
    const int64_t positions = static_cast<int64_t>(used.size()) * len;
    if (best_positions < 0 || positions < best_positions) {  // ties keep the shorter rows
      best_positions = positions;
      best_used = used;
      best_row = row_of;
      L = len;
    }
    if (cap >= capacity || best_positions == total) break;  // no layout computes fewer than the real tokens
  }
  const int R = static_cast<int>(best_used.size());
  MicroBatch out;
  out.example_row.assign(B, -1);
  out.example_offset.assign(B, -1);
  std::vector<std::vector<int>> members(static_cast<size_t>(R));  // [R] examples of each row, in placement order
  std::vector<int> fill(static_cast<size_t>(R), 0);
  for (int i : order) {
    const auto r = static_cast<size_t>(best_row[i]);
    out.example_row[i] = best_row[i];
    out.example_offset[i] = fill[r];
    fill[r] += mb.lengths[i];
    members[r].push_back(i);
  }

  out.task = mb.task;
  out.batch_size = B;
  out.seq_len = L;
  out.lengths = mb.lengths;
  out.prompt_lengths = mb.prompt_lengths;
  out.label_index = mb.label_index;
  out.label_value = mb.label_value;
  out.rows = mb.rows;
  out.packed = true;
  out.num_rows = R;
  out.input_ids.assign(static_cast<size_t>(R) * L, pad_id);
  out.target_mask.assign(static_cast<size_t>(R) * L, 0);
  out.position_ids.assign(static_cast<size_t>(R) * L, 0);
  out.cu_seqlens.push_back(0);
  for (int r = 0; r < R; ++r) {
    const size_t row = static_cast<size_t>(r) * L;
    for (int i : members[r]) {
      const int n = mb.lengths[i], off = out.example_offset[i];
      const size_t src = static_cast<size_t>(i) * Lin;
      std::copy_n(mb.input_ids.begin() + src, n, out.input_ids.begin() + row + off);
      std::copy_n(mb.target_mask.begin() + src, n, out.target_mask.begin() + row + off);
      std::iota(out.position_ids.begin() + row + off, out.position_ids.begin() + row + off + n, 0);
      out.cu_seqlens.push_back(static_cast<int32_t>(row + off + n));
      out.segment_example.push_back(i);
    }
    if (best_used[r] < L) {  // the row's padding: one segment, positions from 0
      std::iota(out.position_ids.begin() + row + best_used[r], out.position_ids.begin() + row + L, 0);
      out.cu_seqlens.push_back(static_cast<int32_t>(row + L));
      out.segment_example.push_back(-1);
    }
  }
  return out;
}

}  // namespace more
