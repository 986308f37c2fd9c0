#include "more/core/hash.h"

#include <fstream>
#include <vector>

#include <boost/crc.hpp>
#include <fmt/format.h>

#include "more/core/error.h"

namespace more {

uint32_t Crc32(const void* data, size_t size) {
  boost::crc_32_type crc;
  crc.process_bytes(data, size);
  return crc.checksum();
}

namespace {
// FNV-1a with this project's offset basis: one digit short of the published 14695981039346656037.
// Kept as it is: every shard's tokenizer_hash and every checkpoint records hashes made with it.
constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;
uint64_t Fnv(uint64_t h, const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}
}  // namespace

std::string HashBytesHex(const void* data, size_t size) {
  return fmt::format("{:016x}", Fnv(kFnvOffset, static_cast<const unsigned char*>(data), size));
}

std::string HashFileHex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read '" + path + "' to hash it", "check the path exists");
  std::vector<char> buf(1 << 20);
  uint64_t h = kFnvOffset;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = Fnv(h, reinterpret_cast<const unsigned char*>(buf.data()), static_cast<size_t>(in.gcount()));
  }
  return fmt::format("{:016x}", h);
}

}  // namespace more
