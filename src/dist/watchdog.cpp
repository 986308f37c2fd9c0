#include "more/dist/watchdog.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "more/core/error.h"

namespace more {
namespace {

constexpr int kNoticeTag = 32001;  // on the watchdog's own communicator
constexpr int kNoticeMax = 512;    // bytes of a notice

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void Say(int rank, const std::string& text) {  // every rank prints (spdlog prints on rank 0 only)
  std::fprintf(stderr, "[rank %d] watchdog: %s\n", rank, text.c_str());
  std::fflush(stderr);
}

}  // namespace

Watchdog::Watchdog(MPI_Comm world, double timeout_s) : timeout_s_(timeout_s) {
  MPI_Comm_rank(world, &world_rank_);
  MPI_Comm_size(world, &world_size_);
  MPI_Comm_dup(world, &comm_);
}

Watchdog::~Watchdog() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::string Watchdog::Describe(const WaitInfo& info) {
  const std::string group = info.group ? *info.group : "?";
  const std::string members = info.members ? fmt::format("{}", fmt::join(*info.members, ", ")) : "?";
  if (info.peer >= 0) {
    const int peer_world =
        info.members && info.peer < static_cast<int>(info.members->size()) ? (*info.members)[info.peer] : -1;
    return fmt::format("{} with world rank {} (rank {} of the {} group, world ranks {})", info.op, peer_world,
                       info.peer, group, members);
  }
  return fmt::format("{} in the {} group (world ranks {})", info.op, group, members);
}

void Watchdog::Wait(MPI_Request* req, MPI_Status* status, const WaitInfo& info) const {
  int done = 0;
  MPI_Test(req, &done, status);
  if (done) return;
  if (!enabled()) {
    MPI_Wait(req, status);
    return;
  }
  const auto t0 = Clock::now();
  for (uint64_t spins = 1;; ++spins) {
    MPI_Test(req, &done, status);
    if (done) return;
    if (spins > 64) sched_yield();  // other ranks may share this core (oversubscribed runs)
    if ((spins & 255) == 0) {
      const double waited = Since(t0);
      if (waited > timeout_s_) Expire(info, waited);
    }
  }
}

void Watchdog::Expire(const WaitInfo& info, double waited_s) const {
  const std::string what = Describe(info);
  Say(world_rank_, fmt::format("{} has not completed after {:.1f} s (parallel.timeout_s = {}); asking the other "
                               "ranks what they wait for",
                               what, waited_s, timeout_s_));
  // 1. tell every other rank what this one waits for (small: the sends complete locally)
  std::string notice = fmt::format("waits in {}", what).substr(0, kNoticeMax - 1);
  notice.resize(kNoticeMax, '\0');
  std::vector<MPI_Request> sends;
  for (int r = 0; r < world_size_; ++r) {
    if (r == world_rank_) continue;
    sends.emplace_back();
    MPI_Isend(notice.data(), kNoticeMax, MPI_CHAR, r, kNoticeTag, comm_, &sends.back());
  }
  // 2. collect the others' notices for a grace period
  const double grace = std::clamp(timeout_s_ / 2, 1.0, 10.0);
  std::map<int, std::string> heard;
  const auto t0 = Clock::now();
  while (Since(t0) < grace && static_cast<int>(heard.size()) < world_size_ - 1) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kNoticeTag, comm_, &flag, &st);
    if (!flag) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    std::string text(kNoticeMax, '\0');
    MPI_Recv(text.data(), kNoticeMax, MPI_CHAR, st.MPI_SOURCE, kNoticeTag, comm_, MPI_STATUS_IGNORE);
    heard[st.MPI_SOURCE] = text.c_str();
  }
  std::vector<int> silent;
  std::vector<std::string> waiting;
  for (int r = 0; r < world_size_; ++r) {
    if (r == world_rank_) continue;
    if (heard.count(r)) waiting.push_back(fmt::format("world rank {} {}", r, heard[r]));
    else silent.push_back(r);
  }
  const std::string silent_text =
      silent.empty() ? "every other rank answered, so none is stopped: a mismatch of operations between ranks "
                       "(a bug) or a network that dropped a message"
                     : fmt::format("no word from world rank(s) {}: stalled or dead", fmt::join(silent, ", "));
  Say(world_rank_, fmt::format("{}{}{}", silent_text, waiting.empty() ? "" : "; waiting too: ",
                               fmt::format("{}", fmt::join(waiting, "; "))));
  // 3. let the ranks that timed out a little later print their report, then end the job
  std::this_thread::sleep_for(std::chrono::duration<double>(grace));
  throw Error(fmt::format("watchdog: {} did not complete within parallel.timeout_s = {} s; {}", what, timeout_s_,
                          silent_text),
              "the job ends so the scheduler can restart it from the last checkpoint; if the wait was legitimate "
              "(a slow checkpoint or evaluation), raise parallel.timeout_s");
}

}  // namespace more
