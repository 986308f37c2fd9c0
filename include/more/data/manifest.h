// Task manifest and text examples: the input side of `shard_data`.
//
// Manifest (JSON): {"tasks": [{"name": "sentiment", "metric": "accuracy",
//                              "candidates": ["negative", "positive"],
//                              "train": "sentiment/train.jsonl", "eval": "sentiment/eval.jsonl"}]}
// Each split key ("train", "eval", ...) names a task file, relative to the manifest's directory.
// "metric" defaults to "accuracy", "candidates" to [] (free-form generation target).
//
// Task files: JSONL, one object per line: {"input": str, "target": str, "label": str|number}
// ("label" optional; other keys ignored; blank lines skipped), or TSV (.tsv):
// input<TAB>target[<TAB>label]. Labels (see ExampleLabels):
//   label_index = index in candidates of the string "label" if given, else of "target"
//                 (-1 when the task has no candidates); not found -> error.
//   label_value = for metric "pearson" / "spearman": the numeric "label", else "label"/"target"
//                 parsed as a number; NaN for other metrics.
// "metric": accuracy | mcc | f1 (binary, two candidates, the second positive) | pearson | spearman.
//
// A PRE-TOKENIZED manifest (docs/data.md; launch/hf_tokenize.py writes one) has a top-level
// "tokenizer" block {"file", "vocab_size", "bos_id", "eos_id", "pad_id"} and per task
// "candidate_ids" (each candidate's ids, no BOS/EOS); its task files hold token rows
// {"input_ids": [BOS, prompt...], "target_ids": [target..., EOS], "label": str, "value": number}
// (label: the row's candidate, value: the numeric label of a pearson/spearman task; both optional).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <istream>
#include <string>
#include <vector>

#include "more/data/shard_format.h"

namespace more {

struct ManifestTask {
  TaskInfo info;                             // name, metric, candidates (size unused)
  std::map<std::string, std::string> files;  // split -> path (resolved against the manifest dir)
};

// The tokenizer block of a pre-tokenized manifest: what the ids were made with.
struct TokenizerBlock {
  std::string file;  // the tokenizer file (e.g. the model's tokenizer.json); its hash goes into the shards
  int32_t vocab_size = 0, bos_id = 0, eos_id = 0, pad_id = 0;
};

struct Manifest {
  std::string path;
  std::vector<ManifestTask> tasks;
  std::optional<TokenizerBlock> tokenizer;  // set: a pre-tokenized manifest (candidate_ids in tasks)
  std::vector<TaskInfo> task_infos() const;
};

// Throws more::Error naming the manifest (and task) on a missing file, bad JSON, a missing
// or mistyped field, or an invalid task list.
Manifest LoadManifest(const std::string& path);

struct TextExample {
  std::string input;
  std::string target;
  std::optional<std::string> label_str;
  std::optional<double> label_num;
  int64_t line = 0;  // 1-based line in its file
};

// Reads a .jsonl (or .tsv) task file. Errors name file:line (bad JSON, missing input/target,
// wrong field type).
std::vector<TextExample> ReadTaskFile(const std::string& path);
// The same from a stream; `path` names the source in errors, `tsv` picks the format.
std::vector<TextExample> ReadTaskStream(std::istream& in, bool tsv, const std::string& path);

// One row of a pre-tokenized task file, checked against the manifest's tokenizer block: only
// the keys input_ids, target_ids, label (string), value (number); ids are integers in [0, vocab_size); input_ids starts
// with bos_id, target_ids is non-empty and ends with eos_id. `labels` carries label_str /
// label_num and line (input and target are empty: LabelsOf finds the candidate from label_str).
struct TokenExample {
  std::vector<int32_t> input_ids;   // BOS + prompt
  std::vector<int32_t> target_ids;  // target + EOS
  TextExample labels;
};
// Errors name file:line and the problem.
std::vector<TokenExample> ReadTokenFile(const std::string& path, const TokenizerBlock& tok);

struct ExampleLabels {
  int32_t index = -1;
  float value;  // NaN when none
};
// Throws more::Error naming `where` (file:line) when the label is not a candidate or a pearson
// label is not a number.
ExampleLabels LabelsOf(const TaskInfo& task, const TextExample& ex, const std::string& where);

}  // namespace more
