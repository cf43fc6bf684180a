// Malformed frames sent over raw sockets to a live pepnet_ps: each gets an error reply
// or a closed connection, a log line naming the peer, and the server keeps serving.
#include <gtest/gtest.h>

#include <cstring>

#include "common/frame.h"
#include "common/hash.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "tests/raw_connection.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

using testing::RawConnection;

constexpr uint64_t kMaxFrame = 1 << 20;

std::string Keys(const std::vector<uint64_t>& keys) {
  return std::string(reinterpret_cast<const char*>(keys.data()), 8 * keys.size());
}

class MalformedFrameTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string config = dir_.File("t.pbtxt");
    testing::WriteFile(config, "slot { id: 1 dim: 4 }\n");
    Status st =
        server_.Start(dir_, config, 0, 1, {"--max_frame_bytes=" + std::to_string(kMaxFrame)});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // A well-behaved client still gets answers.
  void ExpectServerHealthy() {
    ClientOptions options;
    options.servers = {server_.address()};
    std::unique_ptr<PsClient> client;
    ASSERT_TRUE(PsClient::Connect(options, &client).ok());
    const uint64_t key = testing::TestKey(1, 1);
    std::vector<float> out;
    Status st = client->Wait(client->Pull(&key, 1, &out));
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(out.size(), 4u);
  }

  void ExpectErrorThenUsable(RawConnection* c, const std::string& fragment) {
    proto::ResponseHeader reply;
    ASSERT_TRUE(c->ReadReply(&reply)) << fragment;
    EXPECT_EQ(reply.code(), proto::INVALID_ARGUMENT);
    EXPECT_NE(reply.error().find(fragment), std::string::npos) << reply.error();
    // The same connection goes on serving.
    c->Send(RawConnection::Request(proto::PING, 0, 0, ""));
    ASSERT_TRUE(c->ReadReply(&reply));
    EXPECT_EQ(reply.code(), proto::OK);
    EXPECT_EQ(reply.ping().num_shards(), 1u);
  }

  std::string Log() { return testing::ReadFile(server_.log_path()); }
  std::string Peer(const RawConnection& c) { return "127.0.0.1:" + std::to_string(c.local_port()); }

  testing::TempDir dir_;
  testing::ServerProcess server_;
};

TEST_F(MalformedFrameTest, UnknownRequestType) {
  RawConnection c(server_.port());
  ASSERT_TRUE(c.connected());
  c.Send(RawConnection::Request(static_cast<proto::RequestType>(99), 0, 0, ""));
  ExpectErrorThenUsable(&c, "unknown request type 99");
  EXPECT_NE(Log().find("request from " + Peer(c)), std::string::npos);
}

TEST_F(MalformedFrameTest, PullKeysDisagreeWithPayload) {
  RawConnection c(server_.port());
  c.Send(RawConnection::Request(proto::PULL, 10, 0,
                                Keys({testing::TestKey(1, 1), testing::TestKey(1, 2)})));
  ExpectErrorThenUsable(&c, "payload is 16 bytes but the header implies 80");
}

TEST_F(MalformedFrameTest, PushFloatsDisagreeWithKeys) {
  RawConnection c(server_.port());
  // Two keys of dim 4 need 8 gradient floats; the header claims 6 (and sends 6).
  std::string payload =
      Keys({testing::TestKey(1, 1), testing::TestKey(1, 2)}) + std::string(4 * 6 + 16, '\0');
  c.Send(RawConnection::Request(proto::PUSH, 2, 6, payload));
  ExpectErrorThenUsable(&c, "header says 6 gradient floats but the keys' slot dims sum to 8");
  // A payload whose length does not even fit the header.
  c.Send(RawConnection::Request(proto::PUSH, 2, 8, payload));
  ExpectErrorThenUsable(&c, "push: payload is");
}

// num_keys * 16 + num_values * 4 wraps around 2^64 to the real payload length: the
// server must not believe it and read 32 GiB of keys from a small buffer.
TEST_F(MalformedFrameTest, PushLengthsThatOverflowAreRefused) {
  RawConnection c(server_.port());
  const uint64_t n = 0xFFFFFFFFull, len = 512 << 10;
  const uint64_t v = (uint64_t{0} - 16 * n + len) / 4;
  ASSERT_EQ(16 * n + 4 * v, len);  // the wrapped sum a naive check would accept
  c.Send(RawConnection::Request(proto::PUSH, static_cast<uint32_t>(n), v, std::string(len, '\0')));
  ExpectErrorThenUsable(&c, "push: payload is 524288 bytes but the header implies 4294967295 keys");
}

TEST_F(MalformedFrameTest, KeyOfUnconfiguredSlot) {
  RawConnection c(server_.port());
  c.Send(RawConnection::Request(proto::PULL, 1, 0, Keys({testing::TestKey(9, 1)})));
  ExpectErrorThenUsable(&c, "slot 9, which is not configured");
}

