#include "more/data/manifest.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "more/core/error.h"
#include "more/core/strings.h"

namespace more {

namespace fs = std::filesystem;

std::vector<TaskInfo> Manifest::task_infos() const {
  std::vector<TaskInfo> out;
  for (const auto& t : tasks) out.push_back(t.info);
  return out;
}

namespace {

// A JSON array of token ids, each an integer in [0, vocab_size).
std::vector<int32_t> TokenIds(const nlohmann::json& v, const TokenizerBlock& tok, const std::string& where) {
  if (!v.is_array()) throw Error(fmt::format("{} must be an array of token ids, got {}", where, v.type_name()));
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (size_t k = 0; k < v.size(); ++k) {
    const auto& x = v[k];
    if (!x.is_number_integer())
      throw Error(fmt::format("{}[{}] must be an integer token id, got {} {}", where, k, x.type_name(), x.dump()));
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size)
      throw Error(fmt::format("{}[{}]: token id {} is outside the vocabulary [0, {})", where, k, id, tok.vocab_size),
                  "the ids must come from the tokenizer named in the manifest's \"tokenizer\" block");
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

TokenizerBlock ParseTokenizerBlock(const nlohmann::json& j, const std::string& path, const fs::path& dir) {
  const std::string where = "manifest '" + path + "': \"tokenizer\"";
  const char* hint = R"(expected "tokenizer": {"file": ".../tokenizer.json", "vocab_size": V, "bos_id": B, "eos_id": E, "pad_id": P})";
  if (!j.is_object()) throw Error(where + " must be an object", hint);
  TokenizerBlock t;
  for (const auto& [key, value] : j.items()) {
    if (key == "file") {
      if (!value.is_string() || value.get<std::string>().empty())
        throw Error(where + ": field 'file' must be a non-empty string (the tokenizer file's path)", hint);
      const fs::path f(value.get<std::string>());
      t.file = (f.is_absolute() ? f : dir / f).lexically_normal().string();
    } else if (key == "vocab_size" || key == "bos_id" || key == "eos_id" || key == "pad_id") {
      if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > (int64_t{1} << 30))
        throw Error(fmt::format("{}: field '{}' must be a non-negative integer, got {}", where, key, value.dump()), hint);
      const auto v = static_cast<int32_t>(value.get<int64_t>());
      (key == "vocab_size" ? t.vocab_size : key == "bos_id" ? t.bos_id : key == "eos_id" ? t.eos_id : t.pad_id) = v;
    } else {
      throw Error(fmt::format("{}: unknown field '{}'", where, key), hint);
    }
  }
  for (const char* key : {"file", "vocab_size", "bos_id", "eos_id", "pad_id"})
    if (!j.contains(key)) throw Error(fmt::format("{}: missing field '{}'", where, key), hint);
  for (const auto& [name, id] : {std::pair{"bos_id", t.bos_id}, {"eos_id", t.eos_id}, {"pad_id", t.pad_id}})
    if (id >= t.vocab_size)
      throw Error(fmt::format("{}: {} {} is outside the vocabulary [0, {})", where, name, id, t.vocab_size));
  if (!fs::is_regular_file(t.file))
    throw Error(fmt::format("{}: tokenizer file '{}' does not exist", where, t.file),
                "its hash goes into the shards, where the trainer checks it against the model's tokenizer");
  return t;
}

}  // namespace

Manifest LoadManifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read manifest '" + path + "'", "check the --manifest path");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("manifest '" + path + "' is not valid JSON: " + e.what());
  }
  Manifest m;
  m.path = path;
  const fs::path dir = fs::path(path).parent_path();
  if (!j.is_object() || !j.contains("tasks") || !j["tasks"].is_array())
    throw Error(
        "manifest '" + path + "' has no \"tasks\" array",
        R"(expected {"tasks": [{"name": ..., "metric": ..., "candidates": [...], "train": ..., "eval": ...}]})");
  if (j.contains("tokenizer")) m.tokenizer = ParseTokenizerBlock(j["tokenizer"], path, dir);
  for (size_t i = 0; i < j["tasks"].size(); ++i) {
    const auto& jt = j["tasks"][i];
    const std::string where = fmt::format("manifest '{}', task #{}", path, i);
    if (!jt.is_object()) throw Error(where + " is not an object");
    ManifestTask t;
    for (const auto& [key, value] : jt.items()) {
      if (key == "candidate_ids") {
        if (!m.tokenizer)
          throw Error(where + ": field 'candidate_ids' belongs to a pre-tokenized manifest, which has a "
                              "top-level \"tokenizer\" block",
                      "remove candidate_ids (shard_data encodes the candidates), or add the tokenizer block");
        if (!value.is_array()) throw Error(where + ": field 'candidate_ids' must be an array of arrays of token ids");
        for (size_t c = 0; c < value.size(); ++c)
          t.info.candidate_ids.push_back(
              TokenIds(value[c], *m.tokenizer, fmt::format("{}: candidate_ids[{}]", where, c)));
      } else if (key == "name" || key == "metric") {
        if (!value.is_string()) throw Error(where + ": field '" + key + "' must be a string");
        (key == "name" ? t.info.name : t.info.metric) = value.get<std::string>();
      } else if (key == "candidates") {
        if (!value.is_array()) throw Error(where + ": field 'candidates' must be an array of strings");
        for (const auto& c : value) {
          if (!c.is_string()) throw Error(where + ": field 'candidates' must be an array of strings");
          t.info.candidates.push_back(c.get<std::string>());
        }
      } else if (value.is_string()) {  // a split -> file
        const fs::path f(value.get<std::string>());
        t.files[key] = (f.is_absolute() ? f : dir / f).lexically_normal().string();
      } else {
        throw Error(where + ": field '" + key + "' must be a string (a task file path)");
      }
    }
    if (t.info.name.empty()) throw Error(where + ": missing \"name\"");
    if (m.tokenizer) {
      if (t.info.candidate_ids.size() != t.info.candidates.size())
        throw Error(fmt::format("{} ('{}'): {} candidate(s) but {} candidate_ids", where, t.info.name,
                                t.info.candidates.size(), t.info.candidate_ids.size()),
                    "a pre-tokenized manifest gives every candidate's token ids, in the order of candidates");
      for (size_t c = 0; c < t.info.candidate_ids.size(); ++c)
        if (t.info.candidate_ids[c].empty())
          throw Error(fmt::format("{} ('{}'): candidate_ids[{}] ('{}') is empty", where, t.info.name, c,
                                  t.info.candidates[c]),
                      "each candidate needs at least one token (the evaluator scores its tokens + EOS)");
    }
    m.tasks.push_back(std::move(t));
  }
  ValidateTasks(m.task_infos(), "manifest '" + path + "'");
  return m;
}

