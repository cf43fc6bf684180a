// The attacks of docs/security.md against a live pepnet_ps started with a secret: each
// one, played over loopback by a raw or a real client, gets its refusal, a log line naming
// the peer and a counter, and the shard keeps serving its honest clients. Every test runs
// twice: over plain TCP, and inside TLS (an attacker holding a certificate of the cluster,
// whose bytes reach the frame parser all the same).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <thread>

#include "common/auth.h"
#include "common/hash.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "tests/export_util.h"
#include "tests/raw_connection.h"
#include "tests/test_util.h"
#include "tests/tls_util.h"

namespace pepnet {
namespace {

using testing::RawConnection;

constexpr uint64_t kMemoryLimit = 8 << 20;

std::string Keys(const std::vector<uint64_t>& keys) {
  return std::string(reinterpret_cast<const char*>(keys.data()), 8 * keys.size());
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

class ShardSecurityTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    secret_path_ = testing::WriteSecretFile(dir_);
    ASSERT_TRUE(Secret::Load(secret_path_, &secret_).ok());
    if (GetParam()) {
      tls_ = testing::MakeTestTls(dir_);
      secret_.set_tls(tls_.context);
      RawConnection::UseTls(tls_.context.get());
    }
    config_ = dir_.File("t.pbtxt");
    testing::WriteFile(config_, "slot { id: 1 dim: 4 }\n");
  }

  void StartServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {"--secret_file=" + secret_path_,
                                      "--export_dir=" + dir_.File("export"),
                                      "--memory_limit_bytes=" + std::to_string(kMemoryLimit),
                                      "--handshake_timeout_ms=1000",
                                      "--frame_timeout_ms=1000",
                                      "--write_timeout_ms=1000",
                                      "--max_frame_bytes=16777216",
                                      "--buffer_budget_bytes=33554432"};
    flags.insert(flags.end(), tls_.flags.begin(), tls_.flags.end());
    flags.insert(flags.end(), extra.begin(), extra.end());
    Status st = server_.Start(dir_, config_, 0, 1, flags);
    ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(server_.log_path());
  }

  std::unique_ptr<PsClient> Client(PeerRole role = PeerRole::kTool) {
    ClientOptions options;
    options.servers = {server_.address()};
    options.secret = secret_;
    options.role = role;
    std::unique_ptr<PsClient> client;
    Status st = PsClient::Connect(options, &client);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return client;
  }

  StatSet Stats() {
    std::vector<proto::ServerStats> stats;
    Status st = Client()->Stats(&stats);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return stats.empty() ? StatSet() : StatsFromProto(stats[0]);
  }

  std::vector<float> PullOne(uint64_t key) {
    std::vector<float> out;
    auto client = Client();
    Status st = client->Wait(client->Pull(&key, 1, &out));
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::string Peer(const RawConnection& c) { return "127.0.0.1:" + std::to_string(c.local_port()); }

  // Sends a request over an authenticated raw connection and reads the reply's error.
  std::string RequestError(RawConnection* c, const proto::RequestHeader& header,
                           const std::string& payload = "") {
    c->Send(RawConnection::Frame(header.SerializeAsString(), payload));
    proto::ResponseHeader reply;
    EXPECT_TRUE(c->ReadReply(&reply)) << "no reply";
    return reply.error();
  }

  void TearDown() override { RawConnection::UseTls(nullptr); }

  testing::TempDir dir_;
  testing::TestTls tls_;  // empty over plain TCP
  std::string secret_path_, config_;
  Secret secret_;
  testing::ServerProcess server_;
};

TEST_P(ShardSecurityTest, PeersWithoutTheSecretAreDroppedLoggedAndCounted) {
  StartServer();
  // A peer with another secret: refused at the handshake, nothing read from it.
  RawConnection wrong(server_.port(), false);
  Status st = wrong.Handshake(Secret::FromBytes("not the cluster's secret, at all"),
                              PeerRole::kCoordinator);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
  EXPECT_TRUE(wrong.ClosedByPeer());
  EXPECT_TRUE(
      testing::LogEventually(server_.log_path(), "refusing " + Peer(wrong) + " at the handshake"));

  // A peer without one is told the server needs it, before any request.
  RawConnection none(server_.port(), false);
  st = none.Handshake(Secret(), PeerRole::kTool);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("secret"), std::string::npos) << st.message();

