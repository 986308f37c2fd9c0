// ShardWriter -> ShardSet round trip, bucketed reads across shard boundaries, metadata checks.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "data_test_util.h"
#include "more/core/error.h"
#include "more/data/shard_set.h"
#include "more/data/shard_writer.h"

using namespace more;
using namespace more::testing_util;
namespace fs = std::filesystem;

namespace {

const std::vector<TaskInfo> kTasks = {
    {"alpha", "accuracy", {"no", "yes"}, 0},
    {"beta", "pearson", {}, 0},
    {"gamma", "mcc", {"a", "b", "c"}, 0},
};
constexpr int kMaxLen = 24;

// Writes `per_shard[k][t]` random rows of task t into shard k of `dir`; returns, per task, the
// rows in global order (shard 0's, then shard 1's, ...).
std::vector<std::vector<Sample>> WriteShards(const std::string& dir,
                                             const std::vector<std::vector<int>>& per_shard, uint32_t seed,
                                             const std::string& split = "train", int max_len = kMaxLen) {
  std::mt19937 rng(seed);
  std::vector<std::vector<Sample>> all(kTasks.size());
  const int K = static_cast<int>(per_shard.size());
  for (int k = 0; k < K; ++k) {
    ShardWriter w(dir + "/" + ShardFileName(split, k, K), MakeMeta(kTasks, max_len, split, k, K));
    for (size_t t = 0; t < kTasks.size(); ++t) {
      for (int i = 0; i < per_shard[static_cast<size_t>(k)][t]; ++i) {
        Sample s = RandomSample(rng, max_len, static_cast<int>(kTasks[t].candidates.size()));
        w.Append(static_cast<int>(t), s);
        all[t].push_back(std::move(s));
      }
    }
    w.Close();
  }
  return all;
}

// Checks a batch against the rows it should hold.
void ExpectBatch(const MicroBatch& mb, int task, const std::vector<int64_t>& rows,
                 const std::vector<Sample>& truth, int bucket, int max_len, int32_t pad) {
  ASSERT_EQ(mb.task, task);
  ASSERT_EQ(mb.batch_size, static_cast<int>(rows.size()));
  size_t longest = 0;
  for (int64_t r : rows) longest = std::max(longest, truth[static_cast<size_t>(r)].ids.size());
  const int L = std::min<int>(max_len, static_cast<int>((longest + bucket - 1) / bucket * bucket));
  ASSERT_EQ(mb.seq_len, L);
  ASSERT_EQ(mb.input_ids.size(), rows.size() * static_cast<size_t>(L));
  ASSERT_EQ(mb.target_mask.size(), rows.size() * static_cast<size_t>(L));
  EXPECT_EQ(mb.rows, rows);
  for (size_t b = 0; b < rows.size(); ++b) {
    const Sample& s = truth[static_cast<size_t>(rows[b])];
    const size_t n = s.ids.size();
    EXPECT_EQ(mb.lengths[b], static_cast<int32_t>(n));
    EXPECT_EQ(mb.prompt_lengths[b], s.prompt_length);
    EXPECT_EQ(mb.label_index[b], s.label_index);
    EXPECT_EQ(mb.label_value[b], s.label_value);
    for (size_t j = 0; j < static_cast<size_t>(L); ++j) {
      const size_t at = b * static_cast<size_t>(L) + j;
      EXPECT_EQ(mb.input_ids[at], j < n ? s.ids[j] : pad) << "b=" << b << " j=" << j;
      EXPECT_EQ(mb.target_mask[at], j < n ? s.target_mask[j] : 0) << "b=" << b << " j=" << j;
    }
  }
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Shards, RoundTripAcrossShards) {
  TempDir dir("roundtrip");
  // Task alpha spans all three shards (with an empty middle piece), beta has 600 rows in shard 1
  // (more than one HDF5 chunk), gamma lives in shard 2 only.
  const auto truth = WriteShards(dir.str(), {{5, 3, 0}, {0, 600, 0}, {7, 2, 4}}, 7);
  ShardSet set({dir.str()}, "train", "feedfacecafebeef");
  ASSERT_EQ(set.tasks().size(), 3u);
  EXPECT_EQ(set.tasks()[0].size, 12);
  EXPECT_EQ(set.tasks()[1].size, 605);
  EXPECT_EQ(set.tasks()[2].size, 4);
  EXPECT_EQ(set.tasks()[2].candidates, kTasks[2].candidates);
  EXPECT_EQ(set.tasks()[1].metric, "pearson");
  EXPECT_EQ(set.max_len(), kMaxLen);
  EXPECT_EQ(set.split(), "train");
  EXPECT_EQ(set.files().size(), 3u);
  EXPECT_EQ(set.TaskId("gamma"), 2);

  // Unsorted rows, a repeat, rows on both sides of each shard boundary (alpha: 0-4 | 5-11).
  for (int bucket : {1, 8, 16, 64}) {
    const std::vector<int64_t> rows = {11, 4, 5, 0, 4, 10};
    ExpectBatch(set.Read(0, rows, bucket, -7), 0, rows, truth[0], bucket, kMaxLen, -7);
  }
  std::vector<int64_t> beta_rows;
  for (int64_t r = 0; r < 605; r += 37) beta_rows.push_back(r);
  beta_rows.push_back(604);
  beta_rows.push_back(255);
  beta_rows.push_back(256);
  ExpectBatch(set.Read(1, beta_rows, 8, 0), 1, beta_rows, truth[1], 8, kMaxLen, 0);
  // Contiguous range (how eval reads).
  std::vector<int64_t> all_gamma = {0, 1, 2, 3};
  ExpectBatch(set.Read(2, all_gamma, 4, 0), 2, all_gamma, truth[2], 4, kMaxLen, 0);
  // Empty read.
  EXPECT_EQ(set.Read(0, {}, 8, 0).batch_size, 0);
  // Out of range / bad arguments.
  EXPECT_NE(ErrorOf([&] { set.Read(0, {12}, 8, 0); }).find("alpha"), std::string::npos);
  EXPECT_THROW(set.Read(0, {-1}, 8, 0), Error);
  EXPECT_THROW(set.Read(3, {0}, 8, 0), Error);
  EXPECT_THROW(set.Read(0, {0}, 0, 0), Error);
}

TEST(Shards, FilesGivenExplicitlyInAnyOrder) {
  TempDir dir("explicit");
  const auto truth = WriteShards(dir.str(), {{2, 1, 1}, {3, 1, 1}}, 3);
  ShardSet set({dir / ShardFileName("train", 1, 2), dir / ShardFileName("train", 0, 2)});
  EXPECT_EQ(set.files()[0], dir / ShardFileName("train", 0, 2));  // ordered by shard_index
  const std::vector<int64_t> rows = {0, 1, 2, 3, 4};
  ExpectBatch(set.Read(0, rows, 1, 0), 0, rows, truth[0], 1, kMaxLen, 0);
}

TEST(Shards, ConcurrentReadsAreSafe) {
  TempDir dir("threads");
  const auto truth = WriteShards(dir.str(), {{40, 30, 20}, {40, 30, 20}}, 11);
  ShardSet set({dir.str()}, "train");
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < 50; ++i) {
        const int t = (th + i) % 3;
        const std::vector<int64_t> rows = {(i * 7) % set.tasks()[t].size,
                                           (i * 13 + th) % set.tasks()[t].size};
        const MicroBatch mb = set.Read(t, rows, 8, 0);
        for (size_t b = 0; b < rows.size(); ++b)
          if (mb.lengths[b] != static_cast<int32_t>(truth[t][rows[b]].ids.size()) ||
              mb.input_ids[b * mb.seq_len] != truth[t][rows[b]].ids[0])
            ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Shards, WriterUsesATemporaryName) {
  TempDir dir("tmpname");
  const std::string path = dir / "train-00000-of-00001.h5";
  {
    ShardWriter w(path, MakeMeta(kTasks, kMaxLen, "train", 0, 1));
    std::mt19937 rng(1);
    w.Append(0, RandomSample(rng, kMaxLen, 2));
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_FALSE(fs::exists(path));
  }  // destroyed without Close(): nothing is left
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
  ShardWriter w(path, MakeMeta(kTasks, kMaxLen, "train", 0, 1));
  w.Close();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THROW(w.Append(0, Sample{}), Error);
}

TEST(Shards, WriterRejectsBadRows) {
  TempDir dir("badrows");
  ShardWriter w(dir / "x.h5", MakeMeta(kTasks, 8, "train", 0, 1));
  Sample s;
  s.ids = {1, 5, 6, 2};
  s.target_mask = {0, 0, 1, 1};
  s.prompt_length = 2;
  EXPECT_NO_THROW(w.Append(0, s));
  Sample long_row = s;
  long_row.ids.assign(9, 5);
  long_row.target_mask.assign(9, 1);
  EXPECT_THROW(w.Append(0, long_row), Error);
  Sample bad_mask = s;
  bad_mask.target_mask.pop_back();
  EXPECT_THROW(w.Append(0, bad_mask), Error);
  Sample bad_prompt = s;
  bad_prompt.prompt_length = 4;
  EXPECT_THROW(w.Append(0, bad_prompt), Error);
  Sample bad_label = s;
  bad_label.label_index = 2;  // alpha has 2 candidates
  EXPECT_THROW(w.Append(0, bad_label), Error);
  // the structure the reader relies on: BOS first, EOS last, mask exactly from the prompt's end,
  // ids inside the vocabulary (512)
  for (auto broken : {std::vector<int32_t>{5, 5, 6, 2}, std::vector<int32_t>{1, 5, 6, 5},
                      std::vector<int32_t>{1, 512, 6, 2}}) {
    Sample b = s;
    b.ids = broken;
    EXPECT_THROW(w.Append(0, b), Error) << broken[0] << " " << broken[1] << " " << broken[3];
  }
  Sample bad_structure = s;
  bad_structure.target_mask = {0, 1, 0, 1};
  EXPECT_THROW(w.Append(0, bad_structure), Error);
  EXPECT_THROW(w.Append(3, s), Error);
  EXPECT_THROW(ShardWriter(dir / "no_such_dir/x.h5", MakeMeta(kTasks, 8, "train", 0, 1)), Error);
  auto dup = kTasks;
  dup[1].name = "alpha";
  EXPECT_THROW(ShardWriter(dir / "y.h5", MakeMeta(dup, 8, "train", 0, 1)), Error);
}

TEST(ShardsValidation, MissingPathsAndShards) {
  TempDir dir("missing");
  EXPECT_NE(ErrorOf([&] { ShardSet({dir / "nope"}); }).find("nope"), std::string::npos);
  EXPECT_NE(ErrorOf([&] { ShardSet({dir.str()}, "train"); }).find("no shard files"), std::string::npos);
  WriteShards(dir.str(), {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}}, 5);
  fs::remove(dir / ShardFileName("train", 1, 3));
  const std::string msg = ErrorOf([&] { ShardSet({dir.str()}, "train"); });
  EXPECT_NE(msg.find("has 3 shards but only 2 were found"), std::string::npos) << msg;
  // The same shard twice.
  const std::string twice = ErrorOf([&] {
    ShardSet({dir / ShardFileName("train", 0, 3), dir / ShardFileName("train", 0, 3)});
  });
  EXPECT_NE(twice.find("shard_index 0"), std::string::npos) << twice;
}

