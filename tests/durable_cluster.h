// A durable cluster of real processes on loopback for the recovery tests: shards with data
// dirs, a coordinator with a record, workers; fixed ports chosen at start, so that a
// process killed and started again with the same flags keeps its address. Helpers to
// read a published model whole, to compare runs.
#ifndef PEPNET_TESTS_DURABLE_CLUSTER_H_
#define PEPNET_TESTS_DURABLE_CLUSTER_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/manifest.h"
#include "publish/published_model.h"
#include "tests/test_util.h"

namespace pepnet {
namespace testing {

// `n` loopback ports free now, distinct.
inline std::vector<int> FreePorts(int n) {
  std::vector<int> fds, ports;
  for (int i = 0; i < n; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

struct ClusterSpec {
  std::string model_config;  // path
  std::string table_config;  // path (the shards')
  int shards = 2;
  int workers = 1;
  uint64_t memory_limit_bytes = 0;
  std::vector<std::string> passes;  // pass folders, in order
  int base_every = 2;
};

// Every version of a publish folder, and the model its newest version loads to.
struct PublishedImage {
  std::vector<std::string> versions;
  // Per version: its pass, folder, dense checksum and row files' checksums.
  std::vector<std::string> summaries;
  std::map<uint64_t, std::vector<float>> rows;
  std::vector<float> dense;
};

inline PublishedImage ReadPublished(const std::string& publish_dir) {
  PublishedImage image;
  EXPECT_TRUE(ListVersions(publish_dir, &image.versions).ok());
  for (const std::string& v : image.versions) {
    proto::ModelManifest m;
    Status st = ReadManifest(publish_dir + "/" + v, &m);
    EXPECT_TRUE(st.ok()) << st.ToString();
    std::string summary = v + " pass " + std::to_string(m.pass()) + " " + m.pass_name() +
                          (m.is_base() ? " base" : " delta") + " dense " +
                          std::to_string(m.dense_checksum());
    for (const auto& f : m.rows()) summary += " rows " + std::to_string(f.checksum());
    image.summaries.push_back(summary);
  }
  if (image.versions.empty()) return image;
  PublishedModel model;
  Status st = LoadPublishedModel(publish_dir, 0, &model);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) return image;
  model.table->ForEachRow([&](uint64_t key, const float* w, uint32_t dim, const RowMeta&) {
    image.rows[key].assign(w, w + dim);
  });
  image.dense = model.dense;
  return image;
}

// Bitwise, with a message naming the first difference.
inline void ExpectSameModel(const PublishedImage& want, const PublishedImage& got) {
  EXPECT_EQ(want.summaries, got.summaries);
  ASSERT_EQ(want.rows.size(), got.rows.size());
  for (const auto& [key, w] : want.rows) {
    auto it = got.rows.find(key);
    ASSERT_NE(it, got.rows.end()) << "row " << FormatKey(key) << " missing";
    ASSERT_EQ(std::memcmp(w.data(), it->second.data(), 4 * w.size()), 0)
        << "row " << FormatKey(key) << " differs";
  }
  ASSERT_EQ(want.dense.size(), got.dense.size());
  EXPECT_EQ(std::memcmp(want.dense.data(), got.dense.data(), 4 * want.dense.size()), 0)
      << "dense parameters differ";
}

class DurableCluster {
 public:
  DurableCluster(const TempDir& dir, const std::string& name, const ClusterSpec& spec)
      : dir_(dir), root_(dir.File(name)), spec_(spec) {
    EXPECT_EQ(system(("mkdir -p '" + root_ + "'").c_str()), 0);
    ports_ = FreePorts(spec.shards + 1);
    shards_.resize(spec.shards);
    workers_.resize(spec.workers);
  }

  ~DurableCluster() {
    for (auto& s : shards_) {
      if (s && s->running()) {
        s->Signal(SIGTERM);
        int code = -1;
        EXPECT_TRUE(s->Wait(20000, &code).ok());
        EXPECT_EQ(code, 0) << "a shard did not stop cleanly\n" << Logs();
      }
    }
    ExpectNoSanitizerReports(Logs());
  }

  std::string servers() const {
    std::string list;
    for (int i = 0; i < spec_.shards; ++i) {
      list += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(ports_[i]);
    }
    return list;
  }
  int port(int shard) const { return ports_[shard]; }
  int coordinator_port() const { return ports_[spec_.shards]; }
  std::string publish_dir() const { return root_ + "/model"; }
  std::string metrics_path() const { return root_ + "/metrics.jsonl"; }
  std::string coord_data_dir() const { return root_ + "/coord"; }
  std::string shard_data_dir(int i) const { return root_ + "/ps-" + std::to_string(i); }
  const std::string& root() const { return root_; }

  std::vector<std::string> ShardArgs(int i) const {
    return {BinDir() + "/pepnet_ps",
            "--host=127.0.0.1",
            "--port=" + std::to_string(ports_[i]),
            "--table_config=" + spec_.table_config,
            "--shard_id=" + std::to_string(i),
            "--num_shards=" + std::to_string(spec_.shards),
            "--data_dir=" + shard_data_dir(i),
            "--export_dir=" + publish_dir(),
            "--hash_salt=" + std::to_string(1000 + i),
            "--memory_limit_bytes=" + std::to_string(spec_.memory_limit_bytes)};
  }
  std::vector<std::string> CoordArgs() const {
    return {BinDir() + "/pepnet_coord",
            "--num_workers=" + std::to_string(spec_.workers),
            "--servers=" + servers(),
            "--config=" + spec_.model_config,
            "--publish_dir=" + publish_dir(),
            "--base_every=" + std::to_string(spec_.base_every),
            "--port=" + std::to_string(ports_[spec_.shards]),
            "--metrics_out=" + metrics_path(),
            "--data_dir=" + coord_data_dir(),
            "--step_timeout_s=60",
            "--recovery_timeout_s=120"};
  }
  std::vector<std::string> WorkerArgs(int i) const {
    std::string passes;
    for (const std::string& p : spec_.passes) passes += (passes.empty() ? "" : ",") + p;
    return {BinDir() + "/pepnet_worker",
            "--config=" + spec_.model_config,
            "--servers=" + servers(),
            "--coordinator=127.0.0.1:" + std::to_string(ports_[spec_.shards]),
            "--worker_index=" + std::to_string(i),
            "--num_workers=" + std::to_string(spec_.workers),
            "--passes=" + passes,
            "--threads=1",
            "--reconnect_timeout_s=120"};
  }

  // Starts a process; `extra` flags (a --crash_at) only for this start.
  // Returns once the shard serves (it loads its table first), or fails the test if it
  // exits instead.
  void StartShard(int i, const std::vector<std::string>& extra = {}) {
    Start(&shards_[i], ShardArgs(i), extra, "ps-" + std::to_string(i));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!Accepts(ports_[i])) {
      int code = -1;
      ASSERT_TRUE(std::chrono::steady_clock::now() < deadline) << "shard " << i << " never served";
      ASSERT_FALSE(shards_[i]->Wait(0, &code).ok())
          << "shard " << i << " exited with " << code << "\n"
          << Logs();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  void StartCoordinator(const std::vector<std::string>& extra = {}) {
    Start(&coord_, CoordArgs(), extra, "coord");
  }
  void StartWorker(int i, const std::vector<std::string>& extra = {}) {
    Start(&workers_[i], WorkerArgs(i), extra, "worker-" + std::to_string(i));
  }
  void StartAll() {
    for (int i = 0; i < spec_.shards; ++i) StartShard(i);
    StartCoordinator();
    for (int i = 0; i < spec_.workers; ++i) StartWorker(i);
  }

  Subprocess& shard(int i) { return *shards_[i]; }
  Subprocess& coordinator() { return *coord_; }
  Subprocess& worker(int i) { return *workers_[i]; }

  // Waits for a process that is to die on its own (a --crash_at), up to `timeout_ms`;
  // its exit code.
  int WaitExit(Subprocess& p, int timeout_ms) {
    int code = -1;
    Status st = p.Wait(timeout_ms, &code);
    EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << Logs();
    return code;
  }

  // Kills with SIGKILL, reaps, starts again with the same flags.
  void KillAndRestartShard(int i) {
    Reap(shards_[i].get());
    StartShard(i);
  }
  void KillAndRestartCoordinator() {
    Reap(coord_.get());
    StartCoordinator();
  }
  void KillAndRestartWorker(int i) {
    Reap(workers_[i].get());
    StartWorker(i);
  }
  // Everything at once, then everything again.
  void KillAndRestartAll() {
    for (auto& s : shards_) s->Signal(SIGKILL);
    coord_->Signal(SIGKILL);
    for (auto& w : workers_) w->Signal(SIGKILL);
    for (auto& s : shards_) Reap(s.get());
    Reap(coord_.get());
    for (auto& w : workers_) Reap(w.get());
    StartAll();
  }

  // Exit codes of the coordinator and the workers once all have ended (-1: still running
  // after the timeout).
  std::vector<int> WaitDone(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::vector<int> codes;
    for (Subprocess* p : Finishers()) {
      int code = -1;
      const int left = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                   std::chrono::steady_clock::now())
                 .count()));
      codes.push_back(p->Wait(left, &code).ok() ? code : -1);
    }
    return codes;
  }
  std::vector<int> AllZero() const { return std::vector<int>(1 + spec_.workers, 0); }

