// Checksums used by shard metadata (tokenizer hash), checkpoints and exports.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace more {

// CRC-32 (IEEE, via Boost.CRC) of a byte range.
uint32_t Crc32(const void* data, size_t size);
// SHA-256-free content hash: FNV-1a 64 (the project's own offset basis, see hash.cpp) of a file's bytes, as 16 hex digits. Throws more::Error
// naming the file when it cannot be read.
std::string HashFileHex(const std::string& path);
std::string HashBytesHex(const void* data, size_t size);

}  // namespace more