  // A request frame sent in place of the handshake, and an HTTP request: dropped.
  RawConnection raw(server_.port(), false);
  std::string hello;
  ASSERT_TRUE(raw.ReadExactly(kServerHelloBytes, &hello));
  raw.TrySend(RawConnection::Request(proto::STATS, 0, 0, "") + std::string(80, '\0'));
  EXPECT_TRUE(raw.ClosedByPeer());
  RawConnection http(server_.port(), false);
  http.TrySend("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(60, ' '));
  ASSERT_TRUE(http.ReadExactly(kServerHelloBytes, &hello));  // the server spoke first
  EXPECT_TRUE(http.ClosedByPeer());

  // A PsClient without the secret fails with a message that says what to fix.
  ClientOptions options;
  options.servers = {server_.address()};
  options.secret.set_tls(tls_.context);
  std::unique_ptr<PsClient> client;
  st = PsClient::Connect(options, &client);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("--secret_file"), std::string::npos) << st.message();

  // The holders of the secret are served; the refusals are counted.
  EXPECT_EQ(PullOne(testing::TestKey(1, 1)).size(), 4u);
  EXPECT_GE(Stats().Value("pepnet_ps_refused_total", {{"reason", "handshake"}}), 3u);
}

TEST_P(ShardSecurityTest, TheSecretFileAndTheHostAreCheckedAtStart) {
  auto refused = [&](std::vector<std::string> flags, const std::string& want) {
    std::vector<std::string> argv = {testing::BinDir() + "/pepnet_ps", "--port=0",
                                     "--table_config=" + config_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::string output;
    EXPECT_EQ(testing::RunCommand(argv, dir_, &output), 2) << output;  // a usage error
    EXPECT_NE(output.find(want), std::string::npos) << output;
  };
  const std::string readable = testing::WriteSecretFile(dir_, "readable");
  chmod(readable.c_str(), 0644);
  refused({"--secret_file=" + readable}, "readable");
  const std::string shorter = testing::WriteSecretFile(dir_, "short", "tiny");
  refused({"--secret_file=" + shorter}, "a secret needs 16 at least");
  refused({"--host=0.0.0.0"}, "--secret_file");

  // Without --host a shard listens on loopback, and says so when it has no secret.
  Subprocess p;
  const std::string port_file = dir_.File("default.port"), log = dir_.File("default.log");
  ASSERT_TRUE(p.Start({testing::BinDir() + "/pepnet_ps", "--port=0", "--port_file=" + port_file,
                       "--table_config=" + config_},
                      log)
                  .ok());
  uint16_t port = 0;
  ASSERT_TRUE(WaitForPortFile(port_file, 20000, &p, &port).ok());
  EXPECT_TRUE(testing::LogEventually(log, "serving on 127.0.0.1:" + std::to_string(port)));
  EXPECT_TRUE(testing::LogEventually(log, "no --secret_file: serving loopback only"));
  p.Signal(SIGTERM);
  int code = -1;
  ASSERT_TRUE(p.Wait(20000, &code).ok());
  EXPECT_EQ(code, 0);
}

TEST_P(ShardSecurityTest, PassRequestsComeOnlyFromTheCoordinatorInProtocolOrder) {
  StartServer();
  auto tool = Client(PeerRole::kTool);
  auto worker = Client(PeerRole::kWorker);
  Status st = tool->BeginPass(4294967295u);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("comes only from the coordinator"), std::string::npos)
      << st.message();
  EXPECT_FALSE(worker->BeginPass(1).ok());
  std::vector<proto::PassEndReply> ends;
  EXPECT_FALSE(worker->EndPass(1, &ends).ok());
  EXPECT_EQ(Stats().Value("pepnet_ps_refused_total", {{"reason", "privileged"}}), 3u);
  EXPECT_TRUE(
      testing::LogEventually(server_.log_path(), "BEGIN_PASS pass 4294967295 from 127.0.0.1:"));

  // The coordinator itself cannot jump ahead or begin twice.
  auto coordinator = Client(PeerRole::kCoordinator);
  st = coordinator->BeginPass(4294967295u);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("the next pass is 1"), std::string::npos) << st.message();
  ASSERT_TRUE(coordinator->BeginPass(1).ok());
  EXPECT_FALSE(coordinator->BeginPass(2).ok()) << "pass 1 has not ended";
  ASSERT_TRUE(coordinator->EndPass(1, &ends).ok());
  EXPECT_TRUE(coordinator->BeginPass(2).ok());
  EXPECT_TRUE(testing::LogEventually(server_.log_path(), "(coordinator)"));
}

