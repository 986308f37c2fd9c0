#include "more/core/proc.h"

#include <dlfcn.h>
#include <sched.h>

#include <fstream>
#include <string>

namespace more {
namespace {

double StatusKiB(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1));  // "VmRSS:   1234 kB"
  return 0.0;
}

}  // namespace

double ResidentMiB() { return StatusKiB("VmRSS") / 1024.0; }
double PeakResidentMiB() { return StatusKiB("VmHWM") / 1024.0; }

bool SetBlasThreads(int n) {
  using Fn = void (*)(int);
  auto fn = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!fn) return false;
  fn(n);
  return true;
}

int AffinityCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 0;
  return CPU_COUNT(&set);
}

}  // namespace more
