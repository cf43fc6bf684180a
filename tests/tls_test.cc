// Optional TLS (common/tls.h) against real processes: the flags are checked at start, the
// bytes on the wire are ciphertext, every mix of TLS and plain peers and every foreign CA
// is refused with a reason on both ends, the coordinator's channel carries frames both
// ways at once inside TLS, and a whole cluster trains over it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/auth.h"
#include "common/frame_channel.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "common/tls.h"
#include "proto/ps.pb.h"
#include "tests/test_util.h"
#include "tests/tls_util.h"

namespace pepnet {
namespace {

// Relays TCP connections from its own port to `target`, keeping a copy of every byte
// either way: what an eavesdropper on the network sees.
class Tap {
 public:
  explicit Tap(uint16_t target) : target_(target) {
    listen_fd_ = testing::ListenOnLoopback(&port_);
    EXPECT_GE(listen_fd_, 0);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~Tap() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& t : relays_) t.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  std::string seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  void AcceptLoop() {
    while (!stop_) {
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      const int server = testing::ConnectToLoopback(target_);
      if (server < 0) {
        close(client);
        continue;
      }
      relays_.emplace_back([this, client, server] { Relay(client, server); });
    }
  }
  void Relay(int a, int b) {
    char buf[65536];
    for (;;) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (poll(p, 2, 200) < 0) break;
      if (stop_) break;
      bool closed = false;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          closed = true;
          break;
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          seen_.append(buf, static_cast<size_t>(n));
        }
        const int to = i == 0 ? b : a;
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = send(to, buf + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
          if (w <= 0) {
            closed = true;
            break;
          }
          done += w;
        }
      }
      if (closed) break;
    }
    close(a);
    close(b);
  }

  const uint16_t target_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> relays_;  // touched by the acceptor thread only, until ~Tap
  std::mutex mu_;
  std::string seen_;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_path_ = testing::WriteSecretFile(dir_);
    ASSERT_TRUE(Secret::Load(secret_path_, &secret_).ok());
    config_ = dir_.File("t.pbtxt");
    testing::WriteFile(config_, "slot { id: 1 dim: 4 }\n");
    tls_ = testing::MakeTestTls(dir_);
    tls_secret_ = secret_;
    tls_secret_.set_tls(tls_.context);
  }

  void StartServer(bool tls, testing::ServerProcess* server) {
    std::vector<std::string> flags = {"--secret_file=" + secret_path_,
                                      "--handshake_timeout_ms=2000"};
    if (tls) flags.insert(flags.end(), tls_.flags.begin(), tls_.flags.end());
    Status st = server->Start(dir_, config_, 0, 1, flags);
    ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(server->log_path());
  }

  Status Connect(const Secret& secret, uint16_t port, std::unique_ptr<PsClient>* client,
                 int connect_timeout_ms = 3000) {
    ClientOptions options;
    options.servers = {"127.0.0.1:" + std::to_string(port)};
    options.secret = secret;
    options.connections_per_shard = 1;
    options.connect_timeout_ms = connect_timeout_ms;
    return PsClient::Connect(options, client);
  }

  uint64_t AuthFailures(const testing::ServerProcess& server) {
    std::unique_ptr<PsClient> client;
    Status st = Connect(tls_secret_, server.port(), &client);
    EXPECT_TRUE(st.ok()) << st.ToString();
    std::vector<proto::ServerStats> stats;
    if (client) {
      EXPECT_TRUE(client->Stats(&stats).ok());
    }
    return stats.empty()
               ? 0
               : StatValue(stats[0], "pepnet_ps_refused_total", {{"reason", "handshake"}});
  }

  testing::TempDir dir_;
  testing::TestTls tls_;
  std::string secret_path_, config_;
  Secret secret_, tls_secret_;
  testing::ServerProcess tls_server_, plain_server_;
};

