// Fault injection for the reliability tests (never active unless MORE_FAIL_AT is set).
//
//   MORE_FAIL_AT="<world rank>:<step>[:<kind>]"
//
// kinds (the point where the fault fires; <step> is the trainer step being run or saved):
//   throw        (default) the rank throws an Error at the start of the step
//   kill         the rank sends itself SIGKILL at the start of the step (a node dying)
//   nan          the rank's adapter gradients become NaN in that step (a non-finite loss)
//   ckpt_write   SIGKILL while the rank writes its stage files of the checkpoint of that step
//                (after the adapters file, before the optimizer file)
//   ckpt_commit  SIGKILL on world rank 0 after the checkpoint directory of that step was renamed
//                into place but before the "latest" pointer names it
#pragma once
#include <cstdint>
#include <string>

namespace more {

// The world rank the injection compares against (set once the process grid exists).
void SetFaultRank(int world_rank);
// True when MORE_FAIL_AT names this rank, `step` and `kind`.
bool FaultAt(const std::string& kind, int64_t step);
// If FaultAt(kind, step): logs and sends SIGKILL to this process (does not return then).
void MaybeKillAt(const std::string& kind, int64_t step);

}  // namespace more
