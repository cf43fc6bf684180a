// Load under attack: 8 authenticated clients pull and push against 2 live shards with a
// memory limit (so eviction runs) for 60 s, while a hostile peer plays every attack of
// docs/security.md at the same time. The honest clients must see no error and the
// tables must stay within their limit. Prints the honest requests' latency percentiles
// (docs/benchmarks.md, "Under attack").
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/auth.h"
#include "common/hash.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "tests/raw_connection.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

using testing::RawConnection;
using Clock = std::chrono::steady_clock;

constexpr int kHonestClients = 8;
constexpr int kSeconds = 60;
constexpr uint64_t kMemoryLimit = 48ull << 20;  // per shard
constexpr int kDim = 16;
constexpr size_t kKeysPerRequest = 512;
constexpr uint64_t kKeySpace = 4000000;  // rows of ~100 B: several times the limits
// Connections the hostile peer keeps open at once (stalled, silent or never reading): under
// the default open-file limit of the test and of the servers.
constexpr size_t kMaxHeld = 300;

std::string Bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

uint64_t ReadVmHwmKb(int pid) {
  const std::string status = testing::ReadFile("/proc/" + std::to_string(pid) + "/status");
  const size_t at = status.find("VmHWM:");
  return at == std::string::npos ? 0 : std::strtoull(status.c_str() + at + 6, nullptr, 10);
}

class HostileLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_path_ = testing::WriteSecretFile(dir_);
    ASSERT_TRUE(Secret::Load(secret_path_, &secret_).ok());
    Status st = testing::StartShards(
        dir_, "slot { id: 1 dim: 16 }\n", 2, servers_,
        {"--secret_file=" + secret_path_, "--memory_limit_bytes=" + std::to_string(kMemoryLimit),
         "--export_dir=" + dir_.File("export"), "--handshake_timeout_ms=2000",
         "--frame_timeout_ms=2000", "--write_timeout_ms=2000", "--idle_timeout_ms=5000",
         "--threads=2"});
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  ClientOptions Options(PeerRole role) const {
    ClientOptions options;
    options.servers = {servers_[0].address(), servers_[1].address()};
    options.secret = secret_;
    options.role = role;
    return options;
  }

  // One honest client: pulls a batch of skewed keys, pushes gradients for them, again.
  void Honest(int index, std::vector<double>* latencies_us) {
    std::unique_ptr<PsClient> client;
    Status st = PsClient::Connect(Options(PeerRole::kWorker), &client);
    if (!st.ok()) {
      RecordError("client " + std::to_string(index) + " connect: " + st.ToString());
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++ready_;
    }
    ready_cv_.notify_all();
    std::mt19937_64 rng(index);
    std::vector<uint64_t> keys(kKeysPerRequest);
    std::vector<float> values, grads(kKeysPerRequest * kDim), shows(kKeysPerRequest, 1),
        clicks(kKeysPerRequest);
    while (!stop_.load()) {
      for (size_t i = 0; i < keys.size(); ++i) {
        // Skewed like real traffic: a hot head, a long tail beyond the memory limit.
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        keys[i] = testing::TestKey(1, static_cast<uint64_t>(std::pow(u, 3) * kKeySpace));
        clicks[i] = (rng() & 7) == 0;
      }
      for (float& g : grads) g = std::uniform_real_distribution<float>(-0.01f, 0.01f)(rng);
      auto start = Clock::now();
      st = client->Wait(client->Pull(keys.data(), keys.size(), &values));
      latencies_us->push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      if (!st.ok()) {
        RecordError("client " + std::to_string(index) + " pull: " + st.ToString());
        return;
      }
      start = Clock::now();
      st = client->Wait(
          client->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()));
      latencies_us->push_back(
          std::chrono::duration<double, std::micro>(Clock::now() - start).count());
      if (!st.ok()) {
        RecordError("client " + std::to_string(index) + " push: " + st.ToString());
        return;
      }
      requests_.fetch_add(2);
    }
  }

  // Every attack, in turn, until the run ends; each runs from 127.0.0.2 so the limits
  // per peer apply to it and not to the honest clients.
  void Hostile() {
    const char* from = "127.0.0.2";
    const Secret wrong = Secret::FromBytes("this is not the cluster's secret");
    std::mt19937_64 rng(99);
    std::vector<std::unique_ptr<RawConnection>> held;  // stalled or never-reading peers
    std::vector<Clock::time_point> held_since;
    uint64_t round = 0;
    while (!stop_.load()) {
      const uint16_t port = servers_[round % 2].port();
      ++round;
      // Peers without the secret, and strangers speaking other protocols.
      { RawConnection c(port, true, wrong, PeerRole::kCoordinator, from); }
      { RawConnection c(port, true, Secret(), PeerRole::kTool, from); }
      {
        RawConnection c(port, false, Secret(), PeerRole::kTool, from);
        c.TrySend("GET /metrics HTTP/1.1\r\nHost: shard\r\n\r\n" + std::string(64, ' '));
      }
      // A flood of handshakes that never finish.
      for (int i = 0; i < 16 && held.size() < kMaxHeld; ++i) {
        held.push_back(
            std::make_unique<RawConnection>(port, false, Secret(), PeerRole::kTool, from));
        held_since.push_back(Clock::now());
      }
      // Announces a 64 MiB frame and stalls (slow-loris).
      auto loris = std::make_unique<RawConnection>(port, true, secret_, PeerRole::kWorker, from);
      proto::RequestHeader big;
      big.set_type(proto::PULL);
      big.set_num_keys(1 << 23);
      loris->TrySend(RawConnection::PartialFrame(big.SerializeAsString(), 64 << 20, 4096));
      held.push_back(std::move(loris));
      held_since.push_back(Clock::now());
      // Asks for megabytes of replies and never reads them.
      auto greedy = std::make_unique<RawConnection>(port, true, secret_, PeerRole::kWorker, from);
      std::vector<uint64_t> keys(32768);
      for (uint64_t& k : keys) k = testing::TestKey(1, rng() % kKeySpace);
      const std::string pull =
          RawConnection::Request(proto::PULL, keys.size(), 0, Bytes(keys.data(), 8 * keys.size()));
      for (int i = 0; i < 4; ++i) greedy->TrySend(pull);
      held.push_back(std::move(greedy));
      held_since.push_back(Clock::now());
      // Poisoned numbers and privileged requests, over an authenticated session.
      RawConnection c(port, true, secret_, PeerRole::kTool, from);
      const uint64_t key = testing::TestKey(1, rng() % 1000);
      for (float bad : {std::numeric_limits<float>::quiet_NaN(), -1e30f,
                        std::numeric_limits<float>::infinity()}) {
        std::vector<float> push(kDim, bad);
        push.push_back(1);  // show
        push.push_back(0);  // click
        c.TrySend(RawConnection::Request(proto::PUSH, 1, kDim,
                                         Bytes(&key, 8) + Bytes(push.data(), 4 * push.size())));
      }
      proto::RequestHeader begin;
      begin.set_type(proto::BEGIN_PASS);
      begin.set_pass(4294967295u);
      c.TrySend(RawConnection::Frame(begin.SerializeAsString(), ""));
      proto::RequestHeader export_rows;
      export_rows.set_type(proto::EXPORT_ROWS);
      export_rows.set_export_path(dir_.File("export") + "/../../escaped");
      c.TrySend(RawConnection::Frame(export_rows.SerializeAsString(), ""));
      proto::ResponseHeader reply;
      for (int i = 0; i < 5; ++i) {
        if (!c.ReadReply(&reply) || reply.code() == proto::OK) hostile_accepted_.fetch_add(1);
      }
      // Pulls of random keys, to fill the table with rows nobody wants.
      std::vector<uint64_t> junk(16384);
      for (uint64_t& k : junk) k = MakeFeatureKey(1, rng(), 10);
      c.TrySend(
          RawConnection::Request(proto::PULL, junk.size(), 0, Bytes(junk.data(), 8 * junk.size())));
      c.ReadReply(&reply);
      // Let the held connections go once the server must have dropped them.
      for (size_t i = 0; i < held.size();) {
        if (Clock::now() - held_since[i] > std::chrono::seconds(4)) {
          held.erase(held.begin() + i);
          held_since.erase(held_since.begin() + i);
        } else {
          ++i;
        }
      }
      hostile_rounds_.fetch_add(1);
    }
  }

  void RecordError(const std::string& error) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      errors_.push_back(error);
    }
    ready_cv_.notify_all();
  }

  testing::TempDir dir_;
  std::string secret_path_;
  Secret secret_;
  testing::ServerProcess servers_[2];
  std::atomic<bool> stop_{false};
  int ready_ = 0;  // honest clients connected; under mu_
  std::atomic<uint64_t> requests_{0}, hostile_rounds_{0}, hostile_accepted_{0};
  std::mutex mu_;
  std::condition_variable ready_cv_;
  std::vector<std::string> errors_;  // under mu_ while the clients run
};

