#include "more/config/toml_text.h"

#include <cstdint>
#include <fmt/format.h>

#include "more/core/error.h"

namespace more {
namespace {

class Rewriter {
 public:
  Rewriter(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  std::string Run() {
    out_.reserve(s_.size() + s_.size() / 8);
    while (i_ < s_.size()) {
      const auto b = static_cast<unsigned char>(s_[i_]);
      if (b >= 0x80) {
        int len = 0;
        const char32_t cp = Decode(i_, &len);
        if (state_ == kBasic || state_ == kMlBasic) out_ += Escape(cp);
        else if (state_ == kComment) out_ += '?';
        else
          throw Error(fmt::format("config file '{}': line {} holds the character U+{:04X} outside a string; TOML "
                                  "allows characters beyond ASCII only inside \"strings\" and comments",
                                  what_, line_, static_cast<uint32_t>(cp)),
                      "config keys are ASCII: check the spelling of the key on that line");
        i_ += static_cast<size_t>(len);
        continue;
      }
      const char c = s_[i_];
      if (c == '\n') {
        ++line_;
        if (state_ == kComment || state_ == kBasic) state_ = kNormal;  // a basic string cannot span lines:
        Copy(1);                                                      // the library refuses it
        continue;
      }
      switch (state_) {
        case kComment: Copy(1); break;
        case kNormal:
          if (c == '#') state_ = kComment, Copy(1);
          else if (At("\"\"\"")) state_ = kMlBasic, Copy(3);
          else if (c == '"') state_ = kBasic, Copy(1);
          else if (c == '\'') Literal();
          else Copy(1);
          break;
        case kBasic:
        case kMlBasic:
          if (c == '\\') {
            Copy(1);
            // the escaped character is copied with it, so \" and \\ neither end the string nor
            // escape what follows; an escape of a non-ASCII character is no TOML escape
            if (i_ < s_.size() && static_cast<unsigned char>(s_[i_]) >= 0x80)
              throw Error(fmt::format("cannot parse config file '{}': line {} has a backslash before a character "
                                      "beyond ASCII, which is no TOML escape",
                                      what_, line_),
                          "write \\\\ for a backslash");
            if (i_ < s_.size() && s_[i_] != '\n') Copy(1);
          } else if (state_ == kBasic && c == '"') {
            state_ = kNormal, Copy(1);
          } else if (state_ == kMlBasic && At("\"\"\"")) {
            Copy(QuoteRun('"'));  // """ ends it; up to two more quotes before it are content
            state_ = kNormal;
          } else {
            Copy(1);
          }
          break;
      }
    }
    return out_;
  }

 private:
  enum State { kNormal, kComment, kBasic, kMlBasic };

  bool At(const char* d) const { return s_.compare(i_, std::char_traits<char>::length(d), d) == 0; }
  void Copy(size_t n) {
    out_.append(s_, i_, n);
    i_ += n;
  }
  // The length of the run of `q` at i_, at most 5 (a delimiter of three and two content quotes).
  size_t QuoteRun(char q) const {
    size_t n = 0;
    while (n < 5 && i_ + n < s_.size() && s_[i_ + n] == q) ++n;
    return n;
  }

  static std::string Escape(char32_t cp) {
    return cp <= 0xFFFF ? fmt::format("\\u{:04X}", static_cast<uint32_t>(cp))
                        : fmt::format("\\U{:08X}", static_cast<uint32_t>(cp));
  }

  // The UTF-8 character at s_[at] (a byte >= 0x80), or an error naming the line.
  char32_t Decode(size_t at, int* len) const {
    const auto b = static_cast<unsigned char>(s_[at]);
    const int n = b >= 0xF0 && b < 0xF5 ? 4 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0;
    char32_t cp = n == 4 ? b & 0x07 : n == 3 ? b & 0x0F : b & 0x1F;
    bool ok = n > 0 && at + static_cast<size_t>(n) <= s_.size();
    for (int k = 1; ok && k < n; ++k) {
      const auto c = static_cast<unsigned char>(s_[at + static_cast<size_t>(k)]);
      ok = (c & 0xC0) == 0x80;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (!ok || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      throw Error(fmt::format("cannot parse config file '{}': line {} is not valid UTF-8", what_, line_),
                  "TOML files are UTF-8 text");
    *len = n;
    return cp;
  }

  // A literal string at i_ ('...' or '''...'''): copied as it is when it is ASCII, else written as
  // the basic string of the same value.
  void Literal() {
    const bool ml = At("'''");
    const size_t open = ml ? 3 : 1, start = i_ + open;
    size_t end = start, close = 0;  // content [start, end), delimiter [end, end + close)
    for (;; ++end) {
      if (end >= s_.size() || (!ml && s_[end] == '\n'))
        throw Error(fmt::format("cannot parse config file '{}': the literal string that starts on line {} is "
                                "not closed",
                                what_, line_),
                    ml ? "close it with '''" : "close it with ' on the same line");
      if (!ml && s_[end] == '\'') {
        close = 1;
        break;
      }
      if (ml && s_.compare(end, 3, "'''") == 0) {
        size_t run = 3;
        while (run < 5 && end + run < s_.size() && s_[end + run] == '\'') ++run;
        end += run - 3;  // quotes before the last three are content
        close = 3;
        break;
      }
    }
    bool ascii = true;
    for (size_t k = start; k < end; ++k) ascii = ascii && static_cast<unsigned char>(s_[k]) < 0x80;
    if (ascii) {
      for (size_t k = i_; k < end + close; ++k) line_ += s_[k] == '\n';
      Copy(end + close - i_);
      return;
    }
    const char* quote = ml ? "\"\"\"" : "\"";
    out_ += quote;
    for (size_t k = start; k < end;) {
      const auto b = static_cast<unsigned char>(s_[k]);
      if (b >= 0x80) {
        int len = 0;
        out_ += Escape(Decode(k, &len));
        k += static_cast<size_t>(len);
        continue;
      }
      if (s_[k] == '\n') ++line_;
      if (s_[k] == '\\' || s_[k] == '"') out_ += '\\';
      out_ += s_[k++];
    }
    out_ += quote;
    i_ = end + close;
  }

  const std::string& s_;
  const std::string& what_;
  std::string out_;
  size_t i_ = 0;
  int64_t line_ = 1;
  State state_ = kNormal;
};

}  // namespace

std::string TomlTextForLibrary(const std::string& text, const std::string& what) {
  return Rewriter(text, what).Run();
}

}  // namespace more
