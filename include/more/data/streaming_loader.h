// StreamingLoader: this data-parallel rank's micro-batches, read ahead on a background thread.
//
// The prefetch thread runs the BatchSampler ahead of the trainer: for each plan it reads rows
// [dp_rank * micro_batch, (dp_rank + 1) * micro_batch) with ShardSet::Read into a bounded queue
// (prefetch_depth batches). Next() pops in order; an exception on the prefetch thread is
// rethrown by Next() as more::Error carrying the original message (and again by every later
// call). Every rank builds the same sampler, so all ranks draw the same task per step.
//
// Checkpointing: each queued batch carries the sampler position right after its plan, so
// State() is the sampler state just after the last batch Next() returned — not the prefetch
// thread's position. Restoring it (LoadState, or a fresh loader + LoadState) reproduces the
// batches that would have followed. State() also carries "samples_read".
//
// Packing (pack_len > 0, data.packing): each batch is read unpacked and then packed on the
// prefetch thread by PackMicroBatch(batch, pack_len, bucket, pad_id) (sequence_packing.h). The
// sampler, its plans and its state are the same as unpacked: a batch still holds micro_batch
// examples, only their layout in rows changes.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "more/data/batch.h"
#include "more/data/sampler.h"
#include "more/data/shard_set.h"

namespace more {

class StreamingLoader {
 public:
  // The sampler must have been built with the same micro_batch and dp_size, and with the task
  // sizes of `shards`. Starts the prefetch thread.
  StreamingLoader(std::shared_ptr<const ShardSet> shards, BatchSampler sampler, int dp_rank, int dp_size,
                  int micro_batch, int bucket, int32_t pad_id, int prefetch_depth = 4, int pack_len = 0);
  ~StreamingLoader();
  StreamingLoader(const StreamingLoader&) = delete;
  StreamingLoader& operator=(const StreamingLoader&) = delete;

  // Blocks until the next micro-batch is ready.
  MicroBatch Next();
  // Sampler state right after the last batch returned by Next() (+ "samples_read").
  nlohmann::json State() const;
  // Stops the prefetch thread, drops the queue, restores the sampler, restarts.
  void LoadState(const nlohmann::json& state);
  int64_t samples_read() const;

 private:
  struct Item {
    MicroBatch batch;
    BatchSampler::Position after;  // sampler position right after this batch's plan
    std::exception_ptr error;
  };
  void Start();
  void Stop();
  void Run();

  std::shared_ptr<const ShardSet> shards_;
  BatchSampler sampler_;  // advanced by the prefetch thread only (while it runs)
  int dp_rank_, dp_size_, micro_batch_, bucket_;
  int32_t pad_id_;
  int depth_;
  int pack_len_;  // 0: unpacked; else rows of up to pack_len tokens (data.pack_len, else max_len)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stop_ = false;
  std::exception_ptr error_;         // sticky: set once the failing batch was reached
  BatchSampler::Position returned_;  // position after the last batch Next() returned
  int64_t samples_read_ = 0;
  std::thread thread_;
};

}  // namespace more
