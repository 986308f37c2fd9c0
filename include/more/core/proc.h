// Process memory figures from /proc (Linux); 0 where unavailable.
#pragma once

namespace more {

double ResidentMiB();      // current resident set size (VmRSS)
double PeakResidentMiB();  // high-water mark of the resident set (VmHWM)

}  // namespace more
