// MetricsLog: the run's metrics.jsonl, one JSON object per line, appended by world rank 0.
//
// Every append is checked. A write that fails (disk full, quota, file-size limit) is cut back
// to the end of the last complete row, so the file stays valid JSONL; the first failure logs a
// warning naming the file, the error and the step, later ones are counted (dropped_rows()) and
// retried, so rows reappear once space is freed. Training goes on: losing metrics must not
// lose a run, but it must not be silent either.
//
// Open(path, start_step) also repairs the file for a run that starts at `start_step` (a resume,
// or a fresh start at 0 in a directory that already has a log): rows of steps the run will log
// again (step > start_step, or every row when start_step is 0) and a torn last line are dropped,
// so a plot of the log has each step once.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace more {

class MetricsLog {
 public:
  MetricsLog() = default;
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Returns the number of rows dropped from an existing file. Throws more::Error when the file
  // cannot be opened or repaired.
  int64_t Open(const std::string& path, int64_t start_step);
  bool is_open() const { return fd_ >= 0; }
  // Appends j.dump() + "\n" (all or nothing). Returns false when the row was lost.
  bool Append(const nlohmann::json& j);
  int64_t dropped_rows() const { return dropped_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;  // bytes of complete rows
  int64_t dropped_ = 0;
};

}  // namespace more