TEST_P(ShardSecurityTest, ExportsAreWrittenOnlyInsideTheExportDir) {
  StartServer();
  // The old request named a path: refused whoever sends it, nothing written.
  RawConnection c(server_.port(), true, secret_, PeerRole::kCoordinator);
  ASSERT_TRUE(c.handshake_ok());
  proto::RequestHeader h;
  h.set_type(proto::EXPORT_ROWS);
  h.set_export_path(dir_.File("export") + "/../escaped.bin");
  h.set_export_all(true);
  h.set_export_version(1);
  EXPECT_NE(RequestError(&c, h).find("writes only inside its --export_dir"), std::string::npos);
  EXPECT_FALSE(Exists(dir_.File("escaped.bin")));

  // Through the protocol: into the version's folder, under a name the shard derives.
  PullOne(testing::TestKey(1, 5));
  auto coordinator = Client(PeerRole::kCoordinator);
  std::vector<std::string> paths;
  std::vector<proto::ExportReply> replies;
  Status st = testing::ExportShardRows(coordinator.get(), dir_.File("export"), 7, 0, true, &paths,
                                       &replies);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(paths[0], dir_.File("export") + "/v-00000007.tmp/rows-0.bin");
  EXPECT_TRUE(Exists(paths[0]));
  EXPECT_EQ(replies[0].rows(), 1u);
  EXPECT_TRUE(testing::LogEventually(server_.log_path(), "EXPORT_ROWS pass 0 version 7 (base)"));

  // A tool may not export.
  auto tool = Client(PeerRole::kTool);
  st = tool->ExportRows(0, true, 7, &replies);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("comes only from the coordinator"), std::string::npos)
      << st.message();
  EXPECT_EQ(Stats().Value("pepnet_ps_refused_total", {{"reason", "privileged"}}), 1u);
}

TEST_P(ShardSecurityTest, ExportsNeedAnExportDir) {
  std::vector<std::string> flags = {"--secret_file=" + secret_path_};
  flags.insert(flags.end(), tls_.flags.begin(), tls_.flags.end());
  Status st = server_.Start(dir_, config_, 0, 1, flags);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto coordinator = Client(PeerRole::kCoordinator);
  ASSERT_NE(coordinator, nullptr);
  std::vector<proto::ExportReply> replies;
  st = coordinator->ExportRows(0, true, 1, &replies);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("has no --export_dir"), std::string::npos) << st.message();
}