TEST_F(TlsTest, BadTlsFlagsStopAProcessAtStartNamingTheFile) {
  auto refused = [&](std::vector<std::string> flags, const std::string& want) {
    std::vector<std::string> argv = {testing::BinDir() + "/pepnet_ps", "--port=0",
                                     "--table_config=" + config_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    std::string output;
    EXPECT_EQ(testing::RunCommand(argv, dir_, &output), 2) << output;
    EXPECT_NE(output.find(want), std::string::npos) << output;
  };
  const std::string secret = "--secret_file=" + secret_path_;
  refused({secret, tls_.flags[0]}, "--tls_key is missing");
  refused(tls_.flags, "need --secret_file");
  const std::string readable = dir_.File("readable-key.pem");
  testing::WriteFile(readable, testing::ReadFile(tls_.options.key_file));
  chmod(readable.c_str(), 0644);
  refused({secret, tls_.flags[0], "--tls_key=" + readable, tls_.flags[2]},
          "--tls_key " + readable + " may be read by group or others");
  const testing::TestTls other = testing::MakeTestTls(dir_, "other");
  refused({secret, tls_.flags[0], "--tls_key=" + other.options.key_file, tls_.flags[2]},
          "is not the key of --tls_cert");
  const std::string garbage = dir_.File("garbage.pem");
  testing::WriteFile(garbage, "not a certificate\n");
  refused({secret, "--tls_cert=" + garbage, tls_.flags[1], tls_.flags[2]}, "--tls_cert " + garbage);
  refused({secret, tls_.flags[0], tls_.flags[1], "--tls_ca=" + dir_.File("missing.pem")},
          "--tls_ca " + dir_.File("missing.pem"));
}

TEST_F(TlsTest, TlsKeysWritesPrivateKeysAndNeverOverwrites) {
  struct stat st;
  ASSERT_EQ(stat(tls_.options.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat((dir_.File("tls") + "/ca-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string cert_before = testing::ReadFile(tls_.options.cert_file);
  std::string output;
  EXPECT_EQ(testing::RunCommand(
                {testing::BinDir() + "/pepnet_ctl", "tls_keys", "--out_dir=" + dir_.File("tls")},
                dir_, &output),
            1);
  EXPECT_NE(output.find("never overwritten"), std::string::npos) << output;
  EXPECT_EQ(testing::ReadFile(tls_.options.cert_file), cert_before);
}

TEST_F(TlsTest, AnEavesdropperSeesOnlyCiphertext) {
  // The same pull and push, through a tap, plain and then inside TLS. Over plain TCP the
  // tap reads the handshake's magic and the keys; inside TLS neither.
  const uint64_t key = testing::TestKey(1, 0x5eed5eedULL);
  const std::string key_bytes(reinterpret_cast<const char*>(&key), sizeof(key));
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    testing::ServerProcess& server = tls ? tls_server_ : plain_server_;
    StartServer(tls, &server);
    Tap tap(server.port());
    std::unique_ptr<PsClient> client;
    Status st = Connect(tls ? tls_secret_ : secret_, tap.port(), &client);
    ASSERT_TRUE(st.ok()) << st.ToString();
    std::vector<float> before, after;
    ASSERT_TRUE(client->Wait(client->Pull(&key, 1, &before)).ok());
    const std::vector<float> grad(4, 0.5f);
    const float show = 1, click = 0;
    ASSERT_TRUE(client->Wait(client->Push(&key, 1, grad.data(), &show, &click)).ok());
    ASSERT_TRUE(client->Wait(client->Pull(&key, 1, &after)).ok());
    ASSERT_EQ(after.size(), 4u);
    EXPECT_LT(after[0], before[0]);  // AdaGrad stepped against the gradient
    client.reset();
    const std::string seen = tap.seen();
    EXPECT_GT(seen.size(), 200u);
    EXPECT_EQ(seen.find("PEPAUTH1") != std::string::npos, !tls);
    EXPECT_EQ(seen.find(key_bytes) != std::string::npos, !tls);
  }
}

TEST_F(TlsTest, RepliesCutByATimeoutNeverLandInTheCallersMemory) {
  // Asio's TLS stream decrypts a reply when its read completes, which can be after the
  // reply timeout failed the pull. The caller frees its buffer at once; under ASan a late
  // write into it is a use-after-free, and the test fails.
  StartServer(/*tls=*/true, &tls_server_);
  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < (1 << 20); ++i) keys.push_back(testing::TestKey(1, i));
  ClientOptions options;
  options.servers = {tls_server_.address()};
  options.secret = tls_secret_;
  options.connections_per_shard = 1;
  options.timeout_ms = 15;  // a 16 MiB reply takes longer than this
  std::unique_ptr<PsClient> hasty;
  ASSERT_TRUE(PsClient::Connect(options, &hasty).ok());
  int timeouts = 0;
  for (int round = 0; round < 40 && timeouts < 5; ++round) {
    auto values = std::make_unique<std::vector<float>>();
    Status st = hasty->Wait(hasty->Pull(keys.data(), keys.size(), values.get()));
    values.reset();
    if (!st.ok()) {
      EXPECT_EQ(st.code(), Status::kDeadlineExceeded) << st.ToString();
      ++timeouts;
    }
  }
  EXPECT_GT(timeouts, 0);
  // The shard still serves, whole rows.
  std::unique_ptr<PsClient> patient;
  ASSERT_TRUE(Connect(tls_secret_, tls_server_.port(), &patient).ok());
  std::vector<float> values;
  ASSERT_TRUE(patient->Wait(patient->Pull(keys.data(), keys.size(), &values)).ok());
  EXPECT_EQ(values.size(), 4 * keys.size());
}

TEST_F(TlsTest, MixedAndForeignPeersAreRefusedWithAReasonOnBothEnds) {
  StartServer(/*tls=*/true, &tls_server_);
  // Plain TCP against the TLS server: the client waits for a hello that never comes,
  // until the server's handshake deadline (2 s, well before the client's) closes it.
  std::unique_ptr<PsClient> client;
  Status st = Connect(secret_, tls_server_.port(), &client, 30000);
  EXPECT_EQ(st.code(), Status::kUnavailable);
  EXPECT_NE(st.message().find("run TLS while this end does not?"), std::string::npos)
      << st.message();
  EXPECT_TRUE(testing::LogEventually(tls_server_.log_path(), "the TLS handshake took over"));

  // A certificate of another CA: verification fails on both ends.
  const testing::TestTls other = testing::MakeTestTls(dir_, "other");
  Secret foreign = secret_;
  foreign.set_tls(other.context);
  st = Connect(foreign, tls_server_.port(), &client);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);  // a misconfiguration: no retry helps
  EXPECT_NE(st.message().find("certificate verify failed"), std::string::npos) << st.message();
  EXPECT_TRUE(testing::LogEventually(tls_server_.log_path(), "unknown ca"));

  // The cluster's certificate but another secret: TLS is not admission.
  Secret wrong = Secret::FromBytes("another cluster's secret, not ours");
  wrong.set_tls(tls_.context);
  st = Connect(wrong, tls_server_.port(), &client);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("refused this end's proof"), std::string::npos) << st.message();
  EXPECT_GE(AuthFailures(tls_server_), 2u);  // the silent plain peer counts as a timeout

  // TLS against a plain server: refused by the client's TLS, named by the server.
  StartServer(/*tls=*/false, &plain_server_);
  st = Connect(tls_secret_, plain_server_.port(), &client);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("TLS handshake failed"), std::string::npos) << st.message();
  EXPECT_TRUE(testing::LogEventually(plain_server_.log_path(),
                                     "the peer speaks TLS and this end does not"));
}

