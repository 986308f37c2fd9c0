// Shared helpers of the torch unit tests: fixture paths and a small run config.
#pragma once
#include <filesystem>
#include <string>

#include "common/test_util.h"
#include "more/config/config.h"

namespace more::testing {

inline std::string TestData(const std::string& rel) { return std::string(MORE_TESTDATA) + "/" + rel; }

// A fresh scratch directory (kept after the test for inspection).
inline std::string ScratchDir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("more_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// The tiny fixture model on the fixture shards, small enough for a step in milliseconds.
inline Config TinyConfig(const std::string& out_dir) {
  Config c;
  c.model.path = TestData("tiny");
  c.model.dtype = "float32";
  c.data.train = TestData("shards");
  c.adapter.rank = 4;
  c.adapter.dropout = 0.1;
  c.train.steps = 8;
  c.train.global_batch = 8;
  c.train.micro_batch = 4;
  c.train.lr = 1e-2;
  c.train.warmup = 2;
  c.train.threads = 1;
  c.train.progress = false;
  c.train.out_dir = out_dir;
  c.eval.every = 0;
  c.eval.at_start = false;
  c.eval.max_samples = 8;
  c.ckpt.every = 0;
  return c;
}

}  // namespace more::testing