TEST_P(ShardSecurityTest, NonFiniteAndHugeNumbersAreRefusedPerReason) {
  StartServer({"--max_abs_gradient=1000"});
  const uint64_t key = testing::TestKey(1, 9);
  const std::vector<float> before = PullOne(key);
  auto client = Client(PeerRole::kWorker);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto push = [&](std::vector<float> grad, float show, float click) {
    return client->Wait(client->Push(&key, 1, grad.data(), &show, &click));
  };
  Status st = push({0, nan, 0, 0}, 1, 0);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("must be finite"), std::string::npos) << st.message();
  st = push({-1e30f, 0, 0, 0}, 1, 0);
  EXPECT_NE(st.message().find("within +-1000"), std::string::npos) << st.message();
  EXPECT_FALSE(push({std::numeric_limits<float>::infinity(), 0, 0, 0}, 1, 0).ok());
  EXPECT_FALSE(push({0, 0, 0, 0}, nan, 0).ok());
  EXPECT_FALSE(push({0, 0, 0, 0}, 1, -5).ok());
  EXPECT_FALSE(push({0, 0, 0, 0}, 1e30f, 0).ok());
  const StatSet s = Stats();
  const std::string rejected = "pepnet_ps_rejected_pushes_total";
  EXPECT_EQ(s.Value(rejected, {{"reason", "nonfinite"}}), 2);
  EXPECT_EQ(s.Value(rejected, {{"reason", "out_of_range"}}), 1);
  EXPECT_EQ(s.Value(rejected, {{"reason", "counts"}}), 3);
  // Nothing of a refused push reached the row, and honest pushes go on.
  EXPECT_EQ(PullOne(key), before);
  ASSERT_TRUE(push({999, -999, 0.5f, 0}, 1, 1).ok());
  for (float w : PullOne(key)) EXPECT_TRUE(std::isfinite(w));
  EXPECT_NE(PullOne(key), before);
}

TEST_P(ShardSecurityTest, SilentAndSlowPeersAreDroppedAtTheirDeadline) {
  StartServer({"--idle_timeout_ms=1500"});
  // Connected, never answers the hello.
  RawConnection mute(server_.port(), false);
  const auto start = std::chrono::steady_clock::now();
  std::string hello;
  ASSERT_TRUE(mute.ReadExactly(kServerHelloBytes, &hello));
  EXPECT_TRUE(mute.ClosedByPeer());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
  EXPECT_TRUE(testing::LogEventually(
      server_.log_path(), "closing " + Peer(mute) + ": the handshake took over 1000 ms"));

  // Announces an 8 MiB frame and stalls after a few bytes (slow-loris).
  RawConnection loris(server_.port(), true, secret_, PeerRole::kWorker);
  ASSERT_TRUE(loris.handshake_ok());
  const std::string frame =
      RawConnection::Request(proto::PULL, 1 << 20, 0, std::string(8 << 20, '\0'));
  loris.Send(frame.substr(0, 4096));
  proto::ResponseHeader reply;
  EXPECT_FALSE(loris.ReadReply(&reply));
  EXPECT_TRUE(testing::LogEventually(
      server_.log_path(), "closing " + Peer(loris) + ": reading a frame took over 1000 ms"));

  // Authenticated, then silent: closed at the idle timeout, without a warning.
  RawConnection idle(server_.port(), true, secret_, PeerRole::kTool);
  ASSERT_TRUE(idle.handshake_ok());
  EXPECT_TRUE(idle.ClosedByPeer());

  // Asks for megabytes of replies and never reads them.
  RawConnection greedy(server_.port(), true, secret_, PeerRole::kWorker);
  ASSERT_TRUE(greedy.handshake_ok());
  std::vector<uint64_t> keys(65536);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = testing::TestKey(1, i);
  const std::string pull = RawConnection::Request(proto::PULL, keys.size(), 0, Keys(keys));
  for (int i = 0; i < 200 && greedy.TrySend(pull); ++i) {
  }
  EXPECT_TRUE(testing::LogEventually(
      server_.log_path(), "closing " + Peer(greedy) + ": writing a reply took over 1000 ms"));
  EXPECT_GE(Stats().Value("pepnet_ps_refused_total", {{"reason", "deadline"}}), 3u);
}

