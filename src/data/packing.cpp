#include "more/data/packing.h"

#include <fmt/format.h>

#include "more/core/error.h"
#include "more/data/tokenizer.h"

namespace more {

OverlongPolicy ParseOverlongPolicy(const std::string& name) {
  if (name == "truncate") return OverlongPolicy::kTruncate;
  if (name == "skip") return OverlongPolicy::kSkip;
  if (name == "error") return OverlongPolicy::kError;
  throw Error("unknown over-long policy '" + name + "'", "use truncate, skip or error");
}

std::optional<Sample> PackTokens(const std::vector<int32_t>& input_ids,
                                 const std::vector<int32_t>& target_ids, int32_t bos_id, int32_t eos_id,
                                 int max_len, OverlongPolicy policy, PackStats* stats) {
  if (max_len < 2) Fail("max_len {} is too small: a row needs at least BOS and EOS", max_len);
  PackStats dummy;
  PackStats& st = stats ? *stats : dummy;
  const int64_t n_in = static_cast<int64_t>(input_ids.size());
  const int64_t n_tg = static_cast<int64_t>(target_ids.size());
  const int64_t n = 2 + n_in + n_tg;
  int64_t drop = 0;  // prompt tokens dropped from the left
  if (n > max_len) {
    switch (policy) {
      case OverlongPolicy::kError:
        Fail(
            "sample has {} tokens (1 BOS + {} prompt + {} target + 1 EOS) > max_len {} "
            "(hint: raise --max-len or use --overlong truncate|skip)",
            n, n_in, n_tg, max_len);
      case OverlongPolicy::kSkip:
        ++st.skipped;
        return std::nullopt;
      case OverlongPolicy::kTruncate:
        if (2 + n_tg > max_len) {
          ++st.target_too_long;
          return std::nullopt;
        }
        drop = n - max_len;
        ++st.truncated;
        break;
    }
  }
  Sample s;
  const int64_t len = n - drop;
  s.ids.reserve(static_cast<size_t>(len));
  s.ids.push_back(bos_id);
  s.ids.insert(s.ids.end(), input_ids.begin() + drop, input_ids.end());
  s.ids.insert(s.ids.end(), target_ids.begin(), target_ids.end());
  s.ids.push_back(eos_id);
  s.prompt_length = static_cast<int32_t>(1 + n_in - drop);
  s.target_mask.assign(static_cast<size_t>(len), 0);
  for (int64_t j = s.prompt_length; j < len; ++j) s.target_mask[static_cast<size_t>(j)] = 1;
  ++st.packed;
  st.total_tokens += len;
  return s;
}

std::optional<Sample> PackSample(const Tokenizer& tok, const std::string& input, const std::string& target,
                                 int max_len, OverlongPolicy policy, PackStats* stats) {
  try {
    return PackTokens(tok.Encode(input), tok.Encode(target), tok.bos_id(), tok.eos_id(), max_len, policy,
                      stats);
  } catch (const Error& e) {
    const std::string shown = input.size() > 60 ? input.substr(0, 60) + "..." : input;
    throw Error(fmt::format("sample \"{}\" -> \"{}\": {}", shown, target, e.what()));
  }
}

}  // namespace more
