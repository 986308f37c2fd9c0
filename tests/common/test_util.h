// Helpers shared by every test binary (torch-free): scratch directories and error assertions.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "more/core/error.h"

namespace more::testing {

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t") {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("more_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// A full disk, simulated: while alive, this process may not write files past `bytes`
// (RLIMIT_FSIZE) and SIGXFSZ is ignored, so a write() past it fails with EFBIG as a full disk
// fails with ENOSPC. ok(): the limit is in place. Lift() (or the destructor) restores both.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    handler_ = ::signal(SIGXFSZ, SIG_IGN);
    if (::getrlimit(RLIMIT_FSIZE, &old_) != 0) return;
    rlimit small = old_;
    small.rlim_cur = bytes;
    ok_ = ::setrlimit(RLIMIT_FSIZE, &small) == 0;
  }
  ~FileSizeLimit() { Lift(); }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  bool ok() const { return ok_; }
  bool Lift() {  // true when the old limit is back (or none was set)
    if (lifted_) return true;
    lifted_ = true;
    ::signal(SIGXFSZ, handler_);
    return !ok_ || ::setrlimit(RLIMIT_FSIZE, &old_) == 0;
  }

 private:
  rlimit old_{};
  sighandler_t handler_ = SIG_DFL;
  bool ok_ = false, lifted_ = false;
};

// Runs `fn`, expecting a more::Error whose message contains every one of `parts`.
template <typename Fn>
void ExpectError(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected more::Error containing '" << (parts.empty() ? "" : parts[0]) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace more::testing
