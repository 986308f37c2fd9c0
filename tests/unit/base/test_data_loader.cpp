// StreamingLoader: same batches as the plans, exact resume from State(), errors surface.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "data_test_util.h"
#include "more/core/error.h"
#include "more/data/shard_set.h"
#include "more/data/sequence_packing.h"
#include "more/data/streaming_loader.h"

using namespace more;
using namespace more::testing_util;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const ShardSet> FixtureTrain() {
  const std::string dir = std::string(MORE_TESTDATA) + "/shards";
  if (!fs::exists(dir)) return nullptr;
  return std::make_shared<const ShardSet>(std::vector<std::string>{dir}, "train");
}

std::vector<int64_t> Sizes(const ShardSet& set) {
  std::vector<int64_t> s;
  for (const auto& t : set.tasks()) s.push_back(t.size);
  return s;
}

void ExpectSame(const MicroBatch& a, const MicroBatch& b) {
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.batch_size, b.batch_size);
  EXPECT_EQ(a.seq_len, b.seq_len);
  EXPECT_EQ(a.input_ids, b.input_ids);
  EXPECT_EQ(a.target_mask, b.target_mask);
  EXPECT_EQ(a.lengths, b.lengths);
  EXPECT_EQ(a.prompt_lengths, b.prompt_lengths);
  EXPECT_EQ(a.label_index, b.label_index);
  EXPECT_EQ(a.rows, b.rows);
  ASSERT_EQ(a.label_value.size(), b.label_value.size());
  for (size_t i = 0; i < a.label_value.size(); ++i)
    EXPECT_TRUE(a.label_value[i] == b.label_value[i] ||
                (std::isnan(a.label_value[i]) && std::isnan(b.label_value[i])));
}

constexpr int kMicro = 4, kDp = 2, kBucket = 8;
constexpr uint64_t kSeed = 2024;

BatchSampler MakeSampler(const ShardSet& set) {
  const auto sizes = Sizes(set);
  return BatchSampler(sizes, TaskWeights(SamplingMode::kTemperature, sizes, 2.0), kMicro, kDp, kSeed);
}

}  // namespace

TEST(StreamingLoader, SameBatchesAsReadingThePlans) {
  const auto set = FixtureTrain();
  if (!set) GTEST_SKIP() << "fixture shards missing";
  for (int rank = 0; rank < kDp; ++rank) {
    StreamingLoader loader(set, MakeSampler(*set), rank, kDp, kMicro, kBucket, 0, 3);
    BatchSampler plans = MakeSampler(*set);
    for (int i = 0; i < 40; ++i) {
      const BatchPlan p = plans.Next();
      const std::vector<int64_t> rows(p.rows.begin() + rank * kMicro, p.rows.begin() + (rank + 1) * kMicro);
      const MicroBatch want = set->Read(p.task, rows, kBucket, 0);
      const MicroBatch got = loader.Next();
      ExpectSame(got, want);
      EXPECT_EQ(got.seq_len % kBucket, 0);
    }
    EXPECT_EQ(loader.samples_read(), 40 * kMicro);
  }
}

TEST(StreamingLoader, ResumeFromStateReproducesTheFollowingBatches) {
  const auto set = FixtureTrain();
  if (!set) GTEST_SKIP() << "fixture shards missing";
  const int k = 9, n = 30;
  StreamingLoader a(set, MakeSampler(*set), 1, kDp, kMicro, kBucket, 0, 4);
  for (int i = 0; i < k; ++i) a.Next();
  // Let the prefetch thread run ahead (fill its queue) before taking the state.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string state = a.State().dump();
  EXPECT_EQ(nlohmann::json::parse(state).at("steps").get<int64_t>(), k);  // not the thread's position
  std::vector<MicroBatch> rest;
  for (int i = k; i < n; ++i) rest.push_back(a.Next());

  // A fresh loader (fresh sampler) restored from the state.
  StreamingLoader b(set, MakeSampler(*set), 1, kDp, kMicro, kBucket, 0, 2);
  b.Next();  // consume something first: LoadState must discard it and the queued batches
  b.LoadState(nlohmann::json::parse(state));
  EXPECT_EQ(b.samples_read(), k * kMicro);
  for (int i = k; i < n; ++i) ExpectSame(b.Next(), rest[static_cast<size_t>(i - k)]);

  // The same loader rewound to the state.
  a.LoadState(nlohmann::json::parse(state));
  for (int i = k; i < n; ++i) ExpectSame(a.Next(), rest[static_cast<size_t>(i - k)]);
}

