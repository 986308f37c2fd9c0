#include "more/train/stop_signal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <spdlog/spdlog.h>

#include "more/dist/device.h"

namespace more {
namespace {

// A signal handler can only touch a lock-free atomic, so this one flag is process-wide; the
// training loop polls it once per step.
std::atomic<int> g_stop_signal{0};
void OnStopSignal(int sig) { g_stop_signal.store(sig); }

std::string& ReadyFile() {  // the marker this process created, removed at normal exit
  static std::string path;
  return path;
}
void RemoveReadyFile() {
  if (!ReadyFile().empty()) ::unlink(ReadyFile().c_str());
}

}  // namespace

void InstallStopSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

int StopSignalReceived() { return g_stop_signal.load(); }

void AnnounceStopSignalsReady(MPI_Comm world) {
  const char* env = std::getenv("MORE_SIGNAL_READY_FILE");
  if (env == nullptr || *env == '\0') return;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Barrier(world);  // every rank has installed its handlers
  if (NodeLocalRank(world).rank != 0) return;
  const int fd = ::open(env, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    spdlog::warn("could not create MORE_SIGNAL_READY_FILE '{}' ({}): a launcher waiting for it will not pass "
                 "on a signal that came during start-up",
                 env, std::strerror(errno));
    return;
  }
  ::close(fd);
  ReadyFile() = env;
  std::atexit(RemoveReadyFile);
}

}  // namespace more
