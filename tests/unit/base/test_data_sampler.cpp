// Task weights (Eq. 7 and the alternatives) and the deterministic single-task BatchSampler.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "more/core/error.h"
#include "more/data/sampler.h"

using namespace more;

TEST(TaskWeights, AllModesByHand) {
  const std::vector<int64_t> sizes = {100, 300, 0, 600};  // total 1000
  {
    // paper: exp(|D_t| / 1000) = e^0.1, e^0.3, (empty: 0), e^0.6
    const double a = std::exp(0.1), b = std::exp(0.3), c = std::exp(0.6), z = a + b + c;
    const auto w = TaskWeights(SamplingMode::kPaper, sizes, 1.0);
    ASSERT_EQ(w.size(), 4u);
    EXPECT_NEAR(w[0], a / z, 1e-12);
    EXPECT_NEAR(w[1], b / z, 1e-12);
    EXPECT_EQ(w[2], 0.0);
    EXPECT_NEAR(w[3], c / z, 1e-12);
    EXPECT_GT(w[3], w[0]);  // as written, Eq. 7 grows with the task size
  }
  {
    const auto w = TaskWeights(SamplingMode::kUniform, sizes, 1.0);
    EXPECT_NEAR(w[0], 1.0 / 3, 1e-12);
    EXPECT_NEAR(w[1], 1.0 / 3, 1e-12);
    EXPECT_EQ(w[2], 0.0);
    EXPECT_NEAR(w[3], 1.0 / 3, 1e-12);
  }
  {
    const auto w = TaskWeights(SamplingMode::kProportional, sizes, 1.0);
    EXPECT_NEAR(w[0], 0.1, 1e-12);
    EXPECT_NEAR(w[1], 0.3, 1e-12);
    EXPECT_EQ(w[2], 0.0);
    EXPECT_NEAR(w[3], 0.6, 1e-12);
  }
  {
    // T = 2: sqrt(100) = 10, sqrt(300) = 17.3205..., sqrt(600) = 24.4948...
    const double a = 10.0, b = 17.320508075688775, c = 24.494897427831781, z = a + b + c;
    const auto w = TaskWeights(SamplingMode::kTemperature, sizes, 2.0);
    EXPECT_NEAR(w[0], a / z, 1e-12);
    EXPECT_NEAR(w[1], b / z, 1e-12);
    EXPECT_EQ(w[2], 0.0);
    EXPECT_NEAR(w[3], c / z, 1e-12);
    // T = 1 is proportional.
    const auto p = TaskWeights(SamplingMode::kTemperature, sizes, 1.0);
    EXPECT_NEAR(p[3], 0.6, 1e-12);
  }
}

TEST(TaskWeights, Errors) {
  EXPECT_THROW(TaskWeights(SamplingMode::kUniform, {0, 0}, 1.0), Error);
  EXPECT_THROW(TaskWeights(SamplingMode::kUniform, {}, 1.0), Error);
  EXPECT_THROW(TaskWeights(SamplingMode::kUniform, {5, -1}, 1.0), Error);
  EXPECT_THROW(TaskWeights(SamplingMode::kTemperature, {5, 1}, 0.0), Error);
  EXPECT_EQ(ParseSamplingMode("paper"), SamplingMode::kPaper);
  EXPECT_EQ(ParseSamplingMode("uniform"), SamplingMode::kUniform);
  EXPECT_EQ(ParseSamplingMode("proportional"), SamplingMode::kProportional);
  EXPECT_EQ(ParseSamplingMode("temperature"), SamplingMode::kTemperature);
  EXPECT_THROW(ParseSamplingMode("inverse"), Error);
  EXPECT_EQ(SamplingModeName(SamplingMode::kTemperature), "temperature");
}

TEST(BatchSampler, ConstructorChecks) {
  EXPECT_THROW(BatchSampler({10, 0}, {0.5, 0.5}, 2, 1, 1), Error);  // weight on an empty task
  EXPECT_THROW(BatchSampler({10, 5}, {0.5}, 2, 1, 1), Error);
  EXPECT_THROW(BatchSampler({10, 5}, {0.0, 0.0}, 2, 1, 1), Error);
  EXPECT_THROW(BatchSampler({10, 5}, {0.5, 0.5}, 0, 1, 1), Error);
  EXPECT_NO_THROW(BatchSampler({10, 0}, {1.0, 0.0}, 2, 1, 1));
}

// Per task, the concatenation of its plans' rows: each consecutive block of |D_t| rows
// (one task epoch) must be a permutation of [0, |D_t|).
void ExpectEpochsArePermutations(const std::vector<int64_t>& sizes, int micro, int dp, int plans) {
  BatchSampler s(sizes, std::vector<double>(sizes.size(), 1.0), micro, dp, 42);
  std::vector<std::vector<int64_t>> seq(sizes.size());
  for (int i = 0; i < plans; ++i) {
    const BatchPlan p = s.Next();
    ASSERT_GE(p.task, 0);
    ASSERT_LT(p.task, static_cast<int>(sizes.size()));
    ASSERT_EQ(p.rows.size(), static_cast<size_t>(micro * dp));
    for (int64_t r : p.rows) {
      ASSERT_GE(r, 0);
      ASSERT_LT(r, sizes[static_cast<size_t>(p.task)]);  // a plan holds rows of its task only
    }
    seq[static_cast<size_t>(p.task)].insert(seq[static_cast<size_t>(p.task)].end(), p.rows.begin(),
                                            p.rows.end());
  }
  for (size_t t = 0; t < sizes.size(); ++t) {
    const size_t n = static_cast<size_t>(sizes[t]);
    ASSERT_GE(seq[t].size(), 2 * n) << "task " << t << " drew too few rows for the test";
    for (size_t e = 0; (e + 1) * n <= seq[t].size(); ++e) {
      std::vector<int64_t> block(seq[t].begin() + static_cast<std::ptrdiff_t>(e * n),
                                 seq[t].begin() + static_cast<std::ptrdiff_t>((e + 1) * n));
      std::sort(block.begin(), block.end());
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(block[i], static_cast<int64_t>(i)) << "task " << t << " epoch " << e;
    }
  }
  // Epoch counters agree with the rows drawn.
  for (size_t t = 0; t < sizes.size(); ++t) {
    const auto n = static_cast<int64_t>(sizes[t]);
    const auto drawn = static_cast<int64_t>(seq[t].size());
    EXPECT_EQ(s.position().epoch[t] * n + s.position().cursor[t], drawn);
  }
}

