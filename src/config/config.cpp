#include "more/config/config.h"

#include <cmath>
#include <algorithm>
#include <map>
#include <set>
#include <filesystem>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "more/config/toml_text.h"
#include "more/core/error.h"
#include "more/core/safetensors_writer.h"
#include "more/core/strings.h"
#include "more/model/hf_config.h"

namespace more {
namespace {

template <typename T>
constexpr const char* TypeName() {
  if constexpr (std::is_same_v<T, bool>) return "bool (true/false)";
  else if constexpr (std::is_integral_v<T>) return "integer";
  else if constexpr (std::is_floating_point_v<T>) return "number";
  else return "string";
}

// Parses a command-line value into the field's type.
template <typename T>
void SetFromString(T& field, const std::string& name, const std::string& value, const std::string& origin) {
  auto bad = [&]() {
    throw Error(fmt::format("config key '{}' from {}: '{}' is not a valid {}", name, origin, value,
                            TypeName<T>()));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (value == "true" || value == "1") field = true;
    else if (value == "false" || value == "0") field = false;
    else bad();
  } else if constexpr (std::is_integral_v<T>) {
    size_t pos = 0;
    try { field = static_cast<T>(std::stoll(value, &pos)); } catch (...) { bad(); }
    if (pos != value.size()) bad();
  } else if constexpr (std::is_floating_point_v<T>) {
    size_t pos = 0;
    try { field = std::stod(value, &pos); } catch (...) { bad(); }
    if (pos != value.size()) bad();
  } else {
    field = value;
  }
}

template <typename T>
void SetFromToml(T& field, const std::string& name, const toml::node& node, const std::string& origin) {
  auto bad = [&]() {
    throw Error(fmt::format("config key '{}' in {}: expected a {}", name, origin, TypeName<T>()));
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (auto v = node.value<bool>()) field = *v; else bad();
  } else if constexpr (std::is_integral_v<T>) {
    if (!node.is_integer()) bad();
    field = static_cast<T>(*node.value<int64_t>());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (auto v = node.value<double>()) field = *v; else bad();
  } else {
    if (auto v = node.value<std::string>()) field = *v; else bad();
  }
}

std::set<std::string> KnownKeys() {
  Config c;
  std::set<std::string> keys;
  VisitConfig(c, [&](const char* name, auto&, const char*) { keys.insert(name); });
  return keys;
}

std::string Suggest(const std::string& key) {
  const auto section = key.substr(0, key.find('.'));
  std::string out;
  for (const auto& k : KnownKeys())
    if (k.rfind(section + ".", 0) == 0) out += (out.empty() ? "" : ", ") + k;
  return out.empty() ? "sections: model, adapter, data, train, eval, ckpt, transfer, parallel" : "known: " + out;
}

void ApplyOne(Config& c, const std::string& key, const std::string& value, const std::string& origin) {
  bool found = false;
  VisitConfig(c, [&](const char* name, auto& field, const char*) {
    if (key == name) { SetFromString(field, key, value, origin); found = true; }
  });
  if (!found) throw Error(fmt::format("unknown config key '{}' from {}", key, origin), Suggest(key));
}

template <typename T>
std::string ValueToString(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>) return nlohmann::json(v).dump();
  else if constexpr (std::is_floating_point_v<T>) {
    auto str = fmt::format("{}", v);  // shortest representation that reads back exactly
    if (str.find_first_of(".eEn") == std::string::npos) str += ".0";
    return str;
  } else return std::to_string(v);
}

void Require(bool ok, const std::string& key, const std::string& msg) {
  if (!ok) throw Error(fmt::format("config: {} {}", key, msg));
}

}  // namespace

Config LoadConfig(const std::string& toml_path, const std::vector<std::string>& overrides) {
  Config c;
  if (!toml_path.empty()) {
    if (!std::filesystem::is_regular_file(toml_path))
      throw Error(fmt::format("config file '{}' does not exist", toml_path), "check the --config path");
    toml::table tbl;
    // no character beyond ASCII reaches toml++ (config/toml_text.h says why and how)
    const std::string text = TomlTextForLibrary(ReadFileToString(toml_path), toml_path);
    try {
      tbl = toml::parse(text, toml_path);
    } catch (const toml::parse_error& e) {
      std::ostringstream s;
      s << e.description() << " at line " << e.source().begin.line;
      throw Error(fmt::format("cannot parse config file '{}': {}", toml_path, s.str()));
    }
    for (auto&& [section, sub] : tbl) {
      const auto* t = sub.as_table();
      if (!t) throw Error(fmt::format("config file '{}': top-level key '{}' must be a [section]",
                                      toml_path, section.str()));
      for (auto&& [k, v] : *t) {
        const toml::node& node = v;  // (clang before 16 cannot capture a structured binding)
        const std::string key = std::string(section.str()) + "." + std::string(k.str());
        bool found = false;
        VisitConfig(c, [&](const char* name, auto& field, const char*) {
          if (key == name) { SetFromToml(field, key, node, "'" + toml_path + "'"); found = true; }
        });
        if (!found)
          throw Error(fmt::format("unknown config key '{}' in '{}'", key, toml_path), Suggest(key));
      }
    }
  }
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos)
      throw Error(fmt::format("override '--{}' needs the form --section.key=value", o));
    ApplyOne(c, o.substr(0, eq), o.substr(eq + 1), "the command line");
  }
  return c;
}

