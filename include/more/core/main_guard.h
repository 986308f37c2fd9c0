// Entry-point guard for every MPI binary: initialises MPI (thread level FUNNELED: only the
// main thread calls MPI), installs logging, runs `body`, and turns any exception on any rank
// into: a message naming the rank, then MPI_Abort(MPI_COMM_WORLD, 1) so every other rank ends
// too with a non-zero exit (none is left waiting in a collective). With --help / -h among the
// arguments MPI is not initialised: the body must print its usage before any MPI call.
#pragma once
#include <functional>

#include "more/core/error.h"

namespace more {

// An error every rank throws at once (after a collective that found it): RunMain prints each
// rank's message and waits at a barrier until all have, before MPI_Abort ends the job, so every
// rank's message is out (a plain Error aborts at once: the other ranks may be killed unheard).
class CollectiveError : public Error {
 public:
  using Error::Error;
};

int RunMain(int argc, char** argv, const std::function<int(int argc, char** argv)>& body);

// Entry point of a single-process tool (no MPI): runs `body`; an exception prints
// "error: <what>" to stderr and returns 1.
int RunTool(int argc, char** argv, const std::function<int(int argc, char** argv)>& body);

}  // namespace more
