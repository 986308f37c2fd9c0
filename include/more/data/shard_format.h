// HDF5 shard format (version 2; version 1 is still read, without checksums). One file per shard, named <split>-<iiiii>-of-<nnnnn>.h5; every
// shard of a split holds a group for every task (possibly with 0 rows): task t's rows are cut
// into num_shards contiguous pieces, shard k holding rows [k*N_t/K, (k+1)*N_t/K) (integer
// division), so the global row order of a task is the shard order then the local row order.
//
// /                            attrs: format_version (int64) = 1
//                                     tokenizer_hash (str: HashFileHex of the .model file)
//                                     max_len        (int64: longest row, columns of input_ids)
//                                     split          (str: "train", "eval", ...)
//                                     tasks          (str: JSON [{name, metric, candidates,
//                                                     candidate_ids}],
//                                                     the same list in every shard of a split)
//                                     shard_index, num_shards (int64)
//                                     vocab_size, bos_id, eos_id, pad_id (int64: the tokenizer)
// /tasks/<name>/input_ids      int32   [N, max_len] zero past lengths[i] (reader pads with pad id)
// /tasks/<name>/target_mask    uint8   [N, max_len] 1 on target tokens + EOS, 0 elsewhere
// /tasks/<name>/lengths        int32   [N] tokens in the row (2 <= lengths <= max_len)
// /tasks/<name>/prompt_lengths int32   [N] BOS + prompt tokens (1 <= prompt_lengths < lengths)
// /tasks/<name>/label_index    int32   [N] index into candidates (-1: no label)
// /tasks/<name>/label_value    float32 [N] numeric label (NaN: none; "pearson" tasks)
// Every dataset is chunked by rows (extendible along N): [ShardChunkRows(max_len), max_len]
// for the 2-D ones and [ShardChunkRows(max_len)] for the 1-D ones, so reading a few rows
// touches a few chunks only. Version 2: every dataset has HDF5's Fletcher-32 filter, a checksum
// stored with each chunk and verified by the library whenever the chunk is read (a damaged
// chunk fails the read; `shard_data verify` reads them all). Strings are fixed-length UTF-8 (variable-length also read).
// Task metric: "accuracy" | "mcc" | "f1" (binary; exactly two candidates, the second is the
// positive class, as GLUE's label 1) | "pearson" | "spearman" (numeric labels and candidates).
// Candidates: the label strings scored at eval.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace more {

inline constexpr int kShardFormatVersion = 2;
inline constexpr int kShardFormatVersionNoChecksums = 1;  // still read, unverified

struct TaskInfo {
  std::string name;
  std::string metric = "accuracy";
  std::vector<std::string> candidates;  // label strings; empty for free-form generation tasks
  int64_t size = 0;                     // rows over all shards of the split
  // Token ids of each candidate (no BOS/EOS), so training/eval never need SentencePiece.
  std::vector<std::vector<int32_t>> candidate_ids;
};

struct ShardMeta {
  int format_version = kShardFormatVersion;
  std::string tokenizer_hash;
  int max_len = 0;
  std::string split;
  int shard_index = 0;
  int num_shards = 1;
  std::vector<TaskInfo> tasks;  // sizes: rows in this shard
  // The tokenizer the rows were made with (attributes vocab_size, bos_id, eos_id, pad_id).
  int64_t vocab_size = 0;
  int32_t bos_id = 1, eos_id = 2, pad_id = 0;
};

// Rows per HDF5 chunk: at most 256, and chunks of input_ids at most 1 MiB.
int ShardChunkRows(int max_len);
// "<split>-00003-of-00008.h5"
std::string ShardFileName(const std::string& split, int index, int count);
// Rows of a task of `size` rows that go into shard `index` of `count`: [begin, end).
std::pair<int64_t, int64_t> ShardRowRange(int64_t size, int index, int count);

bool IsKnownMetric(const std::string& metric);
// pearson | spearman: numeric labels, scored by the expected value over numeric candidates.
bool IsRegressionMetric(const std::string& metric);
// Throws more::Error naming `where` for an empty/duplicate/invalid task name (it becomes an HDF5
// group name: no '/', not "." or "..") or an unknown metric.
void ValidateTasks(const std::vector<TaskInfo>& tasks, const std::string& where);
// The "tasks" attribute: JSON [{name, metric, candidates}] (sizes are not stored there).
std::string TasksToJson(const std::vector<TaskInfo>& tasks);
std::vector<TaskInfo> TasksFromJson(const std::string& json, const std::string& where);

}  // namespace more
