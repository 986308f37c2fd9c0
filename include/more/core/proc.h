// Process memory figures from /proc (Linux); 0 where unavailable.
#pragma once

namespace more {

double ResidentMiB();      // current resident set size (VmRSS)
double PeakResidentMiB();  // high-water mark of the resident set (VmHWM)

// Thread count of the BLAS library actually loaded, when it is OpenBLAS (either Debian variant:
// the pthread one keeps its own pool and ignores OpenMP settings). Returns false when no
// openblas_set_num_threads is present. torch::set_num_threads alone does not reach it.
bool SetBlasThreads(int n);
// Cores this process may run on (its CPU affinity mask; mpirun binds each rank to one core
// by default).
int AffinityCores();

}  // namespace more
