#include "more/data/streaming_loader.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "more/core/error.h"
#include "more/data/sequence_packing.h"

namespace more {

StreamingLoader::StreamingLoader(std::shared_ptr<const ShardSet> shards, BatchSampler sampler, int dp_rank,
                                 int dp_size, int micro_batch, int bucket, int32_t pad_id, int prefetch_depth,
                                 int pack_len)
    : shards_(std::move(shards)),
      sampler_(std::move(sampler)),
      dp_rank_(dp_rank),
      dp_size_(dp_size),
      micro_batch_(micro_batch),
      bucket_(bucket),
      pad_id_(pad_id),
      depth_(prefetch_depth),
      pack_len_(pack_len) {
  if (!shards_) throw Error("StreamingLoader: no shard set");
  if (dp_size < 1 || dp_rank < 0 || dp_rank >= dp_size)
    Fail("StreamingLoader: dp_rank {} outside [0, dp_size={})", dp_rank, dp_size);
  if (sampler_.micro_batch() != micro_batch || sampler_.dp_size() != dp_size)
    Fail("StreamingLoader: sampler built for micro_batch {} x dp {}, loader for {} x {}",
         sampler_.micro_batch(), sampler_.dp_size(), micro_batch, dp_size);
  if (bucket < 1) Fail("StreamingLoader: bucket {} must be >= 1", bucket);
  if (prefetch_depth < 1) Fail("StreamingLoader: prefetch_depth {} must be >= 1", prefetch_depth);
  if (pack_len < 0) Fail("StreamingLoader: pack_len {} must be >= 0 (0: no packing)", pack_len);
  std::vector<int64_t> sizes;
  for (const auto& t : shards_->tasks()) sizes.push_back(t.size);
  if (sizes != sampler_.sizes())
    Fail("StreamingLoader: the sampler's task sizes [{}] differ from the shards' [{}]",
         fmt::join(sampler_.sizes(), ", "), fmt::join(sizes, ", "));
  returned_ = sampler_.position();
  Start();
}

StreamingLoader::~StreamingLoader() { Stop(); }

void StreamingLoader::Start() {
  stop_ = false;
  thread_ = std::thread([this] { Run(); });
}

void StreamingLoader::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StreamingLoader::Run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || static_cast<int>(queue_.size()) < depth_; });
      if (stop_) return;
    }
    Item item;
    try {
      const BatchPlan plan = sampler_.Next();
      const auto begin = plan.rows.begin() + static_cast<std::ptrdiff_t>(dp_rank_) * micro_batch_;
      const std::vector<int64_t> rows(begin, begin + micro_batch_);
      item.batch = shards_->Read(plan.task, rows, bucket_, pad_id_);
      if (pack_len_ > 0) item.batch = PackMicroBatch(item.batch, pack_len_, bucket_, pad_id_);
      item.after = sampler_.position();
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = static_cast<bool>(item.error);
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(item));
    }
    cv_.notify_all();
    if (failed) return;  // Next() rethrows once it reaches this item
  }
}

MicroBatch StreamingLoader::Next() {
  std::unique_lock lock(mu_);
  if (error_) std::rethrow_exception(error_);
  cv_.wait(lock, [&] { return !queue_.empty(); });
  Item item = std::move(queue_.front());
  queue_.pop_front();
  if (item.error) {
    try {
      std::rethrow_exception(item.error);
    } catch (const std::exception& e) {
      error_ = std::make_exception_ptr(Error(std::string("data loader (prefetch thread): ") + e.what()));
    } catch (...) {
      error_ = std::make_exception_ptr(Error("data loader (prefetch thread): unknown exception"));
    }
    std::rethrow_exception(error_);
  }
  lock.unlock();
  cv_.notify_all();  // room in the queue
  lock.lock();
  returned_ = std::move(item.after);
  samples_read_ += item.batch.batch_size;
  return std::move(item.batch);
}

nlohmann::json StreamingLoader::State() const {
  std::lock_guard lock(mu_);
  nlohmann::json state = sampler_.StateAt(returned_);  // reads only the sampler's fixed fields
  state["samples_read"] = samples_read_;
  return state;
}

void StreamingLoader::LoadState(const nlohmann::json& state) {
  Stop();
  std::lock_guard lock(mu_);
  queue_.clear();
  error_ = nullptr;
  sampler_.LoadState(state);
  returned_ = sampler_.position();
  samples_read_ = state.contains("samples_read") ? state.at("samples_read").get<int64_t>() : 0;
  Start();
}

int64_t StreamingLoader::samples_read() const {
  std::lock_guard lock(mu_);
  return samples_read_;
}

}  // namespace more
