// more_logits: the project's own forward, for checks against other implementations
// (tests/hf/hf_interop.py compares it with transformers and PEFT).
//   more_logits --model HF_DIR --ids "1,5,9;1,7,2" --out OUT.bin [--export DIR --task NAME]
// Writes float32 little-endian logits [B, L, V] to OUT.bin and {"shape": [B, L, V]} to
// OUT.bin.json (the format of tests/golden/llama_ref.py). With --export, the adapters of that
// export directory are applied for the task (the unmerged adapter path). Weights are computed
// in float32 whatever their stored dtype. A single-process tool (no MPI), except with --tp /
// --pp: then it runs under mpirun on tp * pp ranks, each loading its own tensor-parallel slice
// of its pipeline stage's layers (the trainer's LlamaStage), hidden states passed from stage to
// stage, and the last stage's first TP rank writes the logits gathered over TP.
#include <fstream>
#include <iostream>
#include <sstream>

#include "more/ckpt/export.h"
#include "more/core/error.h"
#include "more/core/main_guard.h"
#include "more/core/safetensors.h"
#include "more/model/llama.h"
#include "more/parallel/tp_ops.h"

namespace {

constexpr const char* kUsage = R"(usage: more_logits --model HF_DIR --ids "1,5,9;1,7,2" --out OUT.bin [--export DIR --task NAME]

  --model HF_DIR   base model (config.json + safetensors), computed in float32
  --ids LIST       token ids: ';' separates sequences (all the same length), ',' tokens
  --out OUT.bin    float32 [B, L, V] logits; OUT.bin.json holds {"shape": [B, L, V]}
  --export DIR     apply the adapters of a more_export directory ...
  --task NAME      ... for this task (single process only)
  --tp N --pp M    the forward split over N x M ranks (run under mpirun -np N*M)
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

void WriteLogits(const torch::Tensor& logits, const std::string& out) {  // [B, L, V] float32
  std::ofstream f(out, std::ios::binary);
  f.write(static_cast<const char*>(logits.data_ptr()), static_cast<std::streamsize>(logits.nbytes()));
  if (!f) throw more::Error("cannot write '" + out + "'");
  std::ofstream(out + ".json") << "{\"shape\": [" << logits.size(0) << ", " << logits.size(1) << ", "
                               << logits.size(2) << "]}\n";
}

// --tp / --pp: every rank holds its stage's slice; hidden [B, L, D] goes from stage to stage
// over the pipeline group, the last stage gathers the vocabulary-parallel logits over TP.
int DistributedLogits(const std::string& model_dir, const torch::Tensor& ids, const std::string& out, int tp, int pp) {
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world != tp * pp)
    throw more::Error(fmt::format("--tp {} --pp {} needs {} ranks, the job has {}", tp, pp, tp * pp, world),
                      "run under mpirun -np tp*pp");
  const auto cfg = more::LoadLlamaConfig(model_dir);
  more::ProcessGrid grid(MPI_COMM_WORLD, more::Layout{tp, pp, 1});
  more::SafetensorsCollection st(model_dir);
  more::LlamaStage stage(cfg, st, grid, nullptr, torch::kFloat32, torch::kCPU);
  more::ForwardContext ctx;
  torch::Tensor h;
  if (grid.first_stage()) {
    h = stage.Embed(ids);                                                   // [B, L, D]
  } else {
    h = torch::empty({ids.size(0), ids.size(1), cfg.hidden_size}, torch::kFloat32);
    grid.pp().Recv(h, grid.pp_rank() - 1, 0);
  }
  h = stage.Layers(h, ctx);
  if (!grid.last_stage()) {
    grid.pp().Send(h.contiguous(), grid.pp_rank() + 1, 0);
  } else {
    auto logits = more::GatherFromTp(stage.LocalLogits(h), grid.tp()).contiguous();  // [B, L, V]
    if (grid.tp_rank() == 0) WriteLogits(logits, out);
  }
  grid.world().Barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool distributed = false;  // --tp / --pp: an MPI job
  for (int i = 1; i < argc; ++i) distributed |= std::string(argv[i]) == "--tp" || std::string(argv[i]) == "--pp";
  auto body = [](int argc, char** argv) {
    std::string model_dir, ids, out, export_dir, task;
    int tp = 1, pp = 1;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw more::Error(a + " needs a value", "see more_logits --help");
        return argv[++i];
      };
      auto positive = [&](const std::string& v) {
        int n = 0;
        try {
          n = std::stoi(v);
        } catch (const std::exception&) {
        }
        if (n < 1) throw more::Error(a + ": '" + v + "' is not a positive integer", "see more_logits --help");
        return n;
      };
      if (a == "--model") model_dir = next();
      else if (a == "--ids") ids = next();
      else if (a == "--out") out = next();
      else if (a == "--export") export_dir = next();
      else if (a == "--task") task = next();
      else if (a == "--tp") tp = positive(next());
      else if (a == "--pp") pp = positive(next());
      else if (a == "--help" || a == "-h") {
        std::cout << kUsage;
        return 0;
      } else throw more::Error("unexpected argument '" + a + "'", "see more_logits --help");
    }
    if (model_dir.empty() || ids.empty() || out.empty())
      throw more::Error("--model, --ids and --out are required", "see more_logits --help");
    if (export_dir.empty() != task.empty()) throw more::Error("--export and --task go together");
    torch::NoGradGuard ng;
    if (tp * pp > 1 && !export_dir.empty())
      throw more::Error("--export is not supported with --tp / --pp", "apply adapters in a single process");
    if (tp * pp > 1) return DistributedLogits(model_dir, ParseIds(ids), out, tp, pp);
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
    WriteLogits(stage.FullLogits(ParseIds(ids), ctx).to(torch::kFloat32).contiguous(), out);  // [B, L, V]
    return 0;
  };
  return distributed ? more::RunMain(argc, argv, body) : more::RunTool(argc, argv, body);
}
