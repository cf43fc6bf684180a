#include "common/frame.h"

#include <gtest/gtest.h>

namespace pepnet {
namespace {

TEST(FrameTest, PrefixRoundTrips) {
  char buf[kFramePrefixBytes];
  EncodeFramePrefix(17, 131072, buf);
  FramePrefix p;
  ASSERT_TRUE(DecodeFramePrefix(buf, kDefaultMaxFrameBytes, &p).ok());
  EXPECT_EQ(p.header_len, 17u);
  EXPECT_EQ(p.payload_len, 131072u);
  // Little-endian on the wire: "PEPS".
  EXPECT_EQ(std::string(buf, 4), "PEPS");
}

TEST(FrameTest, BadMagicIsCorruption) {
  char buf[kFramePrefixBytes];
  EncodeFramePrefix(10, 0, buf);
  buf[0] = 'G';
  FramePrefix p;
  Status st = DecodeFramePrefix(buf, kDefaultMaxFrameBytes, &p);
  EXPECT_EQ(st.code(), Status::kCorruption);
  EXPECT_NE(st.message().find("magic"), std::string::npos);
}

TEST(FrameTest, OversizedFrameIsRejected) {
  char buf[kFramePrefixBytes];
  EncodeFramePrefix(10, 5000, buf);
  FramePrefix p;
  Status st = DecodeFramePrefix(buf, 4096, &p);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("exceeds the maximum of 4096"), std::string::npos);
}

TEST(FrameTest, EmptyHeaderIsValidHugeHeaderIsNot) {
  char buf[kFramePrefixBytes];
  FramePrefix p;
  EncodeFramePrefix(0, 0, buf);  // an all-default header is empty
  EXPECT_TRUE(DecodeFramePrefix(buf, kDefaultMaxFrameBytes, &p).ok());
  EncodeFramePrefix(kMaxHeaderBytes + 1, 0, buf);
  EXPECT_FALSE(DecodeFramePrefix(buf, kDefaultMaxFrameBytes, &p).ok());
}

TEST(FrameTest, PayloadBufferIsAligned) {
  PayloadBuffer b;
  b.Resize(13);
  EXPECT_EQ(b.size(), 13u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 8, 0u);
}

}  // namespace
}  // namespace pepnet
