#include "coord/coordinator.h"

#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <google/protobuf/text_format.h>

#include "common/delete_reason.h"
#include "common/frame_channel.h"
#include "common/ps_client.h"
#include "common/stats_format.h"
#include "proto/cluster.pb.h"
#include "proto/model_config.pb.h"
#include "proto/ps.pb.h"
#include "proto/publish.pb.h"
#include "ps/row_file.h"
#include "worker/metrics.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

struct Message {
  proto::CoordMessage header;
  std::string payload;
};

// One connected worker: a reader thread queues its messages; a broken connection is
// recorded as its error.
class WorkerLink {
 public:
  explicit WorkerLink(std::unique_ptr<FrameChannel> channel) : channel_(std::move(channel)) {}
  ~WorkerLink() {
    channel_->Close();
    if (reader_.joinable()) reader_.join();
  }

  void Start(std::mutex* mu, std::condition_variable* cv) {
    reader_ = std::thread([this, mu, cv] {
      std::string header;
      PayloadBuffer payload;
      for (;;) {
        Status st = channel_->Receive(&header, &payload);
        Message m;
        if (st.ok() && !m.header.ParseFromString(header)) {
          st = Status::Corruption("unparsable message from " + channel_->peer());
        }
        std::lock_guard<std::mutex> lock(*mu);
        if (!st.ok()) {
          error_ = st;
          cv->notify_all();
          return;
        }
        m.payload.assign(payload.data(), payload.size());
        queue_.push_back(std::move(m));
        cv->notify_all();
      }
    });
  }

  // The first message, read before the reader thread starts.
  Status ReceiveFirst(proto::CoordMessage* m) {
    std::string header;
    PayloadBuffer payload;
    PEPNET_RETURN_IF_ERROR(channel_->Receive(&header, &payload, 60000));
    if (!m->ParseFromString(header)) {
      return Status::Corruption("unparsable message from " + channel_->peer());
    }
    return Status::OK();
  }

  Status Send(const proto::CoordMessage& m, const void* payload = nullptr, size_t len = 0) {
    return channel_->Send(m.SerializeAsString(), payload, len);
  }
  const std::string& peer() const { return channel_->peer(); }
  void ShutdownWrite() { channel_->ShutdownWrite(); }

  // Guarded by the coordinator's mutex.
  std::deque<Message> queue_;
  Status error_;
  int index = -1;

 private:
  std::unique_ptr<FrameChannel> channel_;
  std::thread reader_;
};

class Coordinator {
 public:
  explicit Coordinator(const CoordinatorOptions& o) : o_(o) {}
  ~Coordinator() {
    for (auto& w : workers_) w.reset();
  }

  Status Run() {
    PEPNET_RETURN_IF_ERROR(LoadModelConfigFile(o_.model_config, &model_));
    for (const auto& t : model_.task()) task_names_.push_back(t.name());
    ClientOptions client_options;
    client_options.servers = o_.servers;
    client_options.timeout_ms = 600000;  // exports of big tables take a while
    PEPNET_RETURN_IF_ERROR(PsClient::Connect(client_options, &client_));
    if (!o_.publish_dir.empty()) mkdir(o_.publish_dir.c_str(), 0755);
    std::unique_ptr<FrameListener> listener;
    PEPNET_RETURN_IF_ERROR(FrameListener::Listen(o_.host, o_.port, &listener));
    if (!o_.port_file.empty()) {
      const std::string tmp = o_.port_file + ".tmp";
      std::ofstream(tmp) << listener->port() << "\n";
      rename(tmp.c_str(), o_.port_file.c_str());
    }
    fprintf(stderr, "pepnet_coord: listening on %s:%d for %d workers\n", o_.host.c_str(),
            listener->port(), o_.num_workers);
    Status st = AcceptWorkers(listener.get());
    for (uint32_t pass = 1; st.ok(); ++pass) {
      bool finished = false;
      st = RunPass(pass, &finished);
      if (finished) break;
    }
    if (!st.ok()) {
      Broadcast(Fail(st.ToString()));
      LetWorkersReadTheFailure();
    }
    return st;
  }

