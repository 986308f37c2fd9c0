// libFuzzer target: the TOML run configuration (LoadConfig + Config::Validate). An accepted
// config must survive the round trip the checkpoint relies on: ConfigToToml, read back, gives
// the same TOML.
#include <cstdint>
#include <fstream>

#include "fuzz_util.h"
#include "more/config/config.h"
#include "more/core/error.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  more_fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = more_fuzz::ToFile(data, size, ".toml");
  more::Config c;
  try {
    c = more::LoadConfig(path, {});
    c.Validate();
  } catch (const more::Error&) {
    return 0;
  }
  const std::string once = more::ConfigToToml(c);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << once;
  }
  const std::string twice = more::ConfigToToml(more::LoadConfig(path, {}));  // must not throw
  if (once != twice) __builtin_trap();
  return 0;
}
