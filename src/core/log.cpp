#include "more/core/log.h"

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace more {

void InitLogging(int rank, int world_size, const char* level) {
  auto logger = spdlog::stderr_color_mt("more" + std::to_string(rank));
  logger->set_pattern(world_size > 1 ? "[%H:%M:%S.%e] [r" + std::to_string(rank) + "] [%^%l%$] %v"
                                     : "[%H:%M:%S.%e] [%^%l%$] %v");
  const char* all = std::getenv("MORE_LOG_ALL");
  const bool verbose_rank = rank == 0 || (all && std::string(all) == "1");
  std::string lvl = level ? level : (std::getenv("MORE_LOG_LEVEL") ? std::getenv("MORE_LOG_LEVEL") : "info");
  auto parsed = spdlog::level::from_str(lvl);
  logger->set_level(verbose_rank ? parsed : std::max(parsed, spdlog::level::warn));
  spdlog::set_default_logger(logger);
}

}  // namespace more
