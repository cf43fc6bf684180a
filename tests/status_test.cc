#include "common/status.h"

#include <gtest/gtest.h>

namespace pepnet {
namespace {

TEST(StatusTest, OkIsCheapAndPrintsOk) {
  Status st;
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(st.code(), Status::kOk);
  EXPECT_EQ(st.ToString(), "OK");
  EXPECT_EQ(st.message(), "");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status st = Status::Unavailable("shard 1 (127.0.0.1:9): connection refused");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::kUnavailable);
  EXPECT_EQ(st.ToString(), "Unavailable: shard 1 (127.0.0.1:9): connection refused");
}

TEST(StatusTest, CopyAndContext) {
  Status a = Status::InvalidArgument("dim must be > 0");
  Status b = a;
  EXPECT_EQ(b.ToString(), a.ToString());
  EXPECT_EQ(a.WithContext("table.pbtxt").message(), "table.pbtxt: dim must be > 0");
  EXPECT_TRUE(Status::OK().WithContext("x").ok());
}

}  // namespace
}  // namespace pepnet
