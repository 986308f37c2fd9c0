#include "more/core/main_guard.h"

#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>

#include <mpi.h>

#include "more/core/log.h"

namespace more {

int RunTool(int argc, char** argv, const std::function<int(int, char**)>& body) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

int RunMain(int argc, char** argv, const std::function<int(int, char**)>& body) {
  // --help: the body prints its usage and returns before any MPI call, so MPI is not started
  // (no launcher banner, no MPI_Abort noise; works without mpirun).
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      InitLogging(0, 1);
      return RunTool(argc, argv, body);
    }
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  InitLogging(rank, size);
  // A file-size limit (ulimit -f) then makes write() fail with EFBIG, which the writers report
  // with the file's name, instead of killing the rank with no message.
  ::signal(SIGXFSZ, SIG_IGN);
  int rc = 0;
  try {
    rc = body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d] error: %s\n", rank, e.what());
    std::fflush(stderr);
    if (dynamic_cast<const CollectiveError*>(&e)) MPI_Barrier(MPI_COMM_WORLD);
    spdlog::shutdown();
    // Ends every rank of the job (a lone failing rank must not leave the others hanging).
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  spdlog::shutdown();
  MPI_Finalize();
  return rc;
}

}  // namespace more