TEST(ShardsValidation, TruncatedAndGarbageFiles) {
  TempDir dir("corrupt");
  WriteShards(dir.str(), {{3, 3, 3}}, 5);
  const std::string good = dir / ShardFileName("train", 0, 1);
  fs::create_directories(dir / "trunc");
  const std::string trunc = dir / "trunc/train-00000-of-00001.h5";
  fs::copy_file(good, trunc);
  fs::resize_file(trunc, fs::file_size(good) / 3);
  std::string msg = ErrorOf([&] { ShardSet({trunc}); });
  EXPECT_NE(msg.find(trunc), std::string::npos) << msg;
  fs::create_directories(dir / "garbage");
  const std::string garbage = dir / "garbage/train-00000-of-00001.h5";
  {
    std::ofstream f(garbage);
    f << "definitely not hdf5\n";
  }
  msg = ErrorOf([&] { ShardSet({garbage}); });
  EXPECT_NE(msg.find(garbage), std::string::npos) << msg;
  EXPECT_NE(msg.find("not an HDF5 file"), std::string::npos) << msg;
}

TEST(ShardsValidation, TokenizerHashMismatch) {
  TempDir dir("hash");
  WriteShards(dir.str(), {{1, 1, 1}}, 5);
  const std::string msg = ErrorOf([&] { ShardSet({dir.str()}, "train", "0123456789abcdef"); });
  EXPECT_NE(msg.find("another tokenizer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("feedfacecafebeef"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0123456789abcdef"), std::string::npos) << msg;
}