std::string ConfigToToml(const Config& cfg) {
  std::string out, current;
  VisitConfig(cfg, [&](const char* name, const auto& field, const char* help) {
    std::string key(name);
    auto dot = key.find('.');
    auto section = key.substr(0, dot);
    if (section != current) {
      out += fmt::format("{}[{}]\n", current.empty() ? "" : "\n", section);
      current = section;
    }
    out += fmt::format("{} = {}  # {}\n", key.substr(dot + 1), ValueToString(field), help);
  });
  return out;
}

nlohmann::json ConfigToJson(const Config& cfg) {
  nlohmann::json j = nlohmann::json::object();
  VisitConfig(cfg, [&](const char* name, const auto& field, const char*) {
    std::string key(name);
    auto dot = key.find('.');
    j[key.substr(0, dot)][key.substr(dot + 1)] = field;
  });
  return j;
}

Config ConfigFromJson(const nlohmann::json& j) {
  Config c;
  VisitConfig(c, [&](const char* name, auto& field, const char*) {
    std::string key(name);
    auto dot = key.find('.');
    auto s = key.substr(0, dot), k = key.substr(dot + 1);
    if (j.contains(s) && j[s].contains(k)) j[s][k].get_to(field);
  });
  return c;
}

std::string ConfigHelp() {
  Config c;
  std::string out;
  VisitConfig(c, [&](const char* name, const auto& field, const char* help) {
    out += fmt::format("  --{}={}\n      {}\n", name, ValueToString(field), help);
  });
  return out;
}

const std::vector<std::string>& ResumeGuardedKeys() {
  static const std::vector<std::string> kKeys = {
      "adapter.scaling", "adapter.selection",     "adapter.alpha",    "adapter.lambda_cl",
      "adapter.tau",     "adapter.task_emb_init", "adapter.task_emb_std", "adapter.dtype", "data.sampling",
      "data.temperature", "data.tasks"};
  return kKeys;
}

std::vector<std::string> Config::TargetModules() const {
  static const std::set<std::string> kKnown = {"q", "k", "v", "o", "gate", "up", "down"};
  std::vector<std::string> out;
  for (const auto& item : SplitList(adapter.targets)) {
    Require(kKnown.count(item) != 0, "adapter.targets", "has unknown module '" + item +
                                                            "' (choose from q,k,v,o,gate,up,down)");
    out.push_back(item);
  }
  return out;
}

std::vector<int64_t> Config::ExpertRanks() const {
  std::vector<int64_t> out;
  for (const auto& item : SplitList(adapter.experts)) {
    size_t pos = 0;
    int64_t k = 0;
    try { k = std::stoll(item, &pos); } catch (...) { pos = 0; }
    Require(pos == item.size() && pos > 0, "adapter.experts", "has '" + item + "', which is not an integer rank");
    Require(k >= 1 && k <= adapter.rank, "adapter.experts",
            fmt::format("has rank {} outside [1, adapter.rank = {}]", k, adapter.rank));
    Require(out.empty() || k > out.back(), "adapter.experts", "must list ranks in ascending order, each once");
    out.push_back(k);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Config::TransferPairs() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& item : SplitList(transfer.tasks)) {
    const auto eq = item.find('=');
    Require(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), "transfer.tasks",
            "has '" + item + "': write new_task=source_task");
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return out;
}

std::string Config::checkpoint_dir() const {
  return ckpt.dir.empty() ? train.out_dir + "/checkpoints" : ckpt.dir;
}

std::vector<std::string> Config::tokenizer_paths() const {
  if (!data.tokenizer.empty()) return {data.tokenizer};
  std::vector<std::string> out;
  for (const char* f : {"/tokenizer.model", "/tokenizer.json"})
    if (std::filesystem::exists(model.path + f)) out.push_back(model.path + f);
  return out;
}