TEST_F(HostileLoadTest, HonestClientsSeeNoErrorsAndMemoryStaysWithinTheLimit) {
  std::vector<std::vector<double>> latencies(kHonestClients);
  std::vector<std::thread> honest;
  for (int i = 0; i < kHonestClients; ++i) {
    honest.emplace_back([this, i, &latencies] { Honest(i, &latencies[i]); });
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    ready_cv_.wait(lock, [this] { return ready_ == kHonestClients || !errors_.empty(); });
  }
  std::thread hostile([this] { Hostile(); });
  // Sample the tables' memory while the run goes on.
  std::unique_ptr<PsClient> watcher;
  ASSERT_TRUE(PsClient::Connect(Options(PeerRole::kTool), &watcher).ok());
  const auto end = Clock::now() + std::chrono::seconds(kSeconds);
  uint64_t max_bytes = 0;
  while (Clock::now() < end) {
    std::vector<proto::ServerStats> stats;
    Status st = watcher->Stats(&stats);
    EXPECT_TRUE(st.ok()) << st.ToString();
    for (const auto& s : stats) {
      max_bytes = std::max<uint64_t>(max_bytes, StatValue(s, "pepnet_table_used_bytes"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop_.store(true);
  for (auto& t : honest) t.join();
  hostile.join();

  std::vector<proto::ServerStats> stats;
  ASSERT_TRUE(watcher->Stats(&stats).ok());
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0 : all[std::min(all.size() - 1, size_t(p * all.size()))];
  };
  uint64_t deleted = 0, auth = 0, timeouts = 0, refused = 0;
  for (const auto& reply : stats) {
    const StatSet s = StatsFromProto(reply);
    deleted += s.Value("pepnet_table_deleted_rows");
    auth += s.Value("pepnet_ps_refused_total", {{"reason", "handshake"}});
    timeouts += s.Value("pepnet_ps_refused_total", {{"reason", "deadline"}});
    refused += s.Value("pepnet_ps_refused_total", {{"reason", "privileged"}});
    for (const Stat& st : s.stats()) {
      if (st.name == "pepnet_ps_rejected_pushes_total" && st.LabelValue("reason") != "counts") {
        refused += st.value;
      }
    }
    EXPECT_LE(s.Value("pepnet_table_max_used_bytes"), kMemoryLimit) << "shard " << reply.shard_id();
  }
  const uint64_t rss_kb =
      std::max(ReadVmHwmKb(servers_[0].process().pid()), ReadVmHwmKb(servers_[1].process().pid()));
  printf(
      "hostile load: %d honest clients, %d s: %llu requests (%.0f/s), latency p50 %.2f ms, "
      "p99 %.2f ms, p99.9 %.2f ms; errors %zu; hostile rounds %llu (auth failures %llu, "
      "timeouts %llu, refused requests %llu); table max %.1f of %.1f MiB per shard, rows "
      "deleted %llu; server peak RSS %.0f MiB\n",
      kHonestClients, kSeconds, static_cast<unsigned long long>(requests_.load()),
      requests_.load() / double(kSeconds), pct(0.5) / 1000, pct(0.99) / 1000, pct(0.999) / 1000,
      errors_.size(), static_cast<unsigned long long>(hostile_rounds_.load()),
      static_cast<unsigned long long>(auth), static_cast<unsigned long long>(timeouts),
      static_cast<unsigned long long>(refused), max_bytes / 1048576.0, kMemoryLimit / 1048576.0,
      static_cast<unsigned long long>(deleted), rss_kb / 1024.0);
  EXPECT_TRUE(errors_.empty()) << errors_.front();
  EXPECT_EQ(hostile_accepted_.load(), 0u) << "a hostile request was served";
  EXPECT_GT(hostile_rounds_.load(), 10u);
  EXPECT_GT(requests_.load(), 1000u);
  EXPECT_LE(max_bytes, kMemoryLimit);
  EXPECT_GT(deleted, 0u) << "eviction never ran";
  EXPECT_GT(auth, 0u);
  EXPECT_GT(timeouts, 0u);
  EXPECT_GT(refused, 0u);
}

}  // namespace
}  // namespace pepnet
