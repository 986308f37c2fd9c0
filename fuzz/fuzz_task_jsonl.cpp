// libFuzzer target: task files (ReadTaskStream, JSONL or TSV by the first byte's low bit) and the
// label rules (LabelsOf) for a classification and a regression task.
#include <cstdint>
#include <sstream>

#include "fuzz_util.h"
#include "more/core/error.h"
#include "more/data/manifest.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  more_fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool tsv = data[0] & 1;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  std::vector<more::TextExample> rows;
  try {
    rows = more::ReadTaskStream(in, tsv, "fuzz");
  } catch (const more::Error&) {
    return 0;
  }
  more::TaskInfo cls;
  cls.name = "cls";
  cls.metric = "accuracy";
  cls.candidates = {"negative", "positive"};
  more::TaskInfo reg;
  reg.name = "reg";
  reg.metric = "pearson";
  for (const auto& ex : rows) {
    if (ex.line < 1) __builtin_trap();
    for (const auto* task : {&cls, &reg}) {
      try {
        const auto l = more::LabelsOf(*task, ex, "fuzz");
        if (task == &cls && (l.index < 0 || l.index >= 2)) __builtin_trap();
        if (task == &reg && !(l.value == l.value)) __builtin_trap();  // NaN accepted
      } catch (const more::Error&) {
      }
    }
  }
  return 0;
}