 private:
  static proto::CoordMessage Fail(const std::string& error) {
    proto::CoordMessage m;
    m.set_type(proto::COORD_FAIL);
    m.set_error(error);
    return m;
  }

  void Broadcast(const proto::CoordMessage& m, const void* payload = nullptr, size_t len = 0) {
    for (auto& w : workers_) {
      if (w) w->Send(m, payload, len);
    }
  }

  // Closing a socket with unread input resets it, which can discard the FAIL message
  // before the worker reads it: end our side, then wait (briefly) for each worker to hang up.
  void LetWorkersReadTheFailure() {
    for (auto& w : workers_) {
      if (w) w->ShutdownWrite();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(5), [this] {
      for (auto& w : workers_) {
        if (w && w->error_.ok()) return false;
      }
      return true;
    });
  }

  std::string Name(int i) const {
    return "worker " + std::to_string(i) + " (" + workers_[i]->peer() + ")";
  }

  Status AcceptWorkers(FrameListener* listener) {
    std::vector<std::unique_ptr<WorkerLink>> pending;
    workers_.resize(o_.num_workers);
    for (int n = 0; n < o_.num_workers; ++n) {
      std::unique_ptr<FrameChannel> channel;
      PEPNET_RETURN_IF_ERROR(listener->Accept(&channel, 600000));
      auto link = std::make_unique<WorkerLink>(std::move(channel));
      proto::CoordMessage hello;
      // The first message says who the worker is.
      Status st = link->ReceiveFirst(&hello);
      if (!st.ok()) return Status(st.code(), "a worker's first message: " + st.message());
      const int i = static_cast<int>(hello.worker_index());
      if (hello.type() != proto::COORD_HELLO || hello.num_workers() != uint32_t(o_.num_workers) ||
          i < 0 || i >= o_.num_workers || workers_[i]) {
        const std::string error = "worker at " + link->peer() + " says it is worker " +
                                  std::to_string(i) + " of " + std::to_string(hello.num_workers()) +
                                  "; the cluster has " + std::to_string(o_.num_workers) +
                                  " workers and each index once";
        link->Send(Fail(error));
        return Status::InvalidArgument(error);
      }
      if (hello.model_fingerprint() != ModelConfigFingerprint(model_)) {
        const std::string error = "worker " + std::to_string(i) + " (" + link->peer() +
                                  ") runs a different model config than the coordinator's " +
                                  o_.model_config;
        link->Send(Fail(error));
        return Status::InvalidArgument(error);
      }
      link->index = i;
      link->Start(&mu_, &cv_);
      workers_[i] = std::move(link);
    }
    return Status::OK();
  }