TEST(BatchSampler, EveryRowOncePerTaskEpoch) {
  ExpectEpochsArePermutations({10}, 3, 1, 40);
  ExpectEpochsArePermutations({17, 40, 5}, 2, 2, 300);
  ExpectEpochsArePermutations({3}, 4, 2, 10);  // task smaller than a plan wraps cyclically
}

TEST(BatchSampler, EpochsUseDifferentOrders) {
  BatchSampler s({50}, {1.0}, 5, 2, 9);
  EXPECT_NE(s.Permutation(0, 0), s.Permutation(0, 1));
  EXPECT_EQ(s.Permutation(0, 3), s.Permutation(0, 3));
  std::vector<int64_t> identity(50);
  for (int i = 0; i < 50; ++i) identity[static_cast<size_t>(i)] = i;
  EXPECT_NE(s.Permutation(0, 0), identity);
}

TEST(BatchSampler, SameSeedSamePlansOtherSeedOtherPlans) {
  const std::vector<int64_t> sizes = {30, 20, 10};
  const std::vector<double> w = {0.5, 0.3, 0.2};
  BatchSampler a(sizes, w, 4, 2, 123), b(sizes, w, 4, 2, 123), c(sizes, w, 4, 2, 124);
  bool differs = false;
  for (int i = 0; i < 200; ++i) {
    const BatchPlan pa = a.Next(), pb = b.Next(), pc = c.Next();
    ASSERT_EQ(pa.task, pb.task);
    ASSERT_EQ(pa.rows, pb.rows);
    differs |= pa.task != pc.task || pa.rows != pc.rows;
  }
  EXPECT_TRUE(differs);
}

TEST(BatchSampler, TaskFrequenciesFollowWeights) {
  const std::vector<double> w = {0.6, 0.3, 0.1};
  BatchSampler s({100, 100, 100}, w, 1, 1, 5);
  const int n = 30000;
  std::vector<int> count(3, 0);
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(s.Next().task)];
  for (size_t t = 0; t < 3; ++t) {
    const double sd = std::sqrt(n * w[t] * (1 - w[t]));
    EXPECT_NEAR(count[t], n * w[t], 5 * sd) << "task " << t;
    EXPECT_EQ(s.position().task_plans[t], count[t]);
  }
  EXPECT_EQ(s.position().steps, n);
  // A zero-weight task is never drawn.
  BatchSampler z({10, 10}, {1.0, 0.0}, 1, 1, 5);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(z.Next().task, 0);
}

TEST(BatchSampler, StateRoundTripContinuesIdentically) {
  const std::vector<int64_t> sizes = {13, 7, 29};
  const std::vector<double> w = {0.2, 0.5, 0.3};
  BatchSampler a(sizes, w, 3, 2, 77);
  for (int i = 0; i < 37; ++i) a.Next();
  const std::string saved = a.State().dump();  // through text, as in a checkpoint
  std::vector<BatchPlan> expected;
  for (int i = 0; i < 100; ++i) expected.push_back(a.Next());

  BatchSampler b(sizes, w, 3, 2, 1);  // another seed: the state carries the seed
  b.LoadState(nlohmann::json::parse(saved));
  for (int i = 0; i < 100; ++i) {
    const BatchPlan p = b.Next();
    ASSERT_EQ(p.task, expected[static_cast<size_t>(i)].task) << i;
    ASSERT_EQ(p.rows, expected[static_cast<size_t>(i)].rows) << i;
  }
  // Sizes must match.
  BatchSampler c({13, 7, 30}, w, 3, 2, 77);
  EXPECT_THROW(c.LoadState(nlohmann::json::parse(saved)), Error);
  EXPECT_THROW(b.LoadState(nlohmann::json{{"version", 1}}), Error);
}

TEST(BatchSampler, DataParallelRanksGetDisjointSlices) {
  const int micro = 4, dp = 3;
  BatchSampler s({24, 36}, {0.5, 0.5}, micro, dp, 3);  // sizes divisible by 12: no plan straddles epochs
  for (int i = 0; i < 50; ++i) {
    const BatchPlan p = s.Next();
    std::set<int64_t> seen;
    for (int r = 0; r < dp; ++r) {
      for (int j = r * micro; j < (r + 1) * micro; ++j) {
        ASSERT_TRUE(seen.insert(p.rows[static_cast<size_t>(j)]).second) << "row shared between ranks";
      }
    }
  }
}