namespace {

// One line of a task file (text or pre-tokenized) as a JSON object whose keys are unique.
nlohmann::json ParseJsonObjectLine(const std::string& line, const std::string& where) {
  nlohmann::json j;
  std::set<std::string> keys;
  std::string duplicate;  // JSON allows a key twice and the parser would keep the last silently
  const auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && duplicate.empty() &&
        !keys.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    j = nlohmann::json::parse(line, on_event);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": bad JSON: " + e.what(), "each line must be one JSON object");
  }
  if (!j.is_object()) throw Error(where + ": the line is not a JSON object");
  if (!duplicate.empty())
    throw Error(fmt::format("{}: field '{}' appears twice", where, duplicate), "which one is meant? keep one");
  return j;
}

TextExample ParseJsonLine(const std::string& line, const std::string& where) {
  const nlohmann::json j = ParseJsonObjectLine(line, where);
  TextExample ex;
  for (const char* key : {"input", "target"}) {
    if (!j.contains(key)) throw Error(where + ": missing field '" + key + "'");
    if (!j[key].is_string())
      throw Error(fmt::format("{}: field '{}' must be a string, got {}", where, key, j[key].type_name()));
  }
  ex.input = j["input"].get<std::string>();
  ex.target = j["target"].get<std::string>();
  if (j.contains("label")) {
    const auto& l = j["label"];
    if (l.is_string())
      ex.label_str = l.get<std::string>();
    else if (l.is_number())
      ex.label_num = l.get<double>();
    else if (!l.is_null())
      throw Error(
          fmt::format("{}: field 'label' must be a string or a number, got {}", where, l.type_name()));
  }
  return ex;
}

TextExample ParseTsvLine(const std::string& line, const std::string& where) {
  std::vector<std::string> cols;
  size_t start = 0;
  for (;;) {
    const size_t tab = line.find('\t', start);
    cols.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) break;
    start = tab + 1;
  }
  if (cols.size() < 2 || cols.size() > 3)
    throw Error(fmt::format("{}: {} tab-separated columns, expected input<TAB>target[<TAB>label]", where,
                            cols.size()));
  size_t bad = 0;
  if (!IsValidUtf8(line, &bad))
    throw Error(fmt::format("{}: not valid UTF-8 (byte {} of the line)", where, bad + 1),
                "task files are UTF-8 text (as JSON lines must be)");
  TextExample ex;
  ex.input = cols[0];
  ex.target = cols[1];
  if (cols.size() == 3) ex.label_str = cols[2];
  return ex;
}

std::optional<double> ParseNumber(const std::string& s) {
  double v = 0;
  const char* end = s.data() + s.size();
  const char* b = s.data();
  while (b < end && *b == ' ') ++b;
  const auto [p, ec] = std::from_chars(b, end, v);
  if (ec != std::errc() || p == b) return std::nullopt;
  for (const char* q = p; q < end; ++q)
    if (*q != ' ') return std::nullopt;
  return v;
}

}  // namespace

