// libFuzzer target: the safetensors header parser (ParseSafetensorsHeader) on a whole file's
// bytes. Beyond "no crash, no sanitizer report, only more::Error": an accepted file obeys the
// format's rules (checked here independently of the parser), and every tensor lies inside it.
#include <cstdint>
#include <vector>

#include "fuzz_util.h"
#include "more/core/error.h"
#include "more/core/safetensors_header.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  more_fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  more::SafetensorsHeader h;
  try {
    h = more::ParseSafetensorsHeader(data, size, "fuzz");
  } catch (const more::Error&) {
    return 0;
  }
  if (h.data_start > size || h.header_bytes == 0 || h.header_bytes > more::kSafetensorsMaxHeaderBytes) __builtin_trap();
  // the tensors' sizes add up to the data section, each is numel x dtype size, each is inside
  uint64_t total = 0;
  for (const auto& [name, t] : h.tensors) {
    if (t.end < t.begin || t.end > size - h.data_start) __builtin_trap();
    if (static_cast<uint64_t>(t.numel()) * more::DTypeSize(t.dtype) != t.end - t.begin) __builtin_trap();
    total += t.end - t.begin;
    volatile uint8_t touch = 0;
    if (t.end > t.begin) touch = data[h.data_start + t.begin] ^ data[h.data_start + t.end - 1];
    (void)touch;
  }
  if (total != size - h.data_start) __builtin_trap();
  return 0;
}