TEST(ShardsValidation, InconsistentShards) {
  TempDir dir("inconsistent");
  std::mt19937 rng(1);
  auto write = [&](int k, int max_len, std::vector<TaskInfo> tasks, const std::string& hash) {
    ShardWriter w(dir / ShardFileName("train", k, 2), MakeMeta(tasks, max_len, "train", k, 2, hash));
    w.Append(0, RandomSample(rng, 8, 2));
    w.Close();
  };
  write(0, 16, kTasks, "h1");
  write(1, 32, kTasks, "h1");
  std::string msg = ErrorOf([&] { ShardSet({dir.str()}, "train"); });
  EXPECT_NE(msg.find("disagrees"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max_len"), std::string::npos) << msg;
  write(1, 16, kTasks, "h2");
  msg = ErrorOf([&] { ShardSet({dir.str()}, "train"); });
  EXPECT_NE(msg.find("tokenizer_hash"), std::string::npos) << msg;
  auto other = kTasks;
  other[2].candidates = {"a", "b"};
  write(1, 16, other, "h1");
  msg = ErrorOf([&] { ShardSet({dir.str()}, "train"); });
  EXPECT_NE(msg.find("task list"), std::string::npos) << msg;
  write(1, 16, kTasks, "h1");
  EXPECT_NO_THROW(ShardSet({dir.str()}, "train"));
  // Split mismatch: asking a train shard for "eval".
  EXPECT_NE(ErrorOf([&] { ShardSet({dir / ShardFileName("train", 0, 2)}, "eval"); }).find("split"),
            std::string::npos);
}

TEST(ShardsValidation, UnknownTaskListsKnownOnes) {
  TempDir dir("unknown");
  WriteShards(dir.str(), {{1, 1, 1}}, 5);
  ShardSet set({dir.str()});
  const std::string msg = ErrorOf([&] { set.TaskId("delta"); });
  EXPECT_NE(msg.find("delta"), std::string::npos);
  EXPECT_NE(msg.find("alpha, beta, gamma"), std::string::npos) << msg;
}

TEST(ShardsValidation, UnknownFormatVersion) {
  TempDir dir("version");
  WriteShards(dir.str(), {{1, 1, 1}}, 5);
  const std::string file = dir / ShardFileName("train", 0, 1);
  SetRootIntAttr(file, "format_version", 99);
  const std::string msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
}

// Found in the review for issue 26: an attribute holding an array made H5Aread overrun the
// one-value buffer (AddressSanitizer: stack-buffer-overflow); int64 attributes were narrowed to
// int before their range was checked, so 2^32 + 2 passed as format version 2; candidate token
// ids were narrowed to int32 the same way.
TEST(ShardsValidation, DamagedAttributesAreRefusedNotWrapped) {
  TempDir dir("attrs");
  WriteShards(dir.str(), {{1, 1, 1}}, 5);
  const std::string file = dir / ShardFileName("train", 0, 1);
  const std::string pristine = dir / "pristine.h5";
  fs::copy_file(file, pristine);
  auto restore = [&] { fs::copy_file(pristine, file, fs::copy_options::overwrite_existing); };

  SetRootIntArrayAttr(file, "max_len", 64, kMaxLen);
  std::string msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("attribute 'max_len' holds 64 values, expected one"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  restore();
  {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "split");
    const hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 8);
    const hsize_t n = 16;
    const hid_t space = H5Screate_simple(1, &n, nullptr);
    const hid_t a = H5Acreate2(f, "split", type, space, H5P_DEFAULT, H5P_DEFAULT);
    const std::vector<char> text(8 * n, 'x');
    H5Awrite(a, type, text.data());
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    H5Fclose(f);
  }
  msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("attribute 'split' holds 16 values, expected one"), std::string::npos) << msg;
  restore();

  SetRootIntAttr(file, "format_version", (int64_t{1} << 32) + 2);
  msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("attribute 'format_version' = 4294967298 is outside"), std::string::npos) << msg;
  restore();
  SetRootIntAttr(file, "pad_id", (int64_t{1} << 32) + 1);
  msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("attribute 'pad_id' = 4294967297 is outside [0, "), std::string::npos) << msg;
  restore();
  SetRootIntAttr(file, "shard_index", 1);  // of 1 shard
  msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("attribute 'shard_index' = 1 is outside [0, 0]"), std::string::npos) << msg;
  restore();

  SetRootStringAttr(file, "tasks",
                    R"([{"name": "alpha", "metric": "accuracy", "candidates": ["x"], "candidate_ids": [[4294967297]]}])");
  msg = ErrorOf([&] { ShardSet({file}); });
  EXPECT_NE(msg.find("task 'alpha' has candidate token id 4294967297, not a 32-bit integer"), std::string::npos) << msg;
  restore();
  EXPECT_NO_THROW(ShardSet({file}));  // the restored file is fine: the refusals came from the damage
}

