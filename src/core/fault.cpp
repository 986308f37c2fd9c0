#include "more/core/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "more/core/error.h"

namespace more {
namespace {

int g_rank = 0;

struct Spec {
  bool active = false;
  int rank = -1;
  long long step = -1;
  std::string kind = "throw";
};

Spec Parse() {
  Spec s;
  const char* env = std::getenv("MORE_FAIL_AT");
  if (!env || !*env) return s;
  char kind[32] = {0};
  const int n = std::sscanf(env, "%d:%lld:%31s", &s.rank, &s.step, kind);
  if (n < 2)
    throw Error(fmt::format("MORE_FAIL_AT='{}' is not of the form <rank>:<step>[:<kind>]", env));
  if (n == 3) s.kind = kind;
  if (s.kind != "throw" && s.kind != "kill" && s.kind != "nan" && s.kind != "ckpt_write" &&
      s.kind != "ckpt_commit")
    throw Error(fmt::format("MORE_FAIL_AT='{}': unknown kind '{}'", env, s.kind),
                "use throw, kill, nan, ckpt_write or ckpt_commit");
  s.active = true;
  return s;
}

const Spec& Get() {
  static const Spec spec = Parse();
  return spec;
}

}  // namespace

void SetFaultRank(int world_rank) {
  g_rank = world_rank;
  (void)Get();  // a malformed variable is reported at start-up, not mid-run
}

bool FaultAt(const std::string& kind, int64_t step) {
  const Spec& s = Get();
  return s.active && s.rank == g_rank && s.step == step && s.kind == kind;
}

void MaybeKillAt(const std::string& kind, int64_t step) {
  if (!FaultAt(kind, step)) return;
  spdlog::warn("MORE_FAIL_AT: rank {} kills itself ({}) at step {}", g_rank, kind, step);
  spdlog::default_logger()->flush();
  std::fflush(nullptr);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace more
