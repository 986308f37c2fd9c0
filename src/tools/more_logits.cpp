// more_logits: the project's own forward, for checks against other implementations
// (tests/hf/hf_interop.py compares it with transformers and PEFT).
//   more_logits --model HF_DIR --ids "1,5,9;1,7,2" --out OUT.bin [--export DIR --task NAME]
// Writes float32 little-endian logits [B, L, V] to OUT.bin and {"shape": [B, L, V]} to
// OUT.bin.json (the format of tests/golden/llama_ref.py). With --export, the adapters of that
// export directory are applied for the task (the unmerged adapter path). Weights are computed
// in float32 whatever their stored dtype. A single-process tool: no MPI.
#include <fstream>
#include <iostream>
#include <sstream>

#include "more/ckpt/export.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/core/safetensors.h"
#include "more/model/llama.h"

namespace {

constexpr const char* kUsage = R"(usage: more_logits --model HF_DIR --ids "1,5,9;1,7,2" --out OUT.bin [--export DIR --task NAME]

  --model HF_DIR   base model (config.json + safetensors), computed in float32
  --ids LIST       token ids: ';' separates sequences (all the same length), ',' tokens
  --out OUT.bin    float32 [B, L, V] logits; OUT.bin.json holds {"shape": [B, L, V]}
  --export DIR     apply the adapters of a more_export directory ...
  --task NAME      ... for this task
  --help           this text
)";

torch::Tensor ParseIds(const std::string& spec) {
  std::vector<std::vector<int64_t>> rows;
  std::stringstream ss(spec);
  std::string row;
  while (std::getline(ss, row, ';')) {
    std::vector<int64_t> r;
    std::stringstream rs(row);
    std::string tok;
    while (std::getline(rs, tok, ',')) r.push_back(std::stoll(tok));
    if (!r.empty()) rows.push_back(r);
  }
  if (rows.empty()) throw more::Error("--ids: no token ids");
  auto out = torch::empty({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())}, torch::kInt64);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != rows[0].size()) throw more::Error("--ids: sequences differ in length");
    for (size_t j = 0; j < rows[i].size(); ++j) out[i][j] = rows[i][j];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return more::RunTool(argc, argv, [](int argc, char** argv) {
    std::string model_dir, ids, out, export_dir, task;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw more::Error(a + " needs a value", "see more_logits --help");
        return argv[++i];
      };
      if (a == "--model") model_dir = next();
      else if (a == "--ids") ids = next();
      else if (a == "--out") out = next();
      else if (a == "--export") export_dir = next();
      else if (a == "--task") task = next();
      else if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else throw more::Error("unexpected argument '" + a + "'", "see more_logits --help");
    }
    if (model_dir.empty() || ids.empty() || out.empty())
      throw more::Error("--model, --ids and --out are required", "see more_logits --help");
    if (export_dir.empty() != task.empty()) throw more::Error("--export and --task go together");
    torch::NoGradGuard ng;
    const auto cfg = more::LoadLlamaConfig(model_dir);
    auto grid = more::ProcessGrid::Single();
    more::LoadedExport ex;
    more::ForwardContext ctx;
    if (!export_dir.empty()) {
      ex = more::LoadExport(export_dir, cfg);
      ctx.task = more::TaskIndex(ex, task);
    }
    more::SafetensorsCollection st(model_dir);
    more::LlamaStage stage(cfg, st, *grid, ex.adapters.get(), torch::kFloat32, torch::kCPU);
    auto logits = stage.FullLogits(ParseIds(ids), ctx).to(torch::kFloat32).contiguous();  // [B, L, V]
    std::ofstream f(out, std::ios::binary);
    f.write(static_cast<const char*>(logits.data_ptr()), static_cast<std::streamsize>(logits.nbytes()));
    if (!f) throw more::Error("cannot write '" + out + "'");
    std::ofstream(out + ".json") << "{\"shape\": [" << logits.size(0) << ", " << logits.size(1) << ", "
                                 << logits.size(2) << "]}\n";
    return 0;
  });
}