void Config::Validate() const {
  Require(!model.path.empty(), "model.path", "is required (a Hugging Face LLaMA directory)");
  Require(!data.train.empty(), "data.train", "is required (a directory of HDF5 shards)");
  Require(model.dtype == "auto" || model.dtype == "float32" || model.dtype == "bfloat16",
          "model.dtype", "must be auto, float32 or bfloat16, not '" + model.dtype + "'");
  Require(model.attention == "auto" || model.attention == "measure" || model.attention == "fused" ||
              model.attention == "composed",
          "model.attention", "must be auto, measure, fused or composed, not '" + model.attention + "'");
  Require(model.device == "cpu" || model.device == "cuda", "model.device", "must be cpu or cuda");
  Require(adapter.dtype == "float32" || adapter.dtype == "bfloat16", "adapter.dtype",
          "must be float32 or bfloat16, not '" + adapter.dtype + "'");
  Require(adapter.method == "more" || adapter.method == "lora", "adapter.method",
          "must be 'more' or 'lora', not '" + adapter.method + "'");
  Require(adapter.rank >= 1, "adapter.rank", "must be >= 1");
  Require(adapter.dropout >= 0 && adapter.dropout < 1, "adapter.dropout", "must be in [0, 1)");
  Require(adapter.scaling == "paper" || adapter.scaling == "none" || adapter.scaling == "per_component",
          "adapter.scaling", "must be paper, none or per_component, not '" + adapter.scaling + "'");
  Require(adapter.selection == "ste" || adapter.selection == "soft", "adapter.selection",
          "must be ste or soft");
  Require(std::isfinite(adapter.lambda_cl) && adapter.lambda_cl >= 0, "adapter.lambda_cl", "must be finite and >= 0");
  Require(std::isfinite(adapter.tau) && adapter.tau > 0, "adapter.tau", "must be finite and > 0");
  ExpertRanks();
  Require(adapter.gate_input == "task" || adapter.gate_input == "shared", "adapter.gate_input",
          "must be task or shared, not '" + adapter.gate_input + "'");
  Require(adapter.gate_input == "task" || adapter.lambda_cl == 0, "adapter.gate_input",
          "= shared has no per-task embeddings for the contrastive loss: set adapter.lambda_cl=0");
  Require(adapter.gate == "learned" || adapter.gate == "frozen_at_init", "adapter.gate",
          "must be learned or frozen_at_init, not '" + adapter.gate + "'");
  if (adapter.gate == "frozen_at_init") {  // a hard gate over per-task embeddings is what it freezes
    Require(adapter.method == "more", "adapter.gate", "= frozen_at_init needs adapter.method = more (LoRA has no gate)");
    Require(adapter.selection == "ste", "adapter.gate",
            "= frozen_at_init needs adapter.selection = ste (soft selection mixes every rank: nothing to fix)");
    Require(adapter.gate_input == "task", "adapter.gate",
            "= frozen_at_init needs adapter.gate_input = task (one fixed rank for all tasks is a LoRA: use method = lora)");
  }
  Require(adapter.task_emb_init == "kaiming" || adapter.task_emb_init == "normal", "adapter.task_emb_init",
          "must be kaiming or normal, not '" + adapter.task_emb_init + "'");
  Require(adapter.task_emb_std > 0, "adapter.task_emb_std", "must be > 0");
  Require(!TargetModules().empty(), "adapter.targets", "must name at least one module");
  Require(data.bucket >= 1, "data.bucket", "must be >= 1");
  Require(data.sampling == "paper" || data.sampling == "uniform" || data.sampling == "proportional" ||
              data.sampling == "temperature",
          "data.sampling", "must be paper, uniform, proportional or temperature");
  Require(data.temperature > 0, "data.temperature", "must be > 0");
  Require(data.prefetch >= 1, "data.prefetch", "must be >= 1");
  Require(data.pack_len >= 0, "data.pack_len", "must be >= 0 (0: the shards' max_len)");
  Require(data.pack_len == 0 || data.packing, "data.pack_len",
          "is the packed rows' length: it needs data.packing = true (or leave it 0)");
  Require(train.steps >= 1, "train.steps", "must be >= 1");
  Require(train.micro_batch >= 1, "train.micro_batch", "must be >= 1");
  Require(train.global_batch >= 1, "train.global_batch", "must be >= 1");
  Require(std::isfinite(train.lr) && train.lr > 0, "train.lr", fmt::format("must be finite and > 0, not {}", train.lr));
  Require(std::isfinite(train.beta1) && train.beta1 >= 0 && train.beta1 < 1, "train.beta1",
          fmt::format("must be in [0, 1), not {}", train.beta1));
  Require(std::isfinite(train.beta2) && train.beta2 >= 0 && train.beta2 < 1, "train.beta2",
          fmt::format("must be in [0, 1), not {}", train.beta2));
  Require(std::isfinite(train.eps) && train.eps > 0, "train.eps", fmt::format("must be finite and > 0, not {}", train.eps));
  Require(std::isfinite(train.weight_decay) && train.weight_decay >= 0, "train.weight_decay",
          fmt::format("must be finite and >= 0, not {}", train.weight_decay));
  Require(train.warmup >= 0, "train.warmup", "must be >= 0");
  Require(train.recompute_layers >= 0, "train.recompute_layers", "must be >= 0");
  Require(std::isfinite(train.min_lr_ratio) && train.min_lr_ratio >= 0 && train.min_lr_ratio <= 1, "train.min_lr_ratio", "must be in [0, 1]");
  Require(std::isfinite(train.grad_clip) && train.grad_clip >= 0, "train.grad_clip", "must be finite and >= 0");
  Require(train.log_every >= 1, "train.log_every", "must be >= 1");
  Require(train.nan_policy == "stop" || train.nan_policy == "skip", "train.nan_policy",
          "must be stop or skip");
  Require(eval.batch >= 1, "eval.batch", "must be >= 1");
  Require(ckpt.keep_last >= 1, "ckpt.keep_last", "must be >= 1");
  Require(TransferPairs().empty() || !transfer.from.empty(), "transfer.tasks", "needs transfer.from (a checkpoint)");
  Require(transfer.from.empty() || adapter.method == "more", "transfer.from", "needs adapter.method = more");
  Require(transfer.from.empty() || adapter.gate == "learned", "transfer.from",
          "needs adapter.gate = learned (a frozen gate's ranks are fixed per task at init, so a new task has none)");
  for (const auto& item : SplitList(ckpt.allow_changes)) {
    const auto& keys = ResumeGuardedKeys();
    Require(item == "all" || std::find(keys.begin(), keys.end(), item) != keys.end(), "ckpt.allow_changes",
            "names '" + item + "', which is not a guarded setting (choose from " +
                fmt::format("{}", fmt::join(keys, ", ")) + ", or all)");
  }
  Require(parallel.tp >= 1 && parallel.pp >= 1 && parallel.dp >= 0, "parallel",
          "tp and pp must be >= 1 and dp >= 0");
  Require(std::isfinite(parallel.timeout_s) && parallel.timeout_s >= 0, "parallel.timeout_s",
          "must be >= 0 seconds (0 = watchdog off)");
  Require(parallel.schedule == "1f1b" || parallel.schedule == "gpipe", "parallel.schedule",
          "must be 1f1b or gpipe");
}

