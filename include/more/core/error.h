// Errors: one exception type carrying what went wrong, where (file/field) and a hint.
// Every binary's main() goes through more::RunMain (core/main_guard.h): an exception on any
// rank is logged with that rank's id and the whole MPI job is aborted with a non-zero exit,
// so no other rank is left waiting in a collective.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace more {

class Error : public std::runtime_error {
 public:
  Error(std::string what, std::string hint = {})
      : std::runtime_error(hint.empty() ? what : what + " (hint: " + hint + ")"),
        hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }

 private:
  std::string hint_;
};

// Throws more::Error with a formatted message.
template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace more

// MORE_CHECK(cond, "format {}", args...): throws more::Error naming the source location.
#define MORE_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw ::more::Error(fmt::format(__VA_ARGS__) +                                       \
                          fmt::format(" [check '{}' at {}:{}]", #cond, __FILE__, __LINE__)); \
  } while (0)
