// Manifest / task-file parsing, label derivation, and the fixture shards against their JSONL.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "data_test_util.h"
#include "more/core/error.h"
#include "more/data/manifest.h"
#include "more/data/packing.h"
#include "more/data/shard_set.h"
#include "more/data/tokenizer.h"

using namespace more;
using namespace more::testing_util;
namespace fs = std::filesystem;

namespace {
void Write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
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

TEST(Manifest, ParsesTasksAndResolvesPaths) {
  TempDir dir("manifest");
  Write(dir / "m.json", R"({"tasks": [
      {"name": "a", "metric": "accuracy", "candidates": ["x", "y"], "train": "a/train.jsonl", "eval": "a/eval.jsonl"},
      {"name": "b", "metric": "pearson", "train": "/abs/b.tsv"}]})");
  const Manifest m = LoadManifest(dir / "m.json");
  ASSERT_EQ(m.tasks.size(), 2u);
  EXPECT_EQ(m.tasks[0].info.name, "a");
  EXPECT_EQ(m.tasks[0].info.candidates, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(m.tasks[0].files.at("train"), dir / "a/train.jsonl");
  EXPECT_EQ(m.tasks[0].files.at("eval"), dir / "a/eval.jsonl");
  EXPECT_EQ(m.tasks[1].files.at("train"), "/abs/b.tsv");
  EXPECT_TRUE(m.tasks[1].info.candidates.empty());
}

TEST(Manifest, PreTokenizedManifestAndRows) {
  TempDir dir("manifest_pretok");
  Write(dir / "tok.json", "any tokenizer file");
  Write(dir / "m.json", R"({"tokenizer": {"file": "tok.json", "vocab_size": 100, "bos_id": 98, "eos_id": 99, "pad_id": 0},
      "tasks": [{"name": "s", "metric": "pearson", "candidates": ["1", "2"], "candidate_ids": [[5], [6, 7]],
                 "train": "s.jsonl"}]})");
  const Manifest m = LoadManifest(dir / "m.json");
  ASSERT_TRUE(m.tokenizer.has_value());
  EXPECT_EQ(m.tokenizer->file, dir / "tok.json");
  EXPECT_EQ(m.tokenizer->vocab_size, 100);
  EXPECT_EQ(m.tokenizer->bos_id, 98);
  EXPECT_EQ(m.tokenizer->eos_id, 99);
  EXPECT_EQ(m.tasks[0].info.candidate_ids, (std::vector<std::vector<int32_t>>{{5}, {6, 7}}));
  EXPECT_FALSE(LoadManifest(dir / "m.json").tasks[0].files.contains("candidate_ids"));
  Write(dir / "s.jsonl", R"({"input_ids": [98, 3, 4], "target_ids": [6, 7, 99], "label": "2", "value": 1.75}

{"input_ids": [98], "target_ids": [99], "label": "1"}
)");
  const auto rows = ReadTokenFile(dir / "s.jsonl", *m.tokenizer);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].input_ids, (std::vector<int32_t>{98, 3, 4}));
  EXPECT_EQ(rows[0].target_ids, (std::vector<int32_t>{6, 7, 99}));
  EXPECT_EQ(rows[1].labels.line, 3);
  // labels as for text rows: the candidate from "label", the value from "value" (else "label")
  const auto l0 = LabelsOf(m.tasks[0].info, rows[0].labels, "s.jsonl:1");
  EXPECT_EQ(l0.index, 1);
  EXPECT_FLOAT_EQ(l0.value, 1.75f);
  const auto l1 = LabelsOf(m.tasks[0].info, rows[1].labels, "s.jsonl:3");
  EXPECT_EQ(l1.index, 0);
  EXPECT_FLOAT_EQ(l1.value, 1.0f);
  // a field given twice (the JSON parser would keep the last silently), as in text rows
  Write(dir / "dup.jsonl", R"({"input_ids": [98], "target_ids": [99], "target_ids": [6, 99], "label": "1"})");
  EXPECT_NE(ErrorOf([&] { ReadTokenFile(dir / "dup.jsonl", *m.tokenizer); }).find("dup.jsonl:1: field 'target_ids' appears twice"),
            std::string::npos);
  // ids past the vocabulary, in a row and in candidate_ids
  Write(dir / "bad.jsonl", R"({"input_ids": [98, 100], "target_ids": [99], "label": "1"})");
  EXPECT_NE(ErrorOf([&] { ReadTokenFile(dir / "bad.jsonl", *m.tokenizer); }).find("bad.jsonl:1: input_ids[1]: token id 100"),
            std::string::npos);
  Write(dir / "m2.json", R"({"tokenizer": {"file": "tok.json", "vocab_size": 100, "bos_id": 98, "eos_id": 99, "pad_id": 0},
      "tasks": [{"name": "s", "candidates": ["1"], "candidate_ids": [[100]], "train": "s.jsonl"}]})");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "m2.json"); }).find("candidate_ids[0][0]: token id 100"), std::string::npos);
}

