// Packing rule: [BOS] + prompt + target + [EOS], mask on target + EOS, over-long policies.
#include <gtest/gtest.h>

#include <filesystem>

#include "more/core/error.h"
#include "more/data/packing.h"
#include "more/data/tokenizer.h"

using namespace more;

namespace {
const std::vector<int32_t> kIn = {10, 11, 12, 13, 14};
const std::vector<int32_t> kTg = {20, 21};
constexpr int32_t kBos = 1, kEos = 2;
}  // namespace

TEST(Packing, LayoutAndMaskWhenItFits) {
  PackStats st;
  const auto s = PackTokens(kIn, kTg, kBos, kEos, 64, OverlongPolicy::kError, &st);
  ASSERT_TRUE(s);
  const std::vector<int32_t> ids = {1, 10, 11, 12, 13, 14, 20, 21, 2};
  EXPECT_EQ(s->ids, ids);
  // Positions 6, 7 (target) and 8 (EOS) are predicted; BOS and prompt are not.
  const std::vector<uint8_t> mask = {0, 0, 0, 0, 0, 0, 1, 1, 1};
  EXPECT_EQ(s->target_mask, mask);
  EXPECT_EQ(s->prompt_length, 6);
  EXPECT_EQ(s->label_index, -1);
  EXPECT_TRUE(std::isnan(s->label_value));
  EXPECT_EQ(st.packed, 1);
  EXPECT_EQ(st.truncated, 0);
  EXPECT_EQ(st.total_tokens, 9);
}

TEST(Packing, ExactlyMaxLenIsNotOverlong) {
  const auto s = PackTokens(kIn, kTg, kBos, kEos, 9, OverlongPolicy::kError);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ids.size(), 9u);
}

TEST(Packing, TruncateDropsPromptFromTheLeft) {
  PackStats st;
  // 9 tokens into 6: drop 3 prompt tokens (10, 11, 12), keep BOS and the whole target.
  const auto s = PackTokens(kIn, kTg, kBos, kEos, 6, OverlongPolicy::kTruncate, &st);
  ASSERT_TRUE(s);
  const std::vector<int32_t> ids = {1, 13, 14, 20, 21, 2};
  EXPECT_EQ(s->ids, ids);
  const std::vector<uint8_t> mask = {0, 0, 0, 1, 1, 1};
  EXPECT_EQ(s->target_mask, mask);
  EXPECT_EQ(s->prompt_length, 3);
  EXPECT_EQ(st.truncated, 1);
  EXPECT_EQ(st.packed, 1);
}

TEST(Packing, TruncateCanDropTheWholePrompt) {
  const auto s = PackTokens(kIn, kTg, kBos, kEos, 4, OverlongPolicy::kTruncate);
  ASSERT_TRUE(s);
  const std::vector<int32_t> ids = {1, 20, 21, 2};
  EXPECT_EQ(s->ids, ids);
  EXPECT_EQ(s->prompt_length, 1);
}

TEST(Packing, TruncateSkipsWhenTheTargetAloneDoesNotFit) {
  PackStats st;
  const auto s = PackTokens(kIn, kTg, kBos, kEos, 3, OverlongPolicy::kTruncate, &st);
  EXPECT_FALSE(s);
  EXPECT_EQ(st.target_too_long, 1);
  EXPECT_EQ(st.packed, 0);
}

TEST(Packing, SkipAndErrorPolicies) {
  PackStats st;
  EXPECT_FALSE(PackTokens(kIn, kTg, kBos, kEos, 8, OverlongPolicy::kSkip, &st));
  EXPECT_EQ(st.skipped, 1);
  try {
    PackTokens(kIn, kTg, kBos, kEos, 8, OverlongPolicy::kError);
    FAIL() << "expected more::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("9 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_len 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PackTokens(kIn, kTg, kBos, kEos, 1, OverlongPolicy::kTruncate), Error);
}

TEST(Packing, ParsePolicy) {
  EXPECT_EQ(ParseOverlongPolicy("truncate"), OverlongPolicy::kTruncate);
  EXPECT_EQ(ParseOverlongPolicy("skip"), OverlongPolicy::kSkip);
  EXPECT_EQ(ParseOverlongPolicy("error"), OverlongPolicy::kError);
  EXPECT_THROW(ParseOverlongPolicy("drop"), Error);
}

TEST(Packing, PackSampleUsesTheTokenizer) {
  const std::string model = std::string(MORE_TESTDATA) + "/tok.model";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "fixture tokenizer missing: " << model;
  Tokenizer tok(model);
  const std::string input = "sentiment: the film was wonderful . answer:";
  const std::string target = "positive";
  const auto in = tok.Encode(input), tg = tok.Encode(target);
  const auto s = PackSample(tok, input, target, 64, OverlongPolicy::kError);
  ASSERT_TRUE(s);
  std::vector<int32_t> want = {tok.bos_id()};
  want.insert(want.end(), in.begin(), in.end());
  want.insert(want.end(), tg.begin(), tg.end());
  want.push_back(tok.eos_id());
  EXPECT_EQ(s->ids, want);
  EXPECT_EQ(s->prompt_length, static_cast<int32_t>(1 + in.size()));
  // Decoding the masked positions gives back the target.
  std::vector<int32_t> masked;
  for (size_t j = 0; j < s->ids.size(); ++j)
    if (s->target_mask[j]) masked.push_back(s->ids[j]);
  EXPECT_EQ(masked.back(), tok.eos_id());
  masked.pop_back();
  EXPECT_EQ(tok.Decode(masked), target);
  // Over-long with kError names the sample.
  try {
    PackSample(tok, input, target, 4, OverlongPolicy::kError);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("film was wonderful"), std::string::npos) << e.what();
  }
}
