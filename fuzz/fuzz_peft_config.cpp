// libFuzzer target: a PEFT adapter_config.json (ParsePeftLoraConfig). An accepted config has a
// positive integer rank and finite alpha, so the import's scaling alpha / r is finite.
#include <cmath>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "more/ckpt/peft_config.h"
#include "more/core/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  more_fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  more::PeftLoraConfig c;
  try {
    c = more::ParsePeftLoraConfig(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const more::Error&) {
    return 0;
  }
  if (!(c.r >= 1) || !std::isfinite(c.lora_alpha / c.r) || !std::isfinite(c.lora_alpha / std::sqrt(c.r)))
    __builtin_trap();
  for (const auto& [k, v] : c.rank_pattern.items())
    if (!(v.get<double>() >= 1)) __builtin_trap();
  for (const auto& [k, v] : c.alpha_pattern.items())
    if (!std::isfinite(v.get<double>())) __builtin_trap();
  return 0;
}
