// PEFT adapter_config.json: parsing and the checks listed in more/ckpt/peft_config.h.
#include "more/ckpt/peft_config.h"

#include <cmath>

#include <fmt/format.h>

#include "more/core/error.h"

namespace more {

PeftLoraConfig ParsePeftLoraConfig(const std::string& text, const std::string& path) {
  nlohmann::json c;
  try {
    c = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("adapter.init_from: '{}' is not valid JSON: {}", path, e.what()));
  }
  auto refuse = [&](const std::string& what) {
    throw Error(fmt::format("adapter.init_from: '{}': {}", path, what),
                "only plain LoRA adapters (peft_type LORA) can be imported");
  };
  if (!c.is_object()) refuse("the file is not a JSON object");
  // a field of the wrong type is named, not reported as a JSON library exception
  auto typed = [&](const char* key, bool ok, const char* want) {
    if (c.contains(key) && !c[key].is_null() && !ok) refuse(fmt::format("\"{}\" must be {}, not {}", key, want, c[key].dump()));
  };
  auto is = [&](const char* key, nlohmann::json::value_t t) { return c.contains(key) && c[key].type() == t; };
  typed("peft_type", is("peft_type", nlohmann::json::value_t::string), "a string");
  for (const char* key : {"use_dora", "fan_in_fan_out", "use_rslora", "lora_bias"})
    typed(key, is(key, nlohmann::json::value_t::boolean), "true or false");
  typed("bias", is("bias", nlohmann::json::value_t::string), "a string");
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    typed(key, is(key, nlohmann::json::value_t::object), "an object {module pattern: value}");

  if (!c.contains("peft_type") || c["peft_type"] != "LORA")
    refuse("peft_type is " + (c.contains("peft_type") && c["peft_type"].is_string() ? c["peft_type"].get<std::string>()
                                                                                      : std::string("missing")) +
           ", not LORA");
  auto flag = [&](const char* key) { return c.contains(key) && c[key].is_boolean() && c[key].get<bool>(); };
  if (flag("use_dora")) refuse("use_dora is true (DoRA)");
  if (flag("fan_in_fan_out")) refuse("fan_in_fan_out is true");
  if (flag("lora_bias")) refuse("lora_bias is true (a bias on lora_B)");
  if (c.contains("bias") && c["bias"].is_string() && c["bias"] != "none") refuse("bias is '" + c["bias"].get<std::string>() + "'");
  if (c.contains("modules_to_save") && !c["modules_to_save"].is_null() &&
      !(c["modules_to_save"].is_array() && c["modules_to_save"].empty()))
    refuse(fmt::format("modules_to_save is {}: whole modules trained beside the LoRA, which the import would drop",
                       c["modules_to_save"].dump()));
  auto positive_int = [](const nlohmann::json& v) {
    return v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() >= 1 &&
           v.get<double>() == std::floor(v.get<double>()) && v.get<double>() <= 1e9;
  };
  auto finite = [](const nlohmann::json& v) { return v.is_number() && std::isfinite(v.get<double>()); };
  if (!c.contains("r") || !c.contains("lora_alpha") || !c["r"].is_number() || !c["lora_alpha"].is_number())
    refuse("r or lora_alpha is missing");
  if (!positive_int(c["r"])) refuse(fmt::format("r is {}, not a positive integer", c["r"].dump()));
  if (!finite(c["lora_alpha"])) refuse(fmt::format("lora_alpha is {}, not a finite number", c["lora_alpha"].dump()));

  PeftLoraConfig out;
  out.r = c["r"].get<double>();
  out.lora_alpha = c["lora_alpha"].get<double>();
  out.use_rslora = flag("use_rslora");
  if (c.contains("rank_pattern") && c["rank_pattern"].is_object()) out.rank_pattern = c["rank_pattern"];
  if (c.contains("alpha_pattern") && c["alpha_pattern"].is_object()) out.alpha_pattern = c["alpha_pattern"];
  for (auto it = out.rank_pattern.begin(); it != out.rank_pattern.end(); ++it)
    if (!positive_int(it.value()))
      refuse(fmt::format("rank_pattern['{}'] is {}, not a positive integer", it.key(), it.value().dump()));
  for (auto it = out.alpha_pattern.begin(); it != out.alpha_pattern.end(); ++it)
    if (!finite(it.value()))
      refuse(fmt::format("alpha_pattern['{}'] is {}, not a finite number", it.key(), it.value().dump()));
  return out;
}

}  // namespace more
