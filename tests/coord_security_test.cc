// Attacks on a live pepnet_coord started with a secret: stray connections before the
// workers join are dropped and logged while the run goes on, and a worker that sends a
// non-finite dense gradient (sent to the shards, which sum the dense steps) fails the run
// by name before anything of the pass is committed or published. Both run twice: over plain TCP and
// inside TLS (the attacker then holds a certificate of the cluster).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>

#include "common/auth.h"
#include "common/frame_channel.h"
#include "common/ps_client.h"
#include "proto/cluster.pb.h"
#include "proto/model_config.pb.h"
#include "ps/table_config.h"
#include "publish/manifest.h"
#include "tests/raw_connection.h"
#include "tests/test_util.h"
#include "tests/tls_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

using testing::RawConnection;

class CoordSecurityTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    config_path_ = testing::SourceDir() + "/configs/demo.pbtxt";
    ASSERT_TRUE(LoadModelConfigFile(config_path_, &config_).ok());
    secret_path_ = testing::WriteSecretFile(dir_);
    ASSERT_TRUE(Secret::Load(secret_path_, &secret_).ok());
    auth_ = {"--secret_file=" + secret_path_};
    if (GetParam()) {
      tls_ = testing::MakeTestTls(dir_);
      secret_.set_tls(tls_.context);
      RawConnection::UseTls(tls_.context.get());
      auth_.insert(auth_.end(), tls_.flags.begin(), tls_.flags.end());
    }
    std::vector<std::string> shard_flags = {"--export_dir=" + dir_.File("model")};
    shard_flags.insert(shard_flags.end(), auth_.begin(), auth_.end());
    Status st = testing::StartShards(dir_, FormatTableConfig(TableOptionsFor(config_, 1)), 2,
                                     servers_, shard_flags);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  void StartCoordinator(int num_workers) {
    const std::string port_file = dir_.File("coord.port");
    std::vector<std::string> coord = {testing::BinDir() + "/pepnet_coord",
                                      "--num_workers=" + std::to_string(num_workers),
                                      "--servers=" + testing::ServerList(servers_, 2),
                                      "--config=" + config_path_,
                                      "--publish_dir=" + dir_.File("model"),
                                      "--port=0",
                                      "--port_file=" + port_file,
                                      "--step_timeout_s=60"};
    coord.insert(coord.end(), auth_.begin(), auth_.end());
    Status st = coord_.Start(coord, coord_log());
    ASSERT_TRUE(st.ok()) << st.ToString();
    st = WaitForPortFile(port_file, 20000, &coord_, &port_);
    ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(coord_log());
  }

  void TearDown() override { RawConnection::UseTls(nullptr); }

  std::string coord_log() const { return dir_.File("coord.log"); }

  // Worker 0 of `num_workers`, a real pepnet_worker, training the pass folder.
  void StartWorker(int num_workers, const std::string& pass_dir, Subprocess* worker) {
    std::vector<std::string> argv = {testing::BinDir() + "/pepnet_worker",
                                     "--config=" + config_path_,
                                     "--servers=" + testing::ServerList(servers_, 2),
                                     "--coordinator=127.0.0.1:" + std::to_string(port_),
                                     "--worker_index=0",
                                     "--num_workers=" + std::to_string(num_workers),
                                     "--threads=1",
                                     "--passes=" + pass_dir};
    argv.insert(argv.end(), auth_.begin(), auth_.end());
    ASSERT_TRUE(worker->Start(argv, dir_.File("worker.log")).ok());
  }

  int WaitCoordinator() {
    int code = -1;
    Status st = coord_.Wait(120000, &code);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return code;
  }

  testing::TempDir dir_;
  testing::TestTls tls_;           // empty over plain TCP
  std::vector<std::string> auth_;  // --secret_file and the TLS flags, for every process
  std::string config_path_, secret_path_;
  proto::ModelConfig config_;
  Secret secret_;
  testing::ServerProcess servers_[2];
  Subprocess coord_;
  uint16_t port_ = 0;
};