TEST_F(TlsTest, TheCoordinatorChannelCarriesFramesBothWaysAtOnce) {
  std::unique_ptr<FrameListener> listener;
  ASSERT_TRUE(FrameListener::Listen("127.0.0.1", 0, &listener).ok());
  constexpr int kFrames = 64;
  // 64 MiB each way, more than the socket buffers hold: sends block while the other
  // thread of the same end receives.
  const std::string big(1 << 20, 'x');
  std::string server_error;
  std::thread server([&] {
    std::unique_ptr<FrameChannel> channel;
    Status st = listener->Accept(&channel, 10000);
    PeerRole role;
    if (st.ok()) st = channel->AcceptHandshake(tls_secret_, 5000, &role);
    if (!st.ok()) {
      server_error = st.ToString();
      return;
    }
    // Echo every frame back while this thread's own frames go out from another.
    std::thread sender([&] {
      for (int i = 0; i < kFrames; ++i)
        channel->Send("s" + std::to_string(i), big.data(), big.size());
    });
    std::string header;
    PayloadBuffer payload;
    for (int i = 0; i < kFrames; ++i) {
      st = channel->Receive(&header, &payload, 20000);
      if (!st.ok() || header != "c" + std::to_string(i) || payload.size() != big.size()) {
        server_error = "frame " + std::to_string(i) + ": " + st.ToString() + " " + header;
        break;
      }
    }
    sender.join();
  });
  std::unique_ptr<FrameChannel> channel;
  Status st = FrameChannel::Connect("127.0.0.1", listener->port(), 5000, tls_secret_,
                                    PeerRole::kWorker, &channel);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (st.ok()) {
    std::thread sender([&] {
      for (int i = 0; i < kFrames; ++i) {
        if (!channel->Send("c" + std::to_string(i), big.data(), big.size()).ok()) break;
      }
    });
    std::string header;
    PayloadBuffer payload;
    for (int i = 0; i < kFrames; ++i) {
      st = channel->Receive(&header, &payload, 20000);
      const bool whole = st.ok() && header == "s" + std::to_string(i) &&
                         std::string(payload.data(), payload.size()) == big;
      EXPECT_TRUE(whole) << "frame " << i << ": " << st.ToString() << " " << header;
      if (!whole) {
        channel->Close();  // unblocks both threads of either end
        break;
      }
    }
    sender.join();
  }
  server.join();
  EXPECT_EQ(server_error, "");

  // A plain worker at a TLS coordinator, and a TLS worker at a plain one: both refused,
  // each end saying why.
  for (bool tls_listener : {true, false}) {
    SCOPED_TRACE(tls_listener ? "TLS listener" : "plain listener");
    Status accepted;
    std::thread acceptor([&] {
      std::unique_ptr<FrameChannel> c;
      accepted = listener->Accept(&c, 10000);
      PeerRole role;
      if (accepted.ok())
        accepted = c->AcceptHandshake(tls_listener ? tls_secret_ : secret_, 2000, &role);
    });
    st = FrameChannel::Connect("127.0.0.1", listener->port(), 2000,
                               tls_listener ? secret_ : tls_secret_, PeerRole::kWorker, &channel);
    acceptor.join();
    EXPECT_FALSE(st.ok());
    EXPECT_FALSE(accepted.ok());
    if (!tls_listener) {
      EXPECT_NE(accepted.message().find("the peer speaks TLS"), std::string::npos)
          << accepted.ToString();
      EXPECT_NE(st.message().find("TLS"), std::string::npos) << st.ToString();
    }
  }
}

