// pepnet_worker: one worker of a cluster. Trains its share of every pass against the
// shard servers, in step with the other workers through the coordinator (pepnet_coord):
// sparse pulls and pushes go straight to the servers, the dense gradient of every step is
// summed across the workers by the coordinator before each worker's identical Adam step.
//
// Passes: --passes lists pass folders in order; --pass_root is watched instead, a
// sub-folder becoming ready when its _SUCCESS marker appears, in name order. Pass folder
// files (sorted by name, _SUCCESS and hidden files excepted) go to worker (i mod M).
#include <dirent.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <thread>

#include "common/frame_channel.h"
#include "common/ps_client.h"
#include "proto/cluster.pb.h"
#include "proto/model_config.pb.h"
#include "worker/batch_prefetcher.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(config, "", "Model config (protobuf text format).");
DEFINE_string(servers, "", "Shard servers host:port,... in shard order.");
DEFINE_string(coordinator, "", "The coordinator's host:port.");
DEFINE_int32(worker_index, 0, "This worker's index in [0, num_workers).");
DEFINE_int32(num_workers, 1, "Workers in the cluster.");
DEFINE_string(passes, "", "Pass folders, comma-separated, in order.");
DEFINE_string(pass_root, "", "Watch this folder for pass folders (instead of --passes).");
DEFINE_int32(max_passes, 0, "Stop after this many passes; 0 = no limit.");
DEFINE_int32(idle_timeout_s, 0,
             "Watching: stop when no new pass is ready for this long; 0 = wait forever.");
DEFINE_int32(poll_ms, 500, "Watching: how often the pass root is scanned.");
DEFINE_int32(threads, 2, "Threads of a training step.");
DEFINE_uint64(seed, 1, "Dense initialization seed (the same on every worker).");

namespace pepnet {
namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_worker %d: %s\n", FLAGS_worker_index, message.c_str());
  return 1;
}

std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Names in `dir` (no "." entries), sorted.
std::vector<std::string> ListDir(const std::string& dir, bool want_dirs) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.empty() || name[0] == '.' || name == "_SUCCESS") continue;
      struct stat st;
      if (stat((dir + "/" + name).c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode) == want_dirs) out.push_back(name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Where the passes come from: a list, or a watched root.
class PassSource {
 public:
  // The next pass folder, or "" when there is none (list exhausted, limit reached, or
  // the watch idled out).
  std::string Next() {
    if (FLAGS_max_passes > 0 && taken_ >= FLAGS_max_passes) return "";
    if (FLAGS_pass_root.empty()) {
      const std::vector<std::string> list = SplitList(FLAGS_passes);
      if (taken_ >= static_cast<int>(list.size())) return "";
      return list[taken_++];
    }
    const auto start = std::chrono::steady_clock::now();
    bool logged = false;
    for (;;) {
      for (const std::string& name : ListDir(FLAGS_pass_root, true)) {
        if (done_.count(name) || (!done_.empty() && name < *done_.rbegin())) continue;
        const std::string dir = FLAGS_pass_root + "/" + name;
        if (!Exists(dir + "/_SUCCESS")) break;  // passes run in name order
        done_.insert(name);
        ++taken_;
        return dir;
      }
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (FLAGS_idle_timeout_s > 0 && waited >= FLAGS_idle_timeout_s) {
        LOG(INFO) << "no new pass under " << FLAGS_pass_root << " for " << FLAGS_idle_timeout_s
                  << " s; finishing";
        return "";
      }
      if (!logged) {
        LOG(INFO) << "waiting for the next pass folder (with _SUCCESS) under " << FLAGS_pass_root;
        logged = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_poll_ms));
    }
  }

 private:
  int taken_ = 0;
  std::set<std::string> done_;
};

// The coordinator's STEP as a DenseReducer.
class CoordinatorReducer : public DenseReducer {
 public:
  explicit CoordinatorReducer(FrameChannel* channel) : channel_(channel) {}