TEST_P(CoordSecurityTest, StrayConnectionsBeforeTheWorkersAreDroppedAndTheRunGoesOn) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(1));
  // An HTTP request, a peer with another secret, a tool, and a worker whose first message
  // is garbage: each is dropped with a line naming it.
  RawConnection http(port_, false);
  http.TrySend("GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n" + std::string(64, ' '));
  EXPECT_TRUE(http.ClosedByPeer());
  RawConnection wrong(port_, false);
  EXPECT_FALSE(
      wrong.Handshake(Secret::FromBytes("another cluster's secret bytes"), PeerRole::kWorker).ok());
  RawConnection tool(port_, true, secret_, PeerRole::kTool);
  EXPECT_TRUE(tool.ClosedByPeer());
  RawConnection garbage(port_, true, secret_, PeerRole::kWorker);
  ASSERT_TRUE(garbage.handshake_ok());
  garbage.Send(RawConnection::Frame("not a hello", ""));
  EXPECT_TRUE(garbage.ClosedByPeer());
  for (const RawConnection* c : {&http, &wrong, &tool, &garbage}) {
    EXPECT_TRUE(testing::LogEventually(
        coord_log(), "dropping a connection from 127.0.0.1:" + std::to_string(c->local_port())))
        << testing::ReadFile(coord_log());
  }
  EXPECT_TRUE(testing::LogEventually(coord_log(), "declared the role tool, not worker"));

  // The real worker joins and the run completes.
  const std::string data = dir_.File("data");
  testing::GenerateData(dir_, data, 1, 1, 2000);
  Subprocess worker;
  ASSERT_NO_FATAL_FAILURE(StartWorker(1, data + "/pass-00001", &worker));
  EXPECT_EQ(WaitCoordinator(), 0) << testing::ReadFile(coord_log());
  int code = -1;
  ASSERT_TRUE(worker.Wait(60000, &code).ok());
  EXPECT_EQ(code, 0) << testing::ReadFile(dir_.File("worker.log"));
  std::vector<std::string> versions;
  ASSERT_TRUE(ListVersions(dir_.File("model"), &versions).ok());
  EXPECT_EQ(versions.size(), 1u);
}

// A worker (it holds the secret: trusted, but possibly broken) sends a NaN in its dense
// gradient: summed, it would poison every replica and the published model. The shards
// refuse the step naming the worker, the real worker of the step gives up with that
// reason, and the coordinator fails the run before anything of the pass is committed.
TEST_P(CoordSecurityTest, ANonFiniteDenseGradientFailsTheRunNamingTheWorker) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(2));
  const std::string data = dir_.File("data");
  testing::GenerateData(dir_, data, 1, 1, 2000);
  const std::string pass_dir = data + "/pass-00001";
  Subprocess worker;
  ASSERT_NO_FATAL_FAILURE(StartWorker(2, pass_dir, &worker));

  // Worker 1 is this test: it joins like a worker, then sends a NaN to the shards.
  std::unique_ptr<FrameChannel> channel;
  Status st =
      FrameChannel::Connect("127.0.0.1", port_, 20000, secret_, PeerRole::kWorker, &channel);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto send = [&](const proto::CoordMessage& m) {
    ASSERT_TRUE(channel->Send(m.SerializeAsString(), nullptr, 0).ok());
  };
  auto receive = [&](proto::CoordMessage* m) {
    std::string header;
    PayloadBuffer payload;
    Status st = channel->Receive(&header, &payload, 60000, 1 << 30);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(m->ParseFromString(header));
  };
  proto::CoordMessage hello;
  hello.set_type(proto::COORD_HELLO);
  hello.set_worker_index(1);
  hello.set_num_workers(2);
  hello.set_model_fingerprint(ModelConfigFingerprint(config_));
  send(hello);
  proto::CoordMessage welcome;
  receive(&welcome);
  ASSERT_EQ(welcome.type(), proto::COORD_HELLO);
  proto::CoordMessage begin;
  begin.set_type(proto::COORD_BEGIN_PASS);
  begin.set_worker_index(1);
  begin.set_pass_name(pass_dir);
  send(begin);
  proto::CoordMessage reply;
  receive(&reply);
  ASSERT_EQ(reply.pass(), 1u) << reply.error();

  ClientOptions options;
  options.servers = {servers_[0].address(), servers_[1].address()};
  options.secret = secret_;
  options.role = PeerRole::kWorker;
  std::unique_ptr<PsClient> client;
  st = PsClient::Connect(options, &client);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::vector<float> gradient(welcome.num_dense(), 0.0f);
  gradient[gradient.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  DenseStepInfo step;
  step.pass = 1;
  step.worker_index = 1;
  step.num_workers = 2;
  step.has_data = true;
  uint32_t with_data = 0;
  st = client->DenseSum(step, &gradient, &with_data, nullptr);
  const std::string named = "worker 1 (127.0.0.1:";
  const std::string what = "sent a non-finite dense gradient in pass 1 step 0 (value " +
                           std::to_string(gradient.size() / 2) + " is nan)";
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find(what), std::string::npos) << st.ToString();

  EXPECT_EQ(WaitCoordinator(), 1);
  int code = -1;
  ASSERT_TRUE(worker.Wait(60000, &code).ok());
  EXPECT_EQ(code, 1);
  const std::string log = testing::ReadFile(coord_log());
  EXPECT_NE(log.find("worker 0 (127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find(named), std::string::npos) << log;
  EXPECT_NE(log.find(what), std::string::npos) << log;
  std::vector<std::string> versions;
  ListVersions(dir_.File("model"), &versions);  // the folder may not even exist
  EXPECT_TRUE(versions.empty()) << "a poisoned pass was published";
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, CoordSecurityTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tls" : "Plain";
                         });

}  // namespace
}  // namespace pepnet
