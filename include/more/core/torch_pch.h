// Precompiled header for every translation unit of the torch library (CMake
// target_precompile_headers). Only the torch library and its tools use it; torch-free code
// (config, data, core) never includes torch.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <fmt/format.h>
#include <string>
#include <vector>
#include <memory>
#include <map>
