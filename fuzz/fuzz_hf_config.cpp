// libFuzzer target: a Hugging Face config.json through the public reader (LoadLlamaConfig).
// An accepted config is valid by its own rules (Validate does not throw).
#include <cstdint>

#include "fuzz_util.h"
#include "more/core/error.h"
#include "more/model/hf_config.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  more_fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = more_fuzz::ToFile(data, size, ".json");
  more::LlamaConfig c;
  try {
    c = more::LoadLlamaConfig(path);
  } catch (const more::Error&) {
    return 0;
  }
  c.Validate("fuzz");  // an accepted config is valid: a more::Error here escapes as a crash
  return 0;
}