TEST(Manifest, Errors) {
  TempDir dir("manifest_err");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "none.json"); }).find("none.json"), std::string::npos);
  Write(dir / "bad.json", "{not json");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "bad.json"); }).find("not valid JSON"), std::string::npos);
  Write(dir / "notasks.json", R"({"task": []})");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "notasks.json"); }).find("tasks"), std::string::npos);
  Write(dir / "metric.json", R"({"tasks": [{"name": "a", "metric": "bleu", "train": "x"}]})");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "metric.json"); }).find("bleu"), std::string::npos);
  Write(dir / "type.json", R"({"tasks": [{"name": "a", "candidates": [1, 2], "train": "x"}]})");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "type.json"); }).find("candidates"), std::string::npos);
  Write(dir / "dup.json", R"({"tasks": [{"name": "a", "train": "x"}, {"name": "a", "train": "y"}]})");
  EXPECT_NE(ErrorOf([&] { LoadManifest(dir / "dup.json"); }).find("twice"), std::string::npos);
}

TEST(TaskFile, JsonlAndTsv) {
  TempDir dir("taskfile");
  Write(dir / "t.jsonl",
        "{\"input\": \"q1\", \"target\": \"yes\"}\n\n{\"input\": \"q2\", \"target\": \"3\", \"label\": 2.5, "
        "\"id\": 7}\n"
        "{\"input\": \"q3\", \"target\": \"no\", \"label\": \"no\"}\n");
  const auto rows = ReadTaskFile(dir / "t.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].input, "q1");
  EXPECT_EQ(rows[1].line, 3);  // blank line skipped, numbering kept
  EXPECT_EQ(*rows[1].label_num, 2.5);
  EXPECT_EQ(*rows[2].label_str, "no");
  Write(dir / "t.tsv", "in one\tyes\nin two\tno\tno\n");
  const auto tsv = ReadTaskFile(dir / "t.tsv");
  ASSERT_EQ(tsv.size(), 2u);
  EXPECT_EQ(tsv[1].target, "no");
  EXPECT_EQ(*tsv[1].label_str, "no");
}

TEST(TaskFile, ErrorsNameFileAndLine) {
  TempDir dir("taskfile_err");
  Write(dir / "bad.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \n");
  std::string msg = ErrorOf([&] { ReadTaskFile(dir / "bad.jsonl"); });
  EXPECT_NE(msg.find("bad.jsonl:2"), std::string::npos) << msg;
  Write(dir / "type.jsonl", "{\"input\": 5, \"target\": \"b\"}\n");
  msg = ErrorOf([&] { ReadTaskFile(dir / "type.jsonl"); });
  EXPECT_NE(msg.find("type.jsonl:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'input' must be a string"), std::string::npos) << msg;
  Write(dir / "label.jsonl", "{\"input\": \"a\", \"target\": \"b\", \"label\": [1]}\n");
  EXPECT_NE(ErrorOf([&] { ReadTaskFile(dir / "label.jsonl"); }).find("'label'"), std::string::npos);
  Write(dir / "missing.jsonl", "{\"input\": \"a\"}\n");
  EXPECT_NE(ErrorOf([&] { ReadTaskFile(dir / "missing.jsonl"); }).find("'target'"), std::string::npos);
  EXPECT_THROW(ReadTaskFile(dir / "none.jsonl"), Error);
}

// Found in the review for issue 26: a key given twice (the parser kept the last silently), and
// TSV lines that are not UTF-8 (JSON lines are checked by the JSON parser; TSV ones were not).
TEST(TaskFile, DuplicateFieldAndInvalidUtf8AreRefused) {
  TempDir dir("taskfile_strict");
  Write(dir / "dup.jsonl", "{\"input\": \"a\", \"target\": \"b\"}\n{\"input\": \"a\", \"target\": \"b\", \"target\": \"c\"}\n");
  std::string msg = ErrorOf([&] { ReadTaskFile(dir / "dup.jsonl"); });
  EXPECT_NE(msg.find("dup.jsonl:2: field 'target' appears twice"), std::string::npos) << msg;
  // nested objects may repeat their own keys' names (only the row's fields are checked)
  Write(dir / "nested.jsonl", "{\"input\": \"a\", \"target\": \"b\", \"meta\": {\"input\": 1}}\n");
  EXPECT_EQ(ReadTaskFile(dir / "nested.jsonl").size(), 1u);
  Write(dir / "bad.tsv", "caf\xc3\xa9\tpositive\nabc\x80\tnegative\n");
  msg = ErrorOf([&] { ReadTaskFile(dir / "bad.tsv"); });
  EXPECT_NE(msg.find("bad.tsv:2: not valid UTF-8 (byte 4 of the line)"), std::string::npos) << msg;
  Write(dir / "bad.jsonl", "{\"input\": \"abc\x80\", \"target\": \"b\"}\n");
  msg = ErrorOf([&] { ReadTaskFile(dir / "bad.jsonl"); });
  EXPECT_NE(msg.find("bad.jsonl:1: bad JSON"), std::string::npos) << msg;
  // well-formed multi-byte text is kept byte for byte
  Write(dir / "ok.tsv", "caf\xc3\xa9 \xe6\xa8\xa1\xf0\x9f\x99\x82\tpositive\n");
  EXPECT_EQ(ReadTaskFile(dir / "ok.tsv").at(0).input, "caf\xc3\xa9 \xe6\xa8\xa1\xf0\x9f\x99\x82");
}

TEST(Labels, IndexAndValue) {
  const TaskInfo cls{"c", "accuracy", {"neg", "pos"}, 0};
  const TaskInfo reg{"r", "pearson", {"0", "1", "2"}, 0};
  TextExample ex;
  ex.target = "pos";
  auto l = LabelsOf(cls, ex, "f:1");
  EXPECT_EQ(l.index, 1);
  EXPECT_TRUE(std::isnan(l.value));
  ex.label_str = "neg";  // an explicit label wins over the target
  EXPECT_EQ(LabelsOf(cls, ex, "f:1").index, 0);
  ex.label_str = "maybe";
  EXPECT_NE(ErrorOf([&] { LabelsOf(cls, ex, "f:9"); }).find("f:9"), std::string::npos);

  TextExample r;
  r.target = "2";
  l = LabelsOf(reg, r, "f:1");
  EXPECT_EQ(l.index, 2);
  EXPECT_EQ(l.value, 2.0f);
  r.label_num = 1.25;
  EXPECT_EQ(LabelsOf(reg, r, "f:1").value, 1.25f);
  TextExample bad;
  bad.target = "two";
  const TaskInfo reg_free{"r", "pearson", {}, 0};
  EXPECT_THROW(LabelsOf(reg_free, bad, "f:1"), Error);
}

// The fixture shards hold the bundled JSONL rows, in file order, packed by the documented rule.
TEST(Fixture, ShardsMatchTheBundledText) {
  const std::string td = MORE_TESTDATA;
  if (!fs::exists(td + "/shards") || !fs::exists(td + "/tok.model")) GTEST_SKIP() << "fixture missing";
  Tokenizer tok(td + "/tok.model");
  const Manifest m = LoadManifest(std::string(MORE_SOURCE_DIR) + "/shard_data/bundled/tasks.json");
  for (const std::string split : {"train", "eval"}) {
    ShardSet set({td + "/shards"}, split, tok.hash());
    ASSERT_EQ(set.tasks().size(), m.tasks.size());
    EXPECT_EQ(set.max_len(), 64);
    for (size_t t = 0; t < m.tasks.size(); ++t) {
      const auto rows = ReadTaskFile(m.tasks[t].files.at(split));
      ASSERT_EQ(set.tasks()[t].size, static_cast<int64_t>(rows.size())) << m.tasks[t].info.name;
      EXPECT_EQ(set.tasks()[t].candidates, m.tasks[t].info.candidates);
      EXPECT_EQ(set.tasks()[t].metric, m.tasks[t].info.metric);
      // First, last and a middle row of every task.
      const std::vector<int64_t> pick = {0, static_cast<int64_t>(rows.size()) / 2,
                                         static_cast<int64_t>(rows.size()) - 1};
      const MicroBatch mb = set.Read(static_cast<int>(t), pick, 1, tok.pad_id());
      for (size_t b = 0; b < pick.size(); ++b) {
        const TextExample& ex = rows[static_cast<size_t>(pick[b])];
        std::vector<int32_t> want = {tok.bos_id()};
        for (int32_t id : tok.Encode(ex.input)) want.push_back(id);
        const auto prompt = static_cast<int32_t>(want.size());
        for (int32_t id : tok.Encode(ex.target)) want.push_back(id);
        want.push_back(tok.eos_id());
        ASSERT_EQ(mb.lengths[b], static_cast<int32_t>(want.size()));
        EXPECT_EQ(mb.prompt_lengths[b], prompt);
        for (size_t j = 0; j < want.size(); ++j) {
          EXPECT_EQ(mb.input_ids[b * static_cast<size_t>(mb.seq_len) + j], want[j]);
          EXPECT_EQ(mb.target_mask[b * static_cast<size_t>(mb.seq_len) + j],
                    j >= static_cast<size_t>(prompt) ? 1 : 0);
        }
        const auto& cands = m.tasks[t].info.candidates;
        const auto at = std::find(cands.begin(), cands.end(), ex.target);
        ASSERT_NE(at, cands.end());
        EXPECT_EQ(mb.label_index[b], at - cands.begin());
        if (m.tasks[t].info.metric == "pearson")
          EXPECT_EQ(mb.label_value[b], static_cast<float>(std::stod(ex.target)));
        else
          EXPECT_TRUE(std::isnan(mb.label_value[b]));
      }
    }
  }
}