TEST(StreamingLoader, ConstructorChecks) {
  const auto set = FixtureTrain();
  if (!set) GTEST_SKIP() << "fixture shards missing";
  EXPECT_THROW(StreamingLoader(set, MakeSampler(*set), 2, kDp, kMicro, kBucket, 0), Error);  // rank >= dp
  EXPECT_THROW(StreamingLoader(set, MakeSampler(*set), 0, kDp, kMicro + 1, kBucket, 0), Error);
  BatchSampler wrong({1, 2, 3, 4, 5}, {1, 1, 1, 1, 1}, kMicro, kDp, 1);
  EXPECT_THROW(StreamingLoader(set, std::move(wrong), 0, kDp, kMicro, kBucket, 0), Error);
}

TEST(StreamingLoader, PrefetchErrorSurfacesInNext) {
  TempDir dir("loader_err");
  const std::vector<TaskInfo> tasks = {{"only", "accuracy", {}, 0}};
  {
    ShardWriter w(dir / ShardFileName("train", 0, 1), MakeMeta(tasks, 16, "train", 0, 1));
    std::mt19937 rng(3);
    for (int i = 0; i < 4; ++i) w.Append(0, RandomSample(rng, 16, 0));
    w.Close();
  }
  PokeInt(dir / ShardFileName("train", 0, 1), "only", "prompt_lengths", 2, 0);  // row 2 now corrupt
  auto set = std::make_shared<const ShardSet>(std::vector<std::string>{dir.str()}, "train");
  StreamingLoader loader(set, BatchSampler({4}, {1.0}, 4, 1, 1), 0, 1, 4, 8, 0);
  try {
    loader.Next();
    FAIL() << "expected the prefetch thread's error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("prefetch"), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("prompt length"), std::string::npos) << msg;
  }
  EXPECT_THROW(loader.Next(), Error);  // sticky
}

// data.packing: the loader packs each batch it reads (PackMicroBatch of the same rows), and the
// sampler is untouched: after any number of batches a packed loader's state equals an unpacked
// one's, and a packed loader resumed from it continues with the same packed batches.
TEST(StreamingLoader, PackingPacksTheSameExamplesAndKeepsTheSamplerState) {
  const auto set = FixtureTrain();
  if (!set) GTEST_SKIP() << "fixture shards missing";
  const int cap = static_cast<int>(set->shards().at(0).max_len), k = 7, n = 20;
  StreamingLoader plain(set, MakeSampler(*set), 1, kDp, kMicro, kBucket, 0, 3);
  StreamingLoader packed(set, MakeSampler(*set), 1, kDp, kMicro, kBucket, 0, 3, cap);
  int fewer_rows = 0;
  std::string state;
  std::vector<MicroBatch> rest;
  for (int i = 0; i < n; ++i) {
    const MicroBatch u = plain.Next(), p = packed.Next();
    ASSERT_TRUE(p.packed);
    const MicroBatch want = PackMicroBatch(u, cap, kBucket, 0);
    ExpectSame(p, want);
    EXPECT_EQ(p.cu_seqlens, want.cu_seqlens);
    EXPECT_EQ(p.position_ids, want.position_ids);
    EXPECT_EQ(p.example_row, want.example_row);
    EXPECT_EQ(p.example_offset, want.example_offset);
    fewer_rows += p.num_rows < u.batch_size;
    if (i + 1 == k) {
      EXPECT_EQ(packed.State().dump(), plain.State().dump());
      state = packed.State().dump();
    }
    if (i >= k) rest.push_back(p);
  }
  EXPECT_GT(fewer_rows, 0);  // the fixture's rows are short: packing must merge some
  StreamingLoader resumed(set, MakeSampler(*set), 1, kDp, kMicro, kBucket, 0, 2, cap);
  resumed.LoadState(nlohmann::json::parse(state));
  for (const auto& want : rest) {
    const MicroBatch got = resumed.Next();
    ExpectSame(got, want);
    EXPECT_EQ(got.cu_seqlens, want.cu_seqlens);
  }
  EXPECT_THROW(StreamingLoader(set, MakeSampler(*set), 0, kDp, kMicro, kBucket, 0, 3, -1), Error);
}