TEST_F(MalformedFrameTest, PullWhoseReplyWouldExceedTheFrameLimit) {
  RawConnection c(server_.port());
  // 100k keys fit in a 1 MiB request (800 kB) but their rows would not (1.6 MB).
  std::vector<uint64_t> keys(100000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = testing::TestKey(1, i);
  c.Send(RawConnection::Request(proto::PULL, keys.size(), 0, Keys(keys)));
  proto::ResponseHeader reply;
  ASSERT_TRUE(c.ReadReply(&reply));
  EXPECT_EQ(reply.code(), proto::RESOURCE_EXHAUSTED);
  EXPECT_NE(reply.error().find("split the request"), std::string::npos) << reply.error();
  c.Send(RawConnection::Request(proto::PING, 0, 0, ""));
  ASSERT_TRUE(c.ReadReply(&reply));
  EXPECT_EQ(reply.code(), proto::OK);
}

TEST_F(MalformedFrameTest, UnparsableHeader) {
  RawConnection c(server_.port());
  c.Send(RawConnection::Frame(std::string(5, '\xff'), ""));
  ExpectErrorThenUsable(&c, "unparsable request header");
}

TEST_F(MalformedFrameTest, BadMagicGetsErrorAndClose) {
  RawConnection c(server_.port());
  std::string frame = RawConnection::Request(proto::PING, 0, 0, "");
  frame[0] = 'X';
  c.Send(frame);
  proto::ResponseHeader reply;
  ASSERT_TRUE(c.ReadReply(&reply));
  EXPECT_EQ(reply.code(), proto::CORRUPTION);
  EXPECT_NE(reply.error().find("magic"), std::string::npos);
  EXPECT_TRUE(c.ClosedByPeer());
  EXPECT_NE(Log().find("bad frame from " + Peer(c)), std::string::npos) << Log();
  ExpectServerHealthy();
}

TEST_F(MalformedFrameTest, OversizedFrameGetsErrorAndClose) {
  RawConnection c(server_.port());
  std::string prefix(kFramePrefixBytes, '\0');
  EncodeFramePrefix(10, kMaxFrame, &prefix[0]);
  c.Send(prefix);
  proto::ResponseHeader reply;
  ASSERT_TRUE(c.ReadReply(&reply));
  EXPECT_EQ(reply.code(), proto::INVALID_ARGUMENT);
  EXPECT_NE(reply.error().find("exceeds the maximum"), std::string::npos) << reply.error();
  EXPECT_TRUE(c.ClosedByPeer());
  ExpectServerHealthy();
}

TEST_F(MalformedFrameTest, TruncatedFrameIsLoggedAndOthersAreServed) {
  {
    RawConnection c(server_.port());
    const std::string frame = RawConnection::Request(proto::PULL, 4, 0, Keys({1, 2, 3, 4}));
    c.Send(frame.substr(0, frame.size() - 9));
    // While this peer holds a half frame, others are served.
    ExpectServerHealthy();
  }  // closes mid-frame
  auto half_prefix = std::make_unique<RawConnection>(server_.port());
  half_prefix->Send("PEP");
  const std::string peer = "127.0.0.1:" + std::to_string(half_prefix->local_port());
  half_prefix.reset();
  // Wait for the log lines.
  for (int i = 0; i < 200 && Log().find("truncated frame from " + peer) == std::string::npos; ++i)
    usleep(10000);
  EXPECT_NE(Log().find("header+payload bytes"), std::string::npos) << Log();
  EXPECT_NE(Log().find("truncated frame from " + peer + ": got 3 of 12 prefix bytes"),
            std::string::npos)
      << Log();
  ExpectServerHealthy();
}

// A client allowed bigger frames than the server learns why its frame was refused.
TEST_F(MalformedFrameTest, ClientSeesTheServersFrameLimitError) {
  ClientOptions options;
  options.servers = {server_.address()};
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  std::vector<uint64_t> keys(100000);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = testing::TestKey(1, i);
  std::vector<float> grads(4 * keys.size(), 0.1f), ones(keys.size(), 1.0f);
  Status st =
      client->Wait(client->Push(keys.data(), keys.size(), grads.data(), ones.data(), ones.data()));
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << "the server's code is kept";
  EXPECT_NE(st.message().find("server rejected a frame"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("exceeds the maximum of 1048576"), std::string::npos) << st.message();
}

TEST_F(MalformedFrameTest, BadRequestsAreCounted) {
  RawConnection c(server_.port());
  c.Send(RawConnection::Request(static_cast<proto::RequestType>(42), 0, 0, ""));
  proto::ResponseHeader reply;
  ASSERT_TRUE(c.ReadReply(&reply));
  c.Send(RawConnection::Request(proto::STATS, 0, 0, ""));
  ASSERT_TRUE(c.ReadReply(&reply));
  EXPECT_EQ(reply.code(), proto::OK);
  EXPECT_EQ(StatValue(reply.stats(), "pepnet_ps_bad_requests_total"), 1);
}

}  // namespace
}  // namespace pepnet