std::vector<TextExample> ReadTaskFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read task file '" + path + "'", "check the paths in the manifest");
  return ReadTaskStream(in, fs::path(path).extension() == ".tsv", path);
}

namespace {
// Calls fn(line, where, n) for each line of a task file that is not blank (a trailing \r dropped);
// where is "path:n".
template <class Fn>
void ForEachTaskLine(std::istream& in, const std::string& path, Fn&& fn) {
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    fn(line, fmt::format("{}:{}", path, n), n);
  }
}
}  // namespace

std::vector<TextExample> ReadTaskStream(std::istream& in, bool tsv, const std::string& path) {
  std::vector<TextExample> out;
  ForEachTaskLine(in, path, [&](const std::string& line, const std::string& where, int64_t n) {
    TextExample ex = tsv ? ParseTsvLine(line, where) : ParseJsonLine(line, where);
    ex.line = n;
    out.push_back(std::move(ex));
  });
  return out;
}

std::vector<TokenExample> ReadTokenFile(const std::string& path, const TokenizerBlock& tok) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read task file '" + path + "'", "check the paths in the manifest");
  std::vector<TokenExample> out;
  ForEachTaskLine(in, path, [&](const std::string& line, const std::string& where, int64_t n) {
    const nlohmann::json j = ParseJsonObjectLine(line, where);
    for (const auto& [key, value] : j.items())
      if (key != "input_ids" && key != "target_ids" && key != "label" && key != "value")
        throw Error(fmt::format("{}: unknown field '{}' in a pre-tokenized row", where, key),
                    "rows of a pre-tokenized manifest hold input_ids, target_ids, label and value only");
    TokenExample ex;
    for (const char* key : {"input_ids", "target_ids"})
      if (!j.contains(key)) throw Error(fmt::format("{}: missing field '{}'", where, key));
    ex.input_ids = TokenIds(j["input_ids"], tok, where + ": input_ids");
    ex.target_ids = TokenIds(j["target_ids"], tok, where + ": target_ids");
    if (ex.input_ids.empty() || ex.input_ids.front() != tok.bos_id)
      throw Error(fmt::format("{}: input_ids must start with bos_id {}, got {}", where, tok.bos_id,
                              ex.input_ids.empty() ? std::string("[]") : std::to_string(ex.input_ids.front())),
                  "input_ids is BOS + prompt tokens");
    if (ex.target_ids.empty())
      throw Error(where + ": target_ids is empty", "target_ids is the target's tokens + EOS (at least the EOS)");
    if (ex.target_ids.back() != tok.eos_id)
      throw Error(fmt::format("{}: target_ids must end with eos_id {}, got {}", where, tok.eos_id,
                              ex.target_ids.back()),
                  "target_ids is the target's tokens + EOS");
    if (j.contains("label") && !j["label"].is_null()) {
      if (!j["label"].is_string())
        throw Error(fmt::format("{}: field 'label' must be a string (a candidate), got {}", where,
                                j["label"].type_name()),
                    "a numeric label of a pearson/spearman task goes into 'value'");
      ex.labels.label_str = j["label"].get<std::string>();
    }
    if (j.contains("value") && !j["value"].is_null()) {
      if (!j["value"].is_number())
        throw Error(fmt::format("{}: field 'value' must be a number, got {}", where, j["value"].type_name()));
      ex.labels.label_num = j["value"].get<double>();
    }
    ex.labels.line = n;
    out.push_back(std::move(ex));
  });
  return out;
}

ExampleLabels LabelsOf(const TaskInfo& task, const TextExample& ex, const std::string& where) {
  ExampleLabels l;
  l.value = std::numeric_limits<float>::quiet_NaN();
  if (!task.candidates.empty()) {
    const std::string& key = ex.label_str ? *ex.label_str : ex.target;
    const auto it = std::find(task.candidates.begin(), task.candidates.end(), key);
    if (it == task.candidates.end())
      throw Error(fmt::format("{}: label '{}' of task '{}' is not one of its candidates [{}]", where, key,
                              task.name, fmt::join(task.candidates, ", ")),
                  "fix the row or add the label to the task's candidates in the manifest");
    l.index = static_cast<int32_t>(it - task.candidates.begin());
  }
  if (IsRegressionMetric(task.metric)) {
    std::optional<double> v = ex.label_num;
    if (!v && ex.label_str) v = ParseNumber(*ex.label_str);
    if (!v && !ex.label_str) v = ParseNumber(ex.target);
    if (!v || !std::isfinite(*v))
      throw Error(
          fmt::format("{}: task '{}' (metric {}) needs a numeric label; got label '{}' / target '{}'",
                      where, task.name, task.metric, ex.label_str.value_or(""), ex.target));
    l.value = static_cast<float>(*v);
  }
  return l;
}

}  // namespace more
