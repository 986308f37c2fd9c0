// ShardSet: read-only view of the HDF5 shards of one split (layout: data/shard_format.h).
//
// Opening reads metadata only: attributes and dataset extents of every shard. It validates
// that every file exists and is HDF5, that its format version is known, that all shards agree
// on the task list (names, metrics, candidates), max_len, split and tokenizer hash, and that
// the hash equals the expected one when given. Task sizes are summed over the shards; a task's
// global rows are its rows in shard 0, then shard 1, ... (ShardSet maps global -> (shard, local)).
//
// Read() reads exactly the requested rows with HDF5 hyperslab selections (never a whole task):
// first the per-row scalars, then input_ids / target_mask cut to seq_len columns. Every HDF5
// call holds the process-wide HDF5 mutex, so Read() may be called from any thread.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "more/data/batch.h"
#include "more/data/shard_format.h"

namespace more {

class ShardSet {
 public:
  // Each path is a .h5 file or a directory (all "<split>-*.h5" in it, sorted by name; with an
  // empty split, all "*.h5"). Throws more::Error naming the file on any validation failure,
  // including a missing shard of the split (num_shards files expected) unless allow_partial
  // (for inspecting single files).
  explicit ShardSet(const std::vector<std::string>& paths, const std::string& split = "",
                    const std::string& expected_tokenizer_hash = "", bool allow_partial = false);
  ~ShardSet();
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;

  const std::vector<TaskInfo>& tasks() const;  // sizes: rows over all shards
  int num_tasks() const { return static_cast<int>(tasks().size()); }
  // Unknown name: more::Error listing the known tasks.
  int TaskId(const std::string& name) const;
  int max_len() const;
  const std::string& tokenizer_hash() const;
  const std::string& split() const;
  const std::vector<std::string>& files() const;  // the shard files, in global row order
  const std::vector<ShardMeta>& shards() const;   // per-file metadata (sizes: rows in that file)

  // Reads rows `rows` (global row ids of task `task`, any order, repeats allowed) into a
  // micro-batch: B = rows.size(), seq_len = the smallest multiple of `bucket` >= the longest
  // row (capped at max_len); ids past a row's length are `pad_id`, mask 0. Throws more::Error
  // naming file, task and row on an out-of-range row, an HDF5 failure or bad stored data.
  MicroBatch Read(int task, const std::vector<int64_t>& rows, int bucket, int32_t pad_id) const;

  // Reads every row of every task, one HDF5 chunk of rows at a time, so every chunk's checksum
  // (format version 2) and every stored value is checked. Returns one message per damaged or
  // invalid chunk (file, task, dataset, rows); empty when all is well.
  std::vector<std::string> Verify(int64_t* rows_checked = nullptr) const;

  // The shard files `paths` resolve to (what the constructor opens).
  static std::vector<std::string> ResolveFiles(const std::vector<std::string>& paths,
                                               const std::string& split);
  // True when every directory in `paths` holds '<split>-*.h5' files (ResolveFiles would succeed).
  static bool HasSplit(const std::vector<std::string>& paths, const std::string& split);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace more
