// Tokenizer: fixture model round trip, LLaMA id conventions, errors, deterministic training.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data_test_util.h"
#include "more/core/error.h"
#include "more/core/hash.h"
#include "more/data/tokenizer.h"

using namespace more;
namespace fs = std::filesystem;

namespace {
std::string FixtureModel() { return std::string(MORE_TESTDATA) + "/tok.model"; }
std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST(Tokenizer, FixtureRoundTripAndIds) {
  if (!fs::exists(FixtureModel())) GTEST_SKIP() << "fixture tokenizer missing";
  Tokenizer tok(FixtureModel());
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), 0);  // no pad piece: falls back to 0
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.hash(), HashFileHex(FixtureModel()));
  EXPECT_EQ(tok.path(), FixtureModel());

  // Every bundled training line survives Encode -> Decode, and no piece is unk or BOS/EOS.
  const std::string manifest = std::string(MORE_SOURCE_DIR) + "/shard_data/bundled/tasks.json";
  std::ifstream in(manifest);
  const auto j = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& task : j["tasks"]) {
    std::ifstream f(fs::path(manifest).parent_path() / task["train"].get<std::string>());
    std::string line;
    for (int i = 0; i < 50 && std::getline(f, line); ++i) {
      const auto row = nlohmann::json::parse(line);
      for (const char* key : {"input", "target"}) {
        const std::string text = row[key];
        const auto ids = tok.Encode(text);
        ASSERT_FALSE(ids.empty());
        for (int32_t id : ids) {
          ASSERT_GT(id, 2) << text;
          ASSERT_LT(id, tok.vocab_size());
        }
        EXPECT_EQ(tok.Decode(ids), text);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 5 * 50 * 2);
  // Decode drops the control pieces.
  auto ids = tok.Encode("topic: the team won . answer:");
  ids.insert(ids.begin(), tok.bos_id());
  ids.push_back(tok.eos_id());
  EXPECT_EQ(tok.Decode(ids), "topic: the team won . answer:");
  EXPECT_THROW(tok.Decode({100000}), Error);
}

TEST(Tokenizer, MissingAndCorruptModel) {
  testing_util::TempDir dir("tok");
  try {
    Tokenizer t(dir / "nope.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.model"), std::string::npos);
  }
  {
    std::ofstream f(dir / "bad.model");
    f << "this is not a protobuf";
  }
  try {
    Tokenizer t(dir / "bad.model");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.model"), std::string::npos);
  }
}

TEST(Tokenizer, TrainingIsDeterministicAndFollowsLlamaIds) {
  testing_util::TempDir dir("tok_train");
  {
    std::ofstream f(dir / "corpus.txt");
    for (int i = 0; i < 200; ++i)
      f << "the quick brown fox " << (i % 7) << " jumps over the lazy dog number " << i << "\n";
  }
  TrainTokenizer({dir / "corpus.txt"}, dir / "a", 120);
  const std::string first = ReadAll(dir / "a.model");
  ASSERT_TRUE(fs::exists(dir / "a.vocab"));
  TrainTokenizer({dir / "corpus.txt"}, dir / "a", 120);
  EXPECT_EQ(ReadAll(dir / "a.model"), first);  // same prefix, same bytes
  Tokenizer tok(dir / "a.model");
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_LE(tok.vocab_size(), 120);
  EXPECT_EQ(tok.Decode(tok.Encode("the lazy fox 42")), "the lazy fox 42");
  EXPECT_THROW(TrainTokenizer({dir / "missing.txt"}, dir / "b", 120), Error);
  EXPECT_THROW(TrainTokenizer({dir / "corpus.txt"}, dir / "c", 10), Error);  // fewer pieces than chars
}
