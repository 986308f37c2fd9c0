// Shared by the libFuzzer targets (fuzz/README.md): a per-process scratch file for readers that
// take a path, and logging off. A target catches more::Error only: any other exception escapes,
// and libFuzzer reports it as a crash (bad input must get a more::Error naming the problem).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include <spdlog/spdlog.h>

namespace more_fuzz {

inline void Quiet() { spdlog::set_level(spdlog::level::off); }

// Writes the input to a scratch file of this process (tmpfs when there is one) and returns its path.
inline const std::string& ToFile(const uint8_t* data, size_t size, const char* ext) {
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") +
                                  "/more_fuzz_" + std::to_string(getpid()) + ext;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size)) __builtin_trap();
  std::fclose(f);
  return path;
}

}  // namespace more_fuzz