void Config::ValidateAgainstModel(const LlamaConfig& m, int world_size) const {
  const int64_t tp = parallel.tp, pp = parallel.pp;
  if (world_size % (tp * pp) != 0)
    throw Error(fmt::format("layout: world size {} is not divisible by tp*pp = {}*{}", world_size, tp, pp),
                "launch a multiple of tp*pp ranks");
  const int64_t dp = dp_size(world_size);
  if (tp * pp * dp != world_size)
    throw Error(fmt::format("layout: tp*pp*dp = {}*{}*{} = {} but the job has {} ranks", tp, pp, dp,
                            tp * pp * dp, world_size),
                "set parallel.dp=0 to infer it, or launch tp*pp*dp ranks");
  auto div = [&](int64_t a, int64_t b, const std::string& what, const std::string& key) {
    if (a % b != 0)
      throw Error(fmt::format("layout: {} = {} is not divisible by {} = {}", what, a, key, b),
                  "choose " + key + " dividing " + what);
  };
  div(m.num_attention_heads, tp, "num_attention_heads", "parallel.tp");
  if (m.num_key_value_heads % tp != 0)
    throw Error(fmt::format("layout: num_key_value_heads = {} is not divisible by parallel.tp = {}{}",
                            m.num_key_value_heads, tp,
                            tp > m.num_key_value_heads ? " (tp may not exceed the number of kv heads)" : ""),
                "tensor parallelism splits the kv heads, it does not replicate them: choose parallel.tp dividing "
                "num_key_value_heads and use pipeline or data parallelism for more ranks");
  div(m.intermediate_size, tp, "intermediate_size", "parallel.tp");
  div(m.vocab_size, tp, "vocab_size", "parallel.tp");
  div(m.num_hidden_layers, pp, "num_hidden_layers", "parallel.pp");
  div(train.global_batch, train.micro_batch * dp, "train.global_batch", "train.micro_batch * dp");
}

}  // namespace more
