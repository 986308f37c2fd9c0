#include "more/core/cpu_features.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "more/core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MORE_X86 1
#endif

namespace more {

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
#ifdef MORE_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  f.x86 = true;
  __cpuid(1, a, b, c, d);
  const bool osxsave = (c >> 27) & 1u;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned max_subleaf = a;
  f.avx512f = (b >> 16) & 1u;
  f.amx_bf16 = (d >> 22) & 1u;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = (a >> 5) & 1u;
  }
  if (osxsave) {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // XCR0 (no -mxsave needed)
    const uint64_t xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
    const uint64_t avx512_state = (1u << 1) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 7);
    const uint64_t amx_state = (1u << 17) | (1u << 18);
    f.os_avx512 = (xcr0 & avx512_state) == avx512_state;
    f.os_amx = (xcr0 & amx_state) == amx_state;
  }
#endif
  return f;
}

CpuBf16Choice CpuAutoBf16(bool have_onednn, const CpuFeatures& cpu, const char* env_override) {
  if (env_override != nullptr && *env_override != '\0') {
    const std::string v = env_override;
    if (v == "1") return {true, "bf16: MORE_CPU_BF16=1"};
    if (v == "0") return {false, "fp32: MORE_CPU_BF16=0"};
    throw Error("MORE_CPU_BF16='" + v + "': must be 0 or 1 (or unset: detect)",
                "unset it to let model.dtype=auto detect native bf16 on this CPU");
  }
  if (!cpu.NativeBf16())
    return {false, cpu.x86 ? "fp32: no native bf16 on this CPU (neither AVX512-BF16 nor AMX-BF16)"
                           : "fp32: no native bf16 (not an x86-64 CPU)"};
  const std::string what = cpu.AmxBf16Usable() ? "AMX-BF16" : "AVX512-BF16";
  if (!have_onednn) return {false, "fp32: CPU has " + what + " but this LibTorch has no oneDNN"};
  return {true, "bf16: CPU has " + what};
}

CpuBf16Choice CpuAutoBf16(bool have_onednn) {
  return CpuAutoBf16(have_onednn, DetectCpuFeatures(), std::getenv("MORE_CPU_BF16"));
}

}  // namespace more
