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
  for (size_t i = 0; i < j["tasks"].size(); ++i) {
    const auto& jt = j["tasks"][i];
    const std::string where = fmt::format("manifest '{}', task #{}", path, i);
    if (!jt.is_object()) throw Error(where + " is not an object");
    ManifestTask t;
    for (const auto& [key, value] : jt.items()) {
      if (key == "name" || key == "metric") {
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
    m.tasks.push_back(std::move(t));
  }
  ValidateTasks(m.task_infos(), "manifest '" + path + "'");
  return m;
}

namespace {

TextExample ParseJsonLine(const std::string& line, const std::string& where) {
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

std::vector<TextExample> ReadTaskStream(std::istream& in, bool tsv, const std::string& path) {
  std::vector<TextExample> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, n);
    TextExample ex = tsv ? ParseTsvLine(line, where) : ParseJsonLine(line, where);
    ex.line = n;
    out.push_back(std::move(ex));
  }
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
