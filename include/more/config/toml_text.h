// The text of a TOML config file, made safe for the TOML library before it reads it.
//
// toml++ 3.3 (Debian 12's) reaches __builtin_unreachable, undefined behaviour, when it asks
// whether a character in U+00A1-U+0499, U+2C5E-U+3057 (but U+3000) or U+FB26-U+FEFE is
// whitespace (found by fuzz/fuzz_toml_config.cpp). So no byte >= 0x80 reaches it: before parsing,
//   - the text must be UTF-8 (refused naming the line otherwise);
//   - inside a basic string ("..." or """..."""), each non-ASCII character becomes its escape
//     (\uXXXX or \UXXXXXXXX), which TOML defines to mean the same character;
//   - a literal string ('...' or '''...''') that holds one becomes the basic string of the same
//     value (backslashes and quotes escaped, the characters as above);
//   - inside a comment, each non-ASCII character becomes '?' (comments carry no value);
//   - anywhere else (a bare key, between values) TOML 1.0 allows no non-ASCII character: refused,
//     naming the line and the character.
// Newlines are kept, so the library's line numbers stay those of the file.
#pragma once
#include <string>

namespace more {

// `what` names the file in messages. Throws more::Error as described above.
std::string TomlTextForLibrary(const std::string& text, const std::string& what);

}  // namespace more