TEST(ShardsValidation, BadStoredRowIsReportedOnRead) {
  TempDir dir("badrow");
  WriteShards(dir.str(), {{4, 1, 1}, {4, 1, 1}}, 5);
  const std::string file = dir / ShardFileName("train", 1, 2);
  PokeInt(file, "alpha", "lengths", 2, kMaxLen + 5);  // global row 4 + 2 = 6
  PokeInt(file, "alpha", "lengths", 3, 1);            // global row 7: shorter than BOS + EOS
  ShardSet set({dir.str()});
  EXPECT_NO_THROW(set.Read(0, {0, 1, 2, 3, 4, 5}, 8, 0));
  const std::string msg = ErrorOf([&] { set.Read(0, {1, 6}, 8, 0); });
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  EXPECT_NE(msg.find("'alpha'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("row 6"), std::string::npos) << msg;
  EXPECT_NE(ErrorOf([&] { set.Read(0, {7}, 8, 0); }).find("row 7"), std::string::npos);
}

// A token id past the tokenizer's vocabulary is refused on read, naming file, task, row and
// column (issue 16: with tp=2 it used to train on a zero embedding without a word).
TEST(ShardsValidation, TokenIdOutsideTheVocabularyIsReported) {
  TempDir dir("vocab");
  WriteShards(dir.str(), {{4, 1, 1}}, 5);
  const std::string file = dir / ShardFileName("train", 0, 1);
  PokeId(file, "alpha", 2, 0, 600);  // MakeMeta's vocab_size is 512
  {
    ShardSet set({dir.str()});
    EXPECT_NO_THROW(set.Read(0, {0, 1, 3}, 8, 0));
    const std::string msg = ErrorOf([&] { set.Read(0, {1, 2}, 8, 0); });
    EXPECT_NE(msg.find("token id 600 outside [0, vocab_size=512)"), std::string::npos) << msg;
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("row 2"), std::string::npos) << msg;
  }
  PokeId(file, "alpha", 2, 0, 1);  // BOS again
  EXPECT_NO_THROW(ShardSet({dir.str()}).Read(0, {2}, 8, 0));
}

// Every dataset carries a checksum per chunk: a chunk's data zeroed on disk (same file size,
// bypassing HDF5) fails the read with a message naming file, task and dataset, and Verify lists it.
TEST(ShardsValidation, DamagedChunkFailsItsChecksum) {
  TempDir dir("checksum");
  WriteShards(dir.str(), {{5, 3, 2}}, 7);
  const std::string file = dir / ShardFileName("train", 0, 1);
  {
    ShardSet set({dir.str()});
    int64_t rows = 0;
    EXPECT_TRUE(set.Verify(&rows).empty());
    EXPECT_EQ(rows, 10);
  }
  const auto size = fs::file_size(file);
  const auto [addr, bytes] = FirstChunk(file, "alpha", "input_ids");
  ASSERT_GT(bytes, 0u);
  {
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(addr));
    const std::string zeros(bytes - 4, '\0');  // the data; the chunk's last 4 bytes hold its checksum
    io.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  ASSERT_EQ(fs::file_size(file), size);
  ShardSet set({dir.str()});
  EXPECT_NO_THROW(set.Read(1, {0, 1, 2}, 8, 0));  // other tasks' chunks are intact
  const std::string msg = ErrorOf([&] { set.Read(0, {3}, 8, 0); });
  EXPECT_NE(msg.find("checksum mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'alpha', input_ids"), std::string::npos) << msg;
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  const auto problems = set.Verify();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("'alpha', input_ids: checksum mismatch"), std::string::npos) << problems[0];
  // from another thread (the loader's prefetch thread reads there): the error is ours alone,
  // HDF5 prints no "HDF5-DIAG" block of its own (its printer setting is per thread)
  std::string from_thread;
  ::testing::internal::CaptureStderr();
  std::thread([&] { from_thread = ErrorOf([&] { set.Read(0, {4}, 8, 0); }); }).join();
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(from_thread.find("checksum mismatch"), std::string::npos) << from_thread;
  EXPECT_EQ(printed.find("HDF5-DIAG"), std::string::npos) << printed;
}