  std::string Logs() const {
    std::string all;
    for (const std::string& log : logs_) all += "== " + log + ":\n" + ReadFile(log);
    return all;
  }
  std::string CoordinatorLog() const {
    std::string all;
    for (const std::string& log : logs_) {
      if (log.find("/coord.") != std::string::npos) all += ReadFile(log);
    }
    return all;
  }
  std::vector<std::string> MetricLines() const { return ReadLines(metrics_path()); }
  // The lines without what varies from run to run (times, bytes on disk, the table's
  // high-water mark, and the commit and publish objects a line written from the record
  // after a crash lacks): what a disturbed run must reproduce exactly.
  std::vector<std::string> DeterministicMetricLines() const {
    std::vector<std::string> out;
    for (const std::string& line : MetricLines()) {
      nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, false);
      if (j.is_object()) {
        for (const char* key : {"seconds", "samples_per_s", "unix_ms", "commit", "publish"}) {
          j.erase(key);
        }
        // A reload starts the high-water mark again at the loaded table's bytes.
        if (j.contains("table")) j["table"].erase("max_bytes_used");
      }
      out.push_back(j.dump());
    }
    return out;
  }

 private:
  std::vector<Subprocess*> Finishers() {
    std::vector<Subprocess*> out = {coord_.get()};
    for (auto& w : workers_) out.push_back(w.get());
    return out;
  }

  void Start(std::unique_ptr<Subprocess>* slot, std::vector<std::string> argv,
             const std::vector<std::string>& extra, const std::string& name) {
    argv.insert(argv.end(), extra.begin(), extra.end());
    const std::string log = root_ + "/" + name + "." + std::to_string(logs_.size()) + ".log";
    logs_.push_back(log);
    slot->reset(new Subprocess);
    Status st = (*slot)->Start(argv, log);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  static bool Accepts(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
  }

  static void Reap(Subprocess* p) {
    p->Signal(SIGKILL);
    int code;
    p->Wait(20000, &code);
  }

  const TempDir& dir_;
  const std::string root_;
  const ClusterSpec spec_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<Subprocess>> shards_;
  std::unique_ptr<Subprocess> coord_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
  std::vector<std::string> logs_;
};

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_DURABLE_CLUSTER_H_
