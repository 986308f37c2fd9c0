// Watchdog under mpirun -np 3 (run by watchdog.sh): first every watched operation must still
// compute the right thing; then rank 2 stalls (alive, never answering) while rank 0 waits in a
// world all-reduce and rank 1 in a receive from rank 2. Both must time out, name their
// operation, hear each other's notice, name rank 2 as silent, and end the job non-zero.
#include <unistd.h>

#include <cstdio>

#include <torch/torch.h>

#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/dist/communicator.h"
#include "more/dist/watchdog.h"

int main(int argc, char** argv) {
  return more::RunMain(argc, argv, [](int, char**) {
    more::Watchdog wd(MPI_COMM_WORLD, 2.0);
    more::MpiCommunicator world(MPI_COMM_WORLD, false, &wd, "world");
    const int r = world.rank(), n = world.size();
    MORE_CHECK(n == 3, "watchdog_check needs 3 ranks, got {}", n);
    // 1. the non-blocking forms give the blocking forms' results
    auto sum = torch::full({4}, static_cast<double>(r + 1), torch::kFloat64);
    world.AllReduceSum(sum);
    MORE_CHECK(sum.eq(6.0).all().item<bool>(), "all_reduce sum wrong");
    auto mx = torch::full({2}, static_cast<int64_t>(10 * r), torch::kInt64);
    world.AllReduceMax(mx);
    MORE_CHECK(mx.eq(20).all().item<bool>(), "all_reduce max wrong");
    auto b = torch::full({3}, r == 1 ? 7.0f : 0.0f);
    world.Broadcast(b, 1);
    MORE_CHECK(b.eq(7.0f).all().item<bool>(), "broadcast wrong");
    auto in = torch::full({2}, static_cast<float>(r)), out = torch::empty({6});
    world.AllGather(in, out);
    MORE_CHECK(out.equal(torch::tensor({0.f, 0.f, 1.f, 1.f, 2.f, 2.f})), "all_gather wrong");
    auto msg = torch::arange(5, torch::kInt32) + r;  // ring: send to r+1, receive from r-1
    auto pending = world.ISend(msg, (r + 1) % n, 11);
    auto got = torch::empty({5}, torch::kInt32);
    world.Recv(got, (r + n - 1) % n, 11);
    pending->Wait();
    MORE_CHECK(got.equal(torch::arange(5, torch::kInt32) + (r + n - 1) % n), "send/recv wrong");
    world.Barrier();
    std::printf("[rank %d] watched operations ok\n", r);
    std::fflush(stdout);
    // 2. rank 2 stalls; ranks 0 and 1 wait on it in different operations
    if (r == 2) {
      sleep(60);  // alive but silent; MPI_Abort of the others ends it
      return 0;
    }
    if (r == 0) {
      auto t = torch::ones({1});
      world.AllReduceSum(t);
    } else {
      auto t = torch::empty({1});
      world.Recv(t, 2, 12);
    }
    std::printf("[rank %d] returned from a wait that cannot complete\n", r);
    return 0;
  });
}
