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

struct Manifest {
  std::string path;
  std::vector<ManifestTask> tasks;
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

struct ExampleLabels {
  int32_t index = -1;
  float value;  // NaN when none
};
// Throws more::Error naming `where` (file:line) when the label is not a candidate or a pearson
// label is not a number.
ExampleLabels LabelsOf(const TaskInfo& task, const TextExample& ex, const std::string& where);

}  // namespace more
