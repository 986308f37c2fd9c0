#include "more/train/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "more/core/error.h"
#include "more/core/log.h"
#include "more/core/safetensors.h"

namespace more {

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t MetricsLog::Open(const std::string& path, int64_t start_step) {
  path_ = path;
  int64_t dropped = 0;
  if (std::filesystem::exists(path)) {
    const std::string text = ReadFileToString(path);
    std::string kept, line;
    std::istringstream in(text);
    while (std::getline(in, line)) {
      bool keep = false;
      if (in.eof() && !text.empty() && text.back() != '\n') {
        keep = false;  // a torn last line (the writer died mid-row)
      } else {
        try {
          const auto j = nlohmann::json::parse(line);
          const int64_t step = j.value("step", int64_t{-1});
          keep = start_step > 0 && step <= start_step;
        } catch (const nlohmann::json::exception&) {
          keep = false;
        }
      }
      if (keep) kept += line + "\n";
      else ++dropped;
    }
    if (dropped > 0) WriteFileAtomic(path, kept);
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(fmt::format("cannot open metrics log '{}': {}", path, std::strerror(errno)));
  struct stat st {};
  ::fstat(fd_, &st);
  size_ = static_cast<int64_t>(st.st_size);
  return dropped;
}

bool MetricsLog::Append(const nlohmann::json& j) {
  if (fd_ < 0) return false;
  const std::string row = j.dump() + "\n";
  size_t done = 0;
  int err = 0;
  while (done < row.size()) {
    const ssize_t n = ::write(fd_, row.data() + done, row.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0) {
    size_ += static_cast<int64_t>(row.size());
    return true;
  }
  // cut the torn row off: the file ends with the last complete row again
  if (done > 0 && ::ftruncate(fd_, size_) != 0)
    spdlog::warn("metrics log '{}': cannot cut a partly written row back ({})", path_, std::strerror(errno));
  if (dropped_++ == 0)
    spdlog::warn("cannot write to metrics log '{}' at step {}: {}; training goes on, but metric rows are lost "
                 "until the write succeeds again (the file stays valid JSONL)",
                 path_, j.value("step", int64_t{-1}), std::strerror(err));
  return false;
}

}  // namespace more