  Status AllReduce(bool has_data, std::vector<float>* grads, bool* all_done) override {
    proto::CoordMessage m;
    m.set_type(proto::COORD_STEP);
    m.set_step(step_++);
    m.set_has_data(has_data);
    m.set_num_dense(has_data ? grads->size() : 0);
    PEPNET_RETURN_IF_ERROR(Send(channel_, m, grads->data(), has_data ? 4 * grads->size() : 0));
    proto::CoordMessage reply;
    PEPNET_RETURN_IF_ERROR(Receive(channel_, &reply, &payload_));
    if (reply.type() != proto::COORD_STEP) return Unexpected(reply);
    *all_done = reply.all_done();
    if (*all_done) {
      step_ = 0;
      return Status::OK();
    }
    if (payload_.size() != 4 * grads->size()) {
      return Status::Internal("coordinator sent " + std::to_string(payload_.size()) +
                              " bytes of summed gradient for " + std::to_string(grads->size()) +
                              " floats");
    }
    std::memcpy(grads->data(), payload_.data(), payload_.size());
    return Status::OK();
  }

  // A failed send usually means the coordinator gave up on the cluster: its FAIL message
  // (the reason) may still be waiting to be read.
  static Status Send(FrameChannel* channel, const proto::CoordMessage& m, const void* payload,
                     size_t len) {
    Status st = channel->Send(m.SerializeAsString(), payload, len);
    if (st.ok()) return st;
    std::string header;
    PayloadBuffer reply_payload;
    proto::CoordMessage reply;
    if (channel->Receive(&header, &reply_payload, 2000).ok() && reply.ParseFromString(header) &&
        reply.type() == proto::COORD_FAIL) {
      return Status::Unavailable("the cluster failed: " + reply.error());
    }
    return st;
  }

  static Status Receive(FrameChannel* channel, proto::CoordMessage* m, PayloadBuffer* payload) {
    std::string header;
    PEPNET_RETURN_IF_ERROR(channel->Receive(&header, payload));
    if (!m->ParseFromString(header)) return Status::Corruption("unparsable coordinator message");
    if (m->type() == proto::COORD_FAIL)
      return Status::Unavailable("the cluster failed: " + m->error());
    return Status::OK();
  }

  static Status Unexpected(const proto::CoordMessage& m) {
    return Status::Internal("unexpected coordinator message type " + std::to_string(m.type()));
  }

 private:
  FrameChannel* channel_;
  uint64_t step_ = 0;
  PayloadBuffer payload_;
};

