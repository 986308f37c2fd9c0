// Native bf16 detection (core/cpu_features.h): CPUID + XCR0 agree with the kernel's view in
// /proc/cpuinfo, and model.dtype=auto's CPU decision follows the features, oneDNN and the
// MORE_CPU_BF16 override.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "more/core/cpu_features.h"
#include "more/core/error.h"

using namespace more;

namespace {

// The "flags" of the first processor in /proc/cpuinfo (Linux clears a flag when the CPU lacks it
// or the kernel does not enable its state); empty when there is no such file or line.
std::set<std::string> CpuinfoFlags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

TEST(CpuFeatures, DetectionAgreesWithProcCpuinfo) {
  const auto f = DetectCpuFeatures();
  const auto flags = CpuinfoFlags();
  std::printf("CPUID: x86 %d avx512f %d avx512_bf16 %d amx_bf16 %d; XCR0: avx512 state %d amx state %d -> native bf16 %d\n",
              f.x86, f.avx512f, f.avx512_bf16, f.amx_bf16, f.os_avx512, f.os_amx, f.NativeBf16());
#if defined(__x86_64__) || defined(__i386__)
  EXPECT_TRUE(f.x86);
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo to compare with";
  std::printf("/proc/cpuinfo: avx512f %d avx512_bf16 %d amx_bf16 %d amx_tile %d\n", int(flags.count("avx512f")),
              int(flags.count("avx512_bf16")), int(flags.count("amx_bf16")), int(flags.count("amx_tile")));
  // usable = the CPU has it and the OS saves its state: what the kernel reports as a flag
  EXPECT_EQ(f.Avx512Bf16Usable(), flags.count("avx512_bf16") == 1 && flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512f && f.os_avx512, flags.count("avx512f") == 1);
  EXPECT_EQ(f.AmxBf16Usable(), flags.count("amx_bf16") == 1);
  EXPECT_EQ(f.NativeBf16(), flags.count("avx512_bf16") == 1 || flags.count("amx_bf16") == 1);
#else
  EXPECT_FALSE(f.x86);
  EXPECT_FALSE(f.NativeBf16());
#endif
}

TEST(CpuFeatures, AutoBf16FollowsFeaturesOneDnnAndTheOverride) {
  CpuFeatures none;
  none.x86 = true;
  CpuFeatures avx512 = none;
  avx512.avx512f = avx512.avx512_bf16 = avx512.os_avx512 = true;
  CpuFeatures amx = none;
  amx.amx_bf16 = amx.os_amx = true;
  CpuFeatures amx_os_off = amx;  // the CPU has AMX but the OS does not enable its tile state
  amx_os_off.os_amx = false;
  CpuFeatures avx512_os_off = avx512;
  avx512_os_off.os_avx512 = false;

  EXPECT_TRUE(CpuAutoBf16(true, avx512, nullptr).bf16);
  EXPECT_EQ(CpuAutoBf16(true, avx512, nullptr).reason, "bf16: CPU has AVX512-BF16");
  EXPECT_TRUE(CpuAutoBf16(true, amx, nullptr).bf16);
  EXPECT_EQ(CpuAutoBf16(true, amx, nullptr).reason, "bf16: CPU has AMX-BF16");
  EXPECT_FALSE(CpuAutoBf16(true, none, nullptr).bf16);
  EXPECT_EQ(CpuAutoBf16(true, none, nullptr).reason.rfind("fp32: no native bf16", 0), 0u);
  EXPECT_FALSE(CpuAutoBf16(true, amx_os_off, nullptr).bf16);
  EXPECT_FALSE(CpuAutoBf16(true, avx512_os_off, nullptr).bf16);
  EXPECT_FALSE(CpuAutoBf16(true, CpuFeatures{}, nullptr).bf16);  // not x86
  EXPECT_FALSE(CpuAutoBf16(false, avx512, nullptr).bf16) << "no oneDNN: no bf16 matmul kernels to use them";
  EXPECT_NE(CpuAutoBf16(false, avx512, nullptr).reason.find("no oneDNN"), std::string::npos);
  EXPECT_TRUE(CpuAutoBf16(true, avx512, "").bf16) << "an empty override means: detect";
  // the override forces the answer either way
  EXPECT_TRUE(CpuAutoBf16(false, none, "1").bf16);
  EXPECT_EQ(CpuAutoBf16(false, none, "1").reason, "bf16: MORE_CPU_BF16=1");
  EXPECT_FALSE(CpuAutoBf16(true, avx512, "0").bf16);
  EXPECT_EQ(CpuAutoBf16(true, avx512, "0").reason, "fp32: MORE_CPU_BF16=0");
  EXPECT_THROW(CpuAutoBf16(true, avx512, "true"), Error);
  EXPECT_THROW(CpuAutoBf16(true, avx512, "2"), Error);
}

}  // namespace