// Fletcher-32 cannot see a chunk zeroed together with its stored checksum (zeros sum to zero);
// the row structure of format version 2 (BOS first, EOS last, mask from the prompt's end) can.
TEST(ShardsValidation, ChunkZeroedWithItsChecksumFailsTheRowChecks) {
  TempDir dir("zeroall");
  WriteShards(dir.str(), {{5, 3, 2}}, 7);
  const std::string file = dir / ShardFileName("train", 0, 1);
  for (const char* name : {"input_ids", "target_mask"}) {
    const auto [addr, bytes] = FirstChunk(file, name == std::string("input_ids") ? "alpha" : "beta", name);
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(addr));
    const std::string zeros(bytes, '\0');  // data and checksum
    io.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  ShardSet set({dir.str()});
  std::string msg = ErrorOf([&] { set.Read(0, {0}, 8, 0); });
  EXPECT_NE(msg.find("input_ids must start with bos_id 1 and end with eos_id 2, not 0"), std::string::npos) << msg;
  msg = ErrorOf([&] { set.Read(1, {0}, 8, 0); });
  EXPECT_NE(msg.find("target_mask 0 but the prompt is"), std::string::npos) << msg;
  EXPECT_NO_THROW(set.Read(2, {0, 1}, 8, 0));
  EXPECT_EQ(set.Verify().size(), 2u);
}
