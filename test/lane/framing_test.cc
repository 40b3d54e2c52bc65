// The lane's length-prefix framing (lane/framing.h): what a peer can send us.
#include "lane/framing.h"

#include <gtest/gtest.h>

#include <string>

namespace drawbridge::lane {
namespace {

std::string Message(const std::string& payload) {
  std::string out;
  AppendLengthPrefix(payload.size(), &out);
  return out + payload;
}

TEST(LaneFramingTest, SplitsWholeMessagesAndWaitsForPartialOnes) {
  const std::string two = Message("hello") + Message(std::string(300, 'x'));
  size_t consumed = 0;
  auto first = SplitMessage(two, &consumed);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "hello");
  EXPECT_EQ(consumed, kLengthBytes + 5);
  auto second = SplitMessage(std::string_view(two).substr(consumed), &consumed);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 300u);

  // Every proper prefix of a message is "need more", never an error.
  const std::string one = Message("abc");
  for (size_t n = 0; n < one.size(); ++n) {
    auto partial = SplitMessage(std::string_view(one).substr(0, n), &consumed);
    ASSERT_TRUE(partial.ok()) << n;
    EXPECT_EQ(consumed, 0u) << n;
  }
}

TEST(LaneFramingTest, RefusesEmptyAndOversizedMessages) {
  size_t consumed = 99;
  auto empty = SplitMessage(std::string(4, '\0'), &consumed);
  EXPECT_FALSE(empty.ok());
  EXPECT_EQ(consumed, 0u);

  std::string big;
  AppendLengthPrefix(kMaxMessageBytes + 1, &big);
  auto oversized = SplitMessage(big, &consumed);
  ASSERT_FALSE(oversized.ok());
  EXPECT_NE(oversized.status().message().find("at most"), std::string::npos);

  // The limit itself is fine, and its whole length is needed before it splits.
  std::string largest;
  AppendLengthPrefix(kMaxMessageBytes, &largest);
  EXPECT_EQ(BytesNeeded(largest), kLengthBytes + kMaxMessageBytes);
  largest.append(kMaxMessageBytes, 'z');
  auto ok = SplitMessage(largest, &consumed);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), kMaxMessageBytes);

  std::string all_ones("\xff\xff\xff\xff", 4);
  EXPECT_FALSE(SplitMessage(all_ones, &consumed).ok());
  EXPECT_EQ(BytesNeeded(all_ones), kLengthBytes);  // never asks a reader for 4 GiB
}

TEST(LaneFramingTest, BytesNeededGrowsFromThePrefixToTheWholeMessage) {
  EXPECT_EQ(BytesNeeded(""), kLengthBytes);
  EXPECT_EQ(BytesNeeded("\x00\x00"), kLengthBytes);
  const std::string m = Message(std::string(1000, 'q'));
  EXPECT_EQ(BytesNeeded(std::string_view(m).substr(0, 4)), m.size());
}

}  // namespace
}  // namespace drawbridge::lane
