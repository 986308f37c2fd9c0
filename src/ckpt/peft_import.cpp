#include "more/ckpt/peft_import.h"

#include <filesystem>
#include <regex>

#include "more/ckpt/peft_config.h"
#include "more/core/error.h"
#include "more/core/log.h"
#include "more/core/safetensors.h"
#include "more/model/llama.h"
#include "more/model/weights.h"

namespace fs = std::filesystem;

namespace more {
namespace {

// PEFT's rule (peft.utils.other.get_pattern_key): a pattern key matches a module name equal to
// it or ending in "." + it; the first match in the dict's order wins.
const nlohmann::json* PatternValue(const nlohmann::json& pattern, const std::string& module) {
  if (!pattern.is_object()) return nullptr;
  for (auto it = pattern.begin(); it != pattern.end(); ++it) {
    try {
      if (std::regex_match(module, std::regex("(.*\\.)?(" + it.key() + ")"))) return &it.value();
    } catch (const std::regex_error&) {
      if (module == it.key() || (module.size() > it.key().size() &&
                                 module.compare(module.size() - it.key().size() - 1, std::string::npos, "." + it.key()) == 0))
        return &it.value();
    }
  }
  return nullptr;
}

}  // namespace

int ImportPeftLora(const std::string& dir, const LlamaConfig& model, const std::vector<std::string>& targets,
                   AdapterSet& adapters) {
  const auto cfg_path = dir + "/adapter_config.json";
  const auto st_path = dir + "/adapter_model.safetensors";
  if (!fs::is_directory(dir))
    throw Error(fmt::format("adapter.init_from: '{}' is not a directory", dir),
                "give a PEFT LoRA directory (adapter_config.json + adapter_model.safetensors)");
  if (!fs::exists(cfg_path) || !fs::exists(st_path))
    throw Error(fmt::format("adapter.init_from: '{}' has no {}", dir,
                            fs::exists(cfg_path) ? "adapter_model.safetensors" : "adapter_config.json"),
                "a PEFT LoRA directory holds adapter_config.json and adapter_model.safetensors "
                "(.bin adapters must be converted first)");
  const PeftLoraConfig c = ParsePeftLoraConfig(ReadFileToString(cfg_path), cfg_path);
  const bool rslora = c.use_rslora;
  const nlohmann::json& rank_pattern = c.rank_pattern;
  const nlohmann::json& alpha_pattern = c.alpha_pattern;

  SafetensorsFile f(st_path);
  // every tensor must name a module this run adapts (dropping part of an adapter silently would
  // start from something else than the user has)
  static const std::regex kKey(R"(base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)_proj\.lora_([AB])(\.default)?\.weight)");
  std::map<std::string, std::pair<std::string, std::string>> found;  // "layers.i.kind" -> (A name, B name)
  for (const auto& name : f.Names()) {
    std::smatch m;
    if (!std::regex_match(name, m, kKey))
      throw Error(fmt::format("adapter.init_from: '{}': tensor '{}' is not a LoRA A/B of a LLaMA q/k/v/o/gate/up/down "
                              "projection",
                              st_path, name),
                  "only LoRA on the attention and MLP projections can be imported");
    const int64_t layer = std::stoll(m[1]);
    const std::string kind = m[3];
    if (layer >= model.num_hidden_layers || std::find(targets.begin(), targets.end(), kind) == targets.end())
      throw Error(fmt::format("adapter.init_from: '{}': tensor '{}' adapts a module this run does not (layers 0..{}, "
                              "adapter.targets = {})",
                              st_path, name, model.num_hidden_layers - 1, fmt::join(targets, ",")),
                  "add the module to adapter.targets, or use an adapter of this model");
    auto& slot = found[fmt::format("layers.{}.{}", layer, kind)];
    (m[4] == "A" ? slot.first : slot.second) = name;
  }
  const double r_run = static_cast<double>(adapters.adapters().empty() ? 1 : adapters.adapters().front()->options().rank);
  int loaded = 0;
  torch::NoGradGuard ng;
  for (const auto& a : adapters.adapters()) {
    auto it = found.find(a->name());
    if (it == found.end()) {
      spdlog::info("adapter.init_from: no LoRA for {} in '{}': it keeps its initialisation", a->name(), dir);
      continue;
    }
    const auto& [an, bn] = it->second;
    if (an.empty() || bn.empty())
      throw Error(fmt::format("adapter.init_from: '{}' holds lora_{} but not lora_{} of module {}", st_path,
                              an.empty() ? "B" : "A", an.empty() ? "A" : "B", a->name()));
    auto load = [&](const std::string& n) {
      const auto& info = f.Info(n);
      return torch::from_blob(const_cast<void*>(f.Data(n)), info.shape, torch::TensorOptions().dtype(TorchDType(info.dtype)))
          .to(torch::kFloat32);  // a copy
    };
    auto pa = load(an), pb = load(bn);  // [r_p, d_in], [d_out, r_p]
    const int64_t rp = pa.dim() == 2 ? pa.size(0) : -1;
    if (pa.dim() != 2 || pb.dim() != 2 || pa.size(1) != a->d_in() || pb.size(0) != a->d_out() || pb.size(1) != rp)
      throw Error(fmt::format("adapter.init_from: '{}': module {} has lora_A {} and lora_B {}; this model needs "
                              "[r, {}] and [{}, r]",
                              st_path, a->name(), fmt::format("[{}]", fmt::join(pa.sizes(), ", ")),
                              fmt::format("[{}]", fmt::join(pb.sizes(), ", ")), a->d_in(), a->d_out()),
                  "the adapter was trained for another model");
    if (rp > a->A.size(0))
      throw Error(fmt::format("adapter.init_from: '{}': module {} has rank {} but adapter.rank is {}", st_path,
                              a->name(), rp, a->A.size(0)),
                  "set adapter.rank to at least the adapter's rank");
    // PEFT's scaling for this module
    const auto hf = "model." + a->name().substr(0, a->name().rfind('.')) + "." +
                    HfModuleName(a->name().substr(a->name().rfind('.') + 1));
    const auto* rv = PatternValue(rank_pattern, hf);
    const auto* av = PatternValue(alpha_pattern, hf);
    const double r_cfg = rv ? rv->get<double>() : c.r;
    const double alpha = av ? av->get<double>() : c.lora_alpha;
    if (static_cast<int64_t>(r_cfg) != rp)
      throw Error(fmt::format("adapter.init_from: '{}': module {} is stored with rank {} but the config says {}",
                              dir, a->name(), rp, r_cfg),
                  "adapter_config.json and adapter_model.safetensors do not belong together");
    const double scale = rslora ? alpha / std::sqrt(r_cfg) : alpha / r_cfg;
    const double base = a->options().alpha / r_run;
    a->A.narrow(0, 0, rp).copy_(pa);
    a->B.narrow(1, 0, rp).copy_(pb * (scale / base));
    ++loaded;
  }
  return loaded;
}

}  // namespace more