  // One message from every worker, of `type`; an error names the first worker that failed.
  Status Collect(proto::CoordType type, const std::string& phase, int timeout_ms,
                 std::vector<Message>* out) {
    out->assign(o_.num_workers, Message());
    std::vector<bool> have(o_.num_workers, false);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 1 << 30);
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      int missing = 0;
      for (int i = 0; i < o_.num_workers; ++i) {
        WorkerLink& w = *workers_[i];
        if (have[i]) continue;
        if (!w.queue_.empty()) {
          (*out)[i] = std::move(w.queue_.front());
          w.queue_.pop_front();
          have[i] = true;
          if ((*out)[i].header.type() != type) {
            return Status::Internal(Name(i) + " sent message type " +
                                    std::to_string((*out)[i].header.type()) + " during " + phase);
          }
          continue;
        }
        if (!w.error_.ok()) {
          return Status::Unavailable(Name(i) + " failed during " + phase + ": " +
                                     w.error_.ToString());
        }
        ++missing;
      }
      if (missing == 0) return Status::OK();
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout &&
          std::chrono::steady_clock::now() >= deadline) {
        for (int i = 0; i < o_.num_workers; ++i) {
          if (!have[i]) {
            return Status::DeadlineExceeded(Name(i) + " sent nothing for " +
                                            std::to_string(timeout_ms / 1000) + " s during " +
                                            phase);
          }
        }
      }
    }
  }

  Status RunPass(uint32_t pass, bool* finished) {
    std::vector<Message> msgs;
    // Workers may wait long for the next pass folder: no timeout here, but a worker that
    // dies is noticed at once.
    PEPNET_RETURN_IF_ERROR(
        Collect(proto::COORD_BEGIN_PASS, "the start of pass " + std::to_string(pass), 0, &msgs));
    int done = 0;
    for (const Message& m : msgs) done += m.header.finished();
    if (done == o_.num_workers) {
      proto::CoordMessage reply;
      reply.set_type(proto::COORD_BEGIN_PASS);
      reply.set_finished(true);
      Broadcast(reply);
      fprintf(stderr, "pepnet_coord: every worker has finished; %u passes\n", pass - 1);
      *finished = true;
      return Status::OK();
    }
    const std::string name = msgs[0].header.pass_name();
    for (int i = 0; i < o_.num_workers; ++i) {
      const proto::CoordMessage& h = msgs[i].header;
      if (h.finished() || h.pass_name() != name) {
        return Status::InvalidArgument(
            "workers disagree on pass " + std::to_string(pass) + ": worker 0 is ready for " +
            (msgs[0].header.finished() ? "nothing more" : "'" + name + "'") + ", " + Name(i) +
            " for " + (h.finished() ? "nothing more" : "'" + h.pass_name() + "'"));
      }
    }
    PEPNET_RETURN_IF_ERROR(client_->BeginPass(pass));
    proto::CoordMessage begin;
    begin.set_type(proto::COORD_BEGIN_PASS);
    begin.set_pass(pass);
    begin.set_pass_name(name);
    Broadcast(begin);
    const auto start = std::chrono::steady_clock::now();

    // Synchronous dense steps until no worker has data.
    std::vector<float> sum;
    for (uint64_t step = 0;; ++step) {
      PEPNET_RETURN_IF_ERROR(Collect(
          proto::COORD_STEP, "pass " + std::to_string(pass) + " step " + std::to_string(step),
          o_.step_timeout_ms, &msgs));
      bool any = false;
      for (int i = 0; i < o_.num_workers; ++i) {
        const Message& m = msgs[i];
        if (!m.header.has_data()) continue;
        const size_t n = m.payload.size() / 4;
        if (m.payload.size() % 4 != 0 || (any && n != sum.size())) {
          return Status::InvalidArgument(Name(i) + " sent a dense gradient of " +
                                         std::to_string(m.payload.size()) + " bytes; expected " +
                                         std::to_string(4 * sum.size()));
        }
        const float* g = reinterpret_cast<const float*>(m.payload.data());
        if (!any) {
          sum.assign(g, g + n);
        } else {
          for (size_t k = 0; k < n; ++k) sum[k] += g[k];
        }
        any = true;
      }
      proto::CoordMessage reply;
      reply.set_type(proto::COORD_STEP);
      reply.set_step(step);
      if (!any) {
        reply.set_all_done(true);
        Broadcast(reply);
        break;
      }
      reply.set_num_dense(sum.size());
      Broadcast(reply, sum.data(), 4 * sum.size());
    }

    // End of pass: replicas, metrics, publish.
    PEPNET_RETURN_IF_ERROR(Collect(proto::COORD_END_PASS, "the end of pass " + std::to_string(pass),
                                   o_.step_timeout_ms, &msgs));
    for (int i = 1; i < o_.num_workers; ++i) {
      if (msgs[i].header.checksum() != msgs[0].header.checksum()) {
        char text[160];
        snprintf(text, sizeof(text), "dense replicas differ after pass %u: worker 0 %016llx, ",
                 pass, static_cast<unsigned long long>(msgs[0].header.checksum()));
        return Status::Internal(text + Name(i) + " " + std::to_string(msgs[i].header.checksum()));
      }
    }
    PassMetrics metrics(task_names_, model_.num_domains());
    for (int i = 0; i < o_.num_workers; ++i) {
      const Message& m = msgs[i];
      if (m.header.prediction_bytes() > m.payload.size()) {
        return Status::InvalidArgument(Name(i) + ": prediction bytes past the payload");
      }
      Status st = metrics.MergeSerialized(m.payload.data(), m.header.prediction_bytes());
      if (!st.ok()) return Status(st.code(), Name(i) + ": " + st.message());
    }
    const Message& first = msgs[0];
    const size_t dense_bytes = first.payload.size() - first.header.prediction_bytes();
    if (dense_bytes != 4 * first.header.num_dense()) {
      return Status::InvalidArgument("worker 0 sent " + std::to_string(dense_bytes) +
                                     " bytes of dense parameters for " +
                                     std::to_string(first.header.num_dense()) + " floats");
    }
    // End-of-pass hooks on every shard, then the publish sees their deletions.
    std::vector<proto::PassEndReply> ends;
    PEPNET_RETURN_IF_ERROR(client_->EndPass(pass, &ends));
    uint64_t deleted[kNumDeleteReasons] = {};
    uint64_t deleted_total = 0;
    for (const proto::PassEndReply& e : ends) {
      for (int k = 0; k < e.deleted().by_reason_size() && k < kNumDeleteReasons; ++k) {
        deleted[k] += e.deleted().by_reason(k);
        deleted_total += e.deleted().by_reason(k);
      }
    }
    uint64_t version = 0, rows = 0;
    if (!o_.publish_dir.empty()) {
      PEPNET_RETURN_IF_ERROR(Publish(pass, name,
                                     first.payload.data() + first.header.prediction_bytes(),
                                     first.header.num_dense(), &version, &rows));
    }
    std::vector<proto::ServerStats> stats;
    PEPNET_RETURN_IF_ERROR(client_->Stats(&stats));
    uint64_t table_rows = 0, table_bytes = 0;
    for (const auto& s : stats) {
      table_rows += s.table().rows();
      table_bytes += s.table().bytes_used();
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("%s", metrics.ToText(pass).c_str());
    printf("pass %u (%s): %.1f s; table %llu rows, %.1f MiB on %zu shards", pass, name.c_str(),
           seconds, static_cast<unsigned long long>(table_rows), table_bytes / 1048576.0,
           stats.size());
    // Deleted during the pass, to make room (the pass end's deletions are in `deleted`).
    uint64_t evicted = 0;
    for (const auto& s : stats) {
      for (const proto::SlotStats& slot : s.table().slots()) {
        for (DeleteReason r : {DeleteReason::kMemory, DeleteReason::kCap}) {
          const int k = static_cast<int>(r);
          if (k < slot.deleted_pass().by_reason_size()) evicted += slot.deleted_pass().by_reason(k);
        }
      }
    }
    if (evicted + deleted_total > 0) {
      printf("; deleted %llu (evicted %llu",
             static_cast<unsigned long long>(evicted + deleted_total),
             static_cast<unsigned long long>(evicted));
      for (DeleteReason r : {DeleteReason::kTtl, DeleteReason::kMinUpdates, DeleteReason::kScore}) {
        if (deleted[static_cast<int>(r)] > 0) {
          printf(", %s %llu", DeleteReasonName(r),
                 static_cast<unsigned long long>(deleted[static_cast<int>(r)]));
        }
      }
      printf(")");
    }
    if (version) {
      printf("; published version %llu (%llu rows)", static_cast<unsigned long long>(version),
             static_cast<unsigned long long>(rows));
    }
    printf("\n");
    fflush(stdout);
    if (!o_.metrics_out.empty()) {
      std::ofstream(o_.metrics_out, std::ios::app) << metrics.ToJson(pass) << "\n";
    }
    proto::CoordMessage end;
    end.set_type(proto::COORD_END_PASS);
    end.set_pass(pass);
    end.set_version(version);
    Broadcast(end);
    return Status::OK();
  }

  // Writes version folder v-<version>: the shards' rows, the dense parameters, and the
  // manifest, in a temporary folder renamed into place last.
  Status Publish(uint32_t pass, const std::string& pass_name, const char* dense, uint64_t num_dense,
                 uint64_t* version, uint64_t* total_rows) {
    *version = ++last_version_;
    const bool base = last_base_ == 0 || *version - last_base_ >= uint64_t(o_.base_every);
    char folder[32];
    snprintf(folder, sizeof(folder), "v-%08llu", static_cast<unsigned long long>(*version));
    const std::string final_dir = o_.publish_dir + "/" + folder;
    const std::string tmp_dir = final_dir + ".tmp";
    mkdir(tmp_dir.c_str(), 0755);
    std::vector<std::string> paths;
    for (uint32_t s = 0; s < client_->num_shards(); ++s) {
      paths.push_back(tmp_dir + "/rows-" + std::to_string(s) + ".bin");
    }
    std::vector<proto::ExportReply> replies;
    PEPNET_RETURN_IF_ERROR(client_->ExportRows(pass, base, paths, &replies));
    proto::ModelManifest manifest;
    manifest.set_version(*version);
    manifest.set_pass(pass);
    manifest.set_pass_name(pass_name);
    manifest.set_parent_version(*version - 1);
    manifest.set_is_base(base);
    manifest.set_base_version(base ? *version : last_base_);
    manifest.set_table_seed(o_.table_seed);
    *manifest.mutable_model() = model_;
    *total_rows = 0;
    uint64_t total_deleted = 0;
    for (uint32_t s = 0; s < replies.size(); ++s) {
      proto::RowFile* f = manifest.add_rows();
      f->set_shard(s);
      f->set_path("rows-" + std::to_string(s) + ".bin");
      f->set_rows(replies[s].rows());
      f->set_bytes(replies[s].bytes());
      f->set_checksum(replies[s].checksum());
      f->set_deleted(replies[s].deleted());
      *total_rows += replies[s].rows();
      total_deleted += replies[s].deleted();
    }
    manifest.set_total_rows(*total_rows);
    manifest.set_total_deleted(total_deleted);
    {
      std::ofstream out(tmp_dir + "/dense.bin", std::ios::binary);
      out.write(dense, static_cast<std::streamsize>(4 * num_dense));
      if (!out) return Status::Unavailable("cannot write " + tmp_dir + "/dense.bin");
    }
    FileChecksum sum;
    sum.Update(dense, 4 * num_dense);
    manifest.set_dense_path("dense.bin");
    manifest.set_dense_floats(num_dense);
    manifest.set_dense_checksum(sum.Final());
    {
      std::ofstream out(tmp_dir + "/manifest.pbtxt");
      out << FormatManifest(manifest);
      if (!out) return Status::Unavailable("cannot write " + tmp_dir + "/manifest.pbtxt");
    }
    if (rename(tmp_dir.c_str(), final_dir.c_str()) != 0) {
      return Status::Unavailable("cannot rename " + tmp_dir + ": " + strerror(errno));
    }
    if (base) last_base_ = *version;
    return Status::OK();
  }

  static std::string FormatManifest(const proto::ModelManifest& m) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(m, &text);
    return "# pepnet-ps model version (docs/publish-format.md)\n" + text;
  }

  const CoordinatorOptions o_;
  proto::ModelConfig model_;
  std::vector<std::string> task_names_;
  std::unique_ptr<PsClient> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  uint64_t last_version_ = 0, last_base_ = 0;
};

}  // namespace

Status RunCoordinator(const CoordinatorOptions& options) {
  if (options.num_workers < 1) return Status::InvalidArgument("--num_workers must be >= 1");
  if (options.base_every < 1) return Status::InvalidArgument("--base_every must be >= 1");
  Coordinator c(options);
  return c.Run();
}

}  // namespace pepnet
