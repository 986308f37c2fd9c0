// What this CPU can do natively for bf16, read from CPUID and the OS's XCR0 (torch-free).
//
// model.dtype = "auto" on the CPU picks a bf16 base only where bf16 matmuls have native
// instructions that oneDNN uses:
//   AVX512_BF16  CPUID.(EAX=7,ECX=1):EAX[5]  (vdpbf16ps; with AVX512F, CPUID.(7,0):EBX[16])
//   AMX_BF16     CPUID.(EAX=7,ECX=0):EDX[22] (tile dot products)
// and only where the OS saves the state those instructions use (XGETBV(0) = XCR0, needs
// OSXSAVE, CPUID.1:ECX[27]):
//   AVX-512: XCR0 bits 1, 2 (SSE, AVX) and 5, 6, 7 (opmask, ZMM_Hi256, Hi16_ZMM)
//   AMX:     XCR0 bits 17, 18 (XTILECFG, XTILEDATA). On Linux a process must also request
//            XTILEDATA (arch_prctl(ARCH_REQ_XCOMP_PERM)); oneDNN does that itself, and where it
//            cannot it falls back to AVX512-BF16, so XCR0 is what is checked here.
// Not x86-64: no native bf16 is reported (false everywhere).
//
// The override MORE_CPU_BF16=1 / =0 (environment) forces the answer of CpuAutoBf16 either way:
// for users who know better and for tests that need one answer on any machine.
#pragma once
#include <string>

namespace more {

struct CpuFeatures {
  bool x86 = false;          // x86-64 build and CPUID available
  bool avx512f = false;      // CPUID.(7,0):EBX[16]
  bool avx512_bf16 = false;  // CPUID.(7,1):EAX[5]
  bool amx_bf16 = false;     // CPUID.(7,0):EDX[22]
  bool os_avx512 = false;    // XCR0 bits 1, 2, 5, 6, 7 all set
  bool os_amx = false;       // XCR0 bits 17, 18 set

  bool Avx512Bf16Usable() const { return avx512f && avx512_bf16 && os_avx512; }
  bool AmxBf16Usable() const { return amx_bf16 && os_amx; }
  bool NativeBf16() const { return Avx512Bf16Usable() || AmxBf16Usable(); }
};

// The hardware and OS answer, read once per call (cheap: a few CPUID instructions).
CpuFeatures DetectCpuFeatures();

// The decision of model.dtype = "auto" for the CPU, and why (logged at start-up).
struct CpuBf16Choice {
  bool bf16 = false;
  std::string reason;  // e.g. "bf16: CPU has AVX512-BF16", "fp32: no native bf16 on this CPU"
};
// bf16 iff (MORE_CPU_BF16 unset and the CPU has native bf16 and have_onednn) or MORE_CPU_BF16=1.
// have_onednn: this LibTorch has oneDNN (at::hasMKLDNN()), the library that runs bf16 matmuls
// with those instructions; torch-free callers (more_plan) pass true. A value of MORE_CPU_BF16
// other than 0 or 1 is an error.
CpuBf16Choice CpuAutoBf16(bool have_onednn);
CpuBf16Choice CpuAutoBf16(bool have_onednn, const CpuFeatures& cpu, const char* env_override);

}  // namespace more
