// Logging: spdlog. Rank 0 logs at info by default, other ranks at warn (set MORE_LOG_ALL=1 to
// see every rank). The pattern carries the rank so interleaved output stays readable.
#pragma once
#include <spdlog/spdlog.h>

namespace more {

// Installs the default logger for this rank. Safe to call more than once.
void InitLogging(int rank, int world_size, const char* level = nullptr);

}  // namespace more
