#include "server/dial_rate_limiter.h"

#include <gtest/gtest.h>

namespace drawbridge::server {
namespace {

TEST(DialRateLimiter, AllowsTheBurstThenTheRate) {
  DialRateLimiter limiter(/*rate_per_second=*/10, /*burst=*/5);
  int64_t t = 1'000'000;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(limiter.Check("client/a", t).allowed) << i;
  }
  EXPECT_FALSE(limiter.Check("client/a", t).allowed);
  // 10 per second: one more every 100 ms, never more than the burst.
  EXPECT_FALSE(limiter.Check("client/a", t + 50).allowed);
  EXPECT_TRUE(limiter.Check("client/a", t + 150).allowed);
  EXPECT_FALSE(limiter.Check("client/a", t + 160).allowed);
  int allowed = 0;
  for (int i = 0; i < 20; ++i) {
    allowed += limiter.Check("client/a", t + 60'000).allowed ? 1 : 0;
  }
  EXPECT_EQ(allowed, 5);
}

TEST(DialRateLimiter, IdentitiesHaveTheirOwnBuckets) {
  DialRateLimiter limiter(1, 2);
  EXPECT_TRUE(limiter.Check("client/flood", 0).allowed);
  EXPECT_TRUE(limiter.Check("client/flood", 0).allowed);
  EXPECT_FALSE(limiter.Check("client/flood", 0).allowed);
  EXPECT_TRUE(limiter.Check("client/quiet", 0).allowed);
  EXPECT_TRUE(limiter.Check("client/quiet", 0).allowed);
}

TEST(DialRateLimiter, RecordsTheFirstRefusalThenOneASecondWithTheCountBetween) {
  DialRateLimiter limiter(1, 1);
  EXPECT_TRUE(limiter.Check("client/a", 0).allowed);
  auto first = limiter.Check("client/a", 10);
  EXPECT_FALSE(first.allowed);
  EXPECT_TRUE(first.record);
  EXPECT_EQ(first.unrecorded, 0u);
  for (int i = 0; i < 7; ++i) {
    auto d = limiter.Check("client/a", 20 + i);
    EXPECT_FALSE(d.allowed);
    EXPECT_FALSE(d.record);
  }
  // Refill is 1/s, so at +1000 ms one dial goes through; the next is refused and
  // recorded with the 7 refusals nobody recorded.
  EXPECT_TRUE(limiter.Check("client/a", 1010).allowed);
  auto next = limiter.Check("client/a", 1011);
  EXPECT_FALSE(next.allowed);
  EXPECT_TRUE(next.record);
  EXPECT_EQ(next.unrecorded, 7u);
}

TEST(DialRateLimiter, TheTailOfAFloodIsTakenForASummaryOnceASecond) {
  DialRateLimiter limiter(1, 1);
  EXPECT_TRUE(limiter.Check("client/a", 0).allowed);
  EXPECT_TRUE(limiter.Check("client/a", 1).record);  // the first refusal
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(limiter.Check("client/a", 2 + i).record);
  }
  EXPECT_TRUE(limiter.TakeUnrecorded(500).empty());  // the last record is too recent
  auto tail = limiter.TakeUnrecorded(1001);
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0].first, "client/a");
  EXPECT_EQ(tail[0].second, 5u);
  EXPECT_TRUE(limiter.TakeUnrecorded(5000).empty());  // counted once
}

TEST(DialRateLimiter, ZeroRateIsNoLimitAndAClockStepBackRefillsNothing) {
  DialRateLimiter off(0, 1);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(off.Check("client/a", 0).allowed);
  }
  DialRateLimiter limiter(1, 1);
  EXPECT_TRUE(limiter.Check("client/a", 10'000).allowed);
  EXPECT_FALSE(limiter.Check("client/a", 5'000).allowed);  // the clock went back
  EXPECT_FALSE(limiter.Check("client/a", 10'500).allowed);
  EXPECT_TRUE(limiter.Check("client/a", 11'000).allowed);
}

}  // namespace
}  // namespace drawbridge::server