TEST_P(ShardSecurityTest, StalledBigFramesShareOneBufferBudget) {
  StartServer();
  // 32 MiB of budget; each stalled connection announces 8 MiB and sends a little.
  const std::string frame =
      RawConnection::Request(proto::PULL, 1 << 20, 0, std::string(8 << 20, '\0'));
  std::vector<std::unique_ptr<RawConnection>> stalled;
  for (int i = 0; i < 6; ++i) {
    stalled.push_back(
        std::make_unique<RawConnection>(server_.port(), true, secret_, PeerRole::kWorker));
    ASSERT_TRUE(stalled.back()->handshake_ok());
    stalled.back()->Send(frame.substr(0, 64 << 10));
  }
  EXPECT_TRUE(testing::LogEventually(server_.log_path(), "the server's request buffers are full"));
  // Small requests still fit; the stalled ones are closed at their frame deadline.
  EXPECT_EQ(PullOne(testing::TestKey(1, 3)).size(), 4u);
  for (auto& c : stalled) EXPECT_TRUE(c->ClosedByPeer());
}

TEST_P(ShardSecurityTest, ConnectionLimitsKeepRoomForOperators) {
  StartServer(
      {"--max_connections=8", "--reserved_tool_connections=2", "--max_connections_per_peer=4"});
  // Another host (127.0.0.2) may hold 4 connections, no more.
  std::vector<std::unique_ptr<RawConnection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawConnection>(server_.port(), true, secret_, PeerRole::kWorker,
                                                   "127.0.0.2"));
    ASSERT_TRUE(held.back()->handshake_ok()) << i;
  }
  RawConnection fifth(server_.port(), false, secret_, PeerRole::kWorker, "127.0.0.2");
  Status st = fifth.Handshake(secret_, PeerRole::kWorker);
  EXPECT_EQ(st.code(), Status::kUnavailable) << st.ToString();
  // Workers from here fill what is left but the operators' room.
  for (int i = 0; i < 2; ++i) {
    held.push_back(
        std::make_unique<RawConnection>(server_.port(), true, secret_, PeerRole::kWorker));
    ASSERT_TRUE(held.back()->handshake_ok()) << i;
  }
  RawConnection worker(server_.port(), false);
  EXPECT_EQ(worker.Handshake(secret_, PeerRole::kWorker).code(), Status::kUnavailable);
  // pepnet_ctl still gets in.
  RawConnection ctl(server_.port(), true, secret_, PeerRole::kTool);
  EXPECT_TRUE(ctl.handshake_ok());
  proto::RequestHeader h;
  h.set_type(proto::STATS);
  EXPECT_EQ(RequestError(&ctl, h), "");
  EXPECT_TRUE(testing::LogEventually(server_.log_path(),
                                     "(--max_connections, --max_connections_per_peer)"));
}

TEST_P(ShardSecurityTest, RowsCreatedByPullsStayWithinTheMemoryLimit) {
  StartServer();
  auto client = Client(PeerRole::kWorker);
  std::mt19937_64 rng(7);
  std::vector<uint64_t> keys(16384);
  std::vector<float> values;
  for (int round = 0; round < 40; ++round) {  // 655k random keys, 4x the limit's rows
    for (uint64_t& k : keys) k = MakeFeatureKey(1, rng(), 10);
    ASSERT_TRUE(client->Wait(client->Pull(keys.data(), keys.size(), &values)).ok());
  }
  const StatSet table = Stats();
  EXPECT_LE(table.Value("pepnet_table_max_used_bytes"), kMemoryLimit);
  EXPECT_GT(table.Value("pepnet_table_deleted_rows"), 0);
  EXPECT_GT(table.Value("pepnet_table_created_rows"), 600000);
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, ShardSecurityTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tls" : "Plain";
                         });

}  // namespace
}  // namespace pepnet
