// Packing: one (input, target) text pair -> one token row of a shard.
//
//   ids         = [BOS] + Encode(input) + Encode(target) + [EOS]       length n <= max_len
//   prompt_len  = 1 + |Encode(input)|
//   target_mask = 0 on [0, prompt_len), 1 on [prompt_len, n): the target tokens and the EOS,
//                 i.e. the positions whose token the loss predicts (from position j-1).
//
// Over-long rows (n > max_len):
//   kTruncate: drop prompt tokens from the LEFT of the input (BOS and the whole target stay);
//              if even an empty prompt leaves the row too long (2 + |target| > max_len),
//              the sample is skipped and counted in PackStats::target_too_long.
//   kSkip:     the sample is dropped (std::nullopt), counted in PackStats::skipped.
//   kError:    more::Error naming the sample.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace more {

class Tokenizer;

struct Sample {
  std::vector<int32_t> ids;          // [n] BOS + prompt + target + EOS, n <= max_len
  std::vector<uint8_t> target_mask;  // [n] 1 on target tokens and EOS
  int32_t prompt_length = 0;         // BOS + prompt tokens
  int32_t label_index = -1;          // index into the task's candidates, -1 if none
  float label_value = std::numeric_limits<float>::quiet_NaN();  // numeric label, NaN if none
};

enum class OverlongPolicy { kTruncate, kSkip, kError };
// "truncate" | "skip" | "error"; anything else throws naming the accepted values.
OverlongPolicy ParseOverlongPolicy(const std::string& name);

// Counts of what PackSample did (accumulated; pass the same object for a whole task).
struct PackStats {
  int64_t packed = 0;           // samples returned (including truncated ones)
  int64_t truncated = 0;        // returned with prompt tokens dropped
  int64_t skipped = 0;          // dropped by kSkip
  int64_t target_too_long = 0;  // dropped by kTruncate because the target alone does not fit
  int64_t total_tokens = 0;     // sum of packed row lengths
};

// Returns std::nullopt when the sample is skipped. max_len must be >= 2.
std::optional<Sample> PackSample(const Tokenizer& tok, const std::string& input, const std::string& target,
                                 int max_len, OverlongPolicy policy, PackStats* stats = nullptr);

// The same rule on already-encoded tokens (what PackSample calls after encoding).
std::optional<Sample> PackTokens(const std::vector<int32_t>& input_ids,
                                 const std::vector<int32_t>& target_ids, int32_t bos_id, int32_t eos_id,
                                 int max_len, OverlongPolicy policy, PackStats* stats = nullptr);

}  // namespace more
