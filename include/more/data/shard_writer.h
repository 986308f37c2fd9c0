// ShardWriter: writes one HDF5 shard (layout: data/shard_format.h) row by row.
//
// The file is created as <path>.tmp and renamed to <path> by Close(), so a crash or an error
// never leaves a half-written shard under the real name (the destructor of an unclosed writer
// deletes the .tmp file). Rows are buffered per task and written one HDF5 chunk at a time into
// datasets that grow along N, so memory stays at one chunk per task whatever the shard size.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "more/data/packing.h"
#include "more/data/shard_format.h"

namespace more {

class ShardWriter {
 public:
  // meta: tokenizer_hash, max_len, split, shard_index/num_shards and the task list
  // (name/metric/candidates; sizes are ignored: they come from the appended rows).
  ShardWriter(std::string path, ShardMeta meta);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends one packed row to task `task` (index into meta.tasks). Throws on a row that breaks
  // the format (length outside [2, max_len], mask/ids size mismatch, bad prompt length, label
  // index outside the candidates).
  void Append(int task, const Sample& sample);
  // Flushes, closes and renames <path>.tmp -> <path>. Further Append() calls throw.
  void Close();

  const std::string& path() const;
  int64_t rows(int task) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace more