int Run() {
  if (FLAGS_config.empty() || FLAGS_servers.empty() || FLAGS_coordinator.empty()) {
    return Fail("--config, --servers and --coordinator are required");
  }
  if (FLAGS_passes.empty() == FLAGS_pass_root.empty()) {
    return Fail("give exactly one of --passes and --pass_root");
  }
  // A mistyped pass folder would otherwise train nothing and publish as if it had.
  for (const std::string& folder : SplitList(FLAGS_passes)) {
    if (!IsDir(folder)) return Fail("--passes: " + folder + " is not a folder");
  }
  if (FLAGS_num_workers < 1 || FLAGS_worker_index < 0 || FLAGS_worker_index >= FLAGS_num_workers) {
    return Fail("--worker_index must be in [0, --num_workers)");
  }
  proto::ModelConfig config;
  Status st = LoadModelConfigFile(FLAGS_config, &config);
  if (!st.ok()) return Fail(st.ToString());
  ClientOptions client_options;
  st = ParseServerList(FLAGS_servers, &client_options.servers);
  std::unique_ptr<PsClient> client;
  if (st.ok()) st = PsClient::Connect(client_options, &client);
  if (!st.ok()) return Fail(st.ToString());
  const size_t colon = FLAGS_coordinator.rfind(':');
  if (colon == std::string::npos) return Fail("--coordinator must be host:port");
  std::unique_ptr<FrameChannel> coord;
  st = FrameChannel::Connect(FLAGS_coordinator.substr(0, colon),
                             std::atoi(FLAGS_coordinator.c_str() + colon + 1), 30000, &coord);
  if (!st.ok()) return Fail(st.ToString());
  proto::CoordMessage hello;
  hello.set_type(proto::COORD_HELLO);
  hello.set_worker_index(FLAGS_worker_index);
  hello.set_num_workers(FLAGS_num_workers);
  hello.set_model_fingerprint(ModelConfigFingerprint(config));
  st = coord->Send(hello.SerializeAsString(), nullptr, 0);
  if (!st.ok()) return Fail(st.ToString());

  std::unique_ptr<EmbeddingStore> store = MakeRemoteStore(client.get());
  Trainer trainer(config, store.get(), FLAGS_seed, FLAGS_threads);
  CoordinatorReducer reducer(coord.get());
  trainer.set_dense_reducer(&reducer);
  std::vector<std::string> task_names;
  for (const auto& t : config.task()) task_names.push_back(t.name());
  PassSource source;
  PayloadBuffer payload;
  for (;;) {
    const std::string folder = source.Next();
    proto::CoordMessage begin;
    begin.set_type(proto::COORD_BEGIN_PASS);
    begin.set_worker_index(FLAGS_worker_index);
    begin.set_finished(folder.empty());
    begin.set_pass_name(folder);
    st = CoordinatorReducer::Send(coord.get(), begin, nullptr, 0);
    proto::CoordMessage reply;
    if (st.ok()) st = CoordinatorReducer::Receive(coord.get(), &reply, &payload);
    if (!st.ok()) return Fail(st.ToString());
    if (reply.finished()) return 0;
    const uint32_t pass = reply.pass();
    std::vector<std::string> files;
    const std::vector<std::string> all = ListDir(folder, false);
    for (size_t i = 0; i < all.size(); ++i) {
      if (static_cast<int>(i % FLAGS_num_workers) == FLAGS_worker_index) {
        files.push_back(folder + "/" + all[i]);
      }
    }
    LOG(INFO) << "pass " << pass << " (" << folder << "): training on " << files.size()
              << " of its " << all.size() << " files";
    PassMetrics metrics(task_names, config.num_domains());
    DataReader reader(&config, files);
    uint64_t samples = 0;
    {
      BatchPrefetcher prefetcher(&reader, config.batch_size());
      Batch batch;
      bool done = false;
      while (st.ok() && !done) {
        st = prefetcher.Next(&batch, &done);
        if (st.ok() && batch.size > 0) {
          st = trainer.TrainBatch(batch, &metrics);
          samples += batch.size;
        }
      }
    }
    // Out of data: take part in the other workers' remaining steps.
    bool all_done = false;
    while (st.ok() && !all_done) st = trainer.IdleStep(&all_done);
    if (!st.ok())
      return Fail("pass " + std::to_string(pass) + " (" + folder + "): " + st.ToString());

    proto::CoordMessage end;
    end.set_type(proto::COORD_END_PASS);
    end.set_worker_index(FLAGS_worker_index);
    end.set_pass(pass);
    end.set_checksum(trainer.DenseChecksum());
    std::string body = metrics.Serialize();
    end.set_prediction_bytes(body.size());
    if (FLAGS_worker_index == 0) {
      std::vector<float> dense;
      trainer.FlattenParams(&dense);
      end.set_num_dense(dense.size());
      body.append(reinterpret_cast<const char*>(dense.data()), 4 * dense.size());
    }
    st = CoordinatorReducer::Send(coord.get(), end, body.data(), body.size());
    if (st.ok()) st = CoordinatorReducer::Receive(coord.get(), &reply, &payload);
    if (!st.ok()) return Fail("pass " + std::to_string(pass) + ": " + st.ToString());
    char checksum[32];
    snprintf(checksum, sizeof(checksum), "%016llx",
             static_cast<unsigned long long>(end.checksum()));
    LOG(INFO) << "pass " << pass << " (" << folder << "): trained " << samples << " samples from "
              << files.size() << " files; dense checksum " << checksum << "; published version "
              << reply.version();
  }
}

}  // namespace
}  // namespace pepnet

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "pepnet_worker --config=F --servers=h:p,.. --coordinator=h:p --worker_index=i "
      "--num_workers=M (--passes=D1,D2 | --pass_root=DIR)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_log_dir.empty()) FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  pepnet::KeepLargeAllocationsInHeap();
  return pepnet::Run();
}