TEST_F(TlsTest, AClusterTrainsAndPublishesInsideTls) {
  testing::GenerateData(dir_, dir_.File("data"), 0, 2, 2000);
  setenv("PEPNET_BIN", testing::BinDir().c_str(), 1);
  std::string output;
  const int code =
      testing::RunCommand({"/bin/bash", testing::SourceDir() + "/deploy/local/run_cluster.sh",
                           "--config=" + testing::SourceDir() + "/configs/demo.pbtxt",
                           "--pass_root=" + dir_.File("data"), "--servers=2", "--workers=2",
                           "--idle_timeout=2", "--run_dir=" + dir_.File("run"), "--tls"},
                          dir_, &output);
  ASSERT_EQ(code, 0) << output << testing::ReadFile(dir_.File("run/coord.log"));
  // The summary line scripts read, for the last pass.
  bool published = false;
  for (const std::string& line : testing::ReadLines(dir_.File("run/coord.out"))) {
    published |=
        line.rfind("pass 2 (", 0) == 0 && line.find("published version 2") != std::string::npos;
  }
  EXPECT_TRUE(published) << testing::ReadFile(dir_.File("run/coord.out"));
  for (const std::string log : {"ps-0.log", "ps-1.log"}) {
    EXPECT_NE(testing::ReadFile(dir_.File("run/" + log)).find("peers authenticated, TLS"),
              std::string::npos)
        << log;
  }
  EXPECT_NE(testing::ReadFile(dir_.File("run/coord.log")).find("peers authenticated, TLS"),
            std::string::npos);
}

}  // namespace
}  // namespace pepnet
