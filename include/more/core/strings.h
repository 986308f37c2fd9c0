// Small string helpers shared by the config, the trainer and the tools (torch-free).
#pragma once
#include <sstream>
#include <string>
#include <vector>

namespace more {

// The items of a separated list, empty items skipped: "a,,b," -> {"a", "b"}.
inline std::vector<std::string> SplitList(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace more
