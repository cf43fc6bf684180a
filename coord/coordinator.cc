#include "coord/coordinator.h"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "common/checksum.h"
#include "common/delete_reason.h"
#include "common/frame_channel.h"
#include "common/json_text.h"
#include "common/progress_line.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "coord/coordinator_store.h"
#include "coord/pass_report.h"
#include "coord/worker_acceptor.h"
#include "coord/worker_link.h"
#include "proto/cluster.pb.h"
#include "proto/model_config.pb.h"
#include "proto/ps.pb.h"
#include "proto/publish.pb.h"
#include "publish/manifest.h"
#include "publish/version_writer.h"
#include "worker/binned_auc.h"
#include "worker/dense_state.h"
#include "worker/metrics.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

namespace pepnet {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A dead or silent peer: the cluster recovers from it (when it keeps a record).
bool Recoverable(const Status& st) {
  return st.code() == Status::kUnavailable || st.code() == Status::kDeadlineExceeded;
}

proto::CoordMessage Fail(const std::string& error, bool retry) {
  proto::CoordMessage m;
  m.set_type(proto::COORD_FAIL);
  m.set_error(error);
  m.set_retry(retry);
  return m;
}

// The index of the first NaN or infinity in `v`, or n.
size_t FirstNonFinite(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return i;
  }
  return n;
}

// What the last commit did, for the pass line.
struct CommitSummary {
  bool durable = false;
  uint64_t rows_written = 0, rows_deleted = 0, bytes_on_disk = 0;
  double seconds = 0;
};

class Coordinator {
 public:
  explicit Coordinator(const CoordinatorOptions& o) : o_(o), env_(o.env) {}
  ~Coordinator() { workers_.clear(); }

  Status Run() {
    PEPNET_RETURN_IF_ERROR(LoadModelConfigFile(o_.model_config, &model_));
    for (const auto& t : model_.task()) task_names_.push_back(t.name());
    run_auc_.resize(task_names_.size());
    num_dense_ = DenseParamCount(model_);
    if (!o_.data_dir.empty()) {
      CoordinatorStore::Identity id;
      id.model_fingerprint = ModelConfigFingerprint(model_);
      id.num_dense = num_dense_;
      id.num_shards = static_cast<uint32_t>(o_.servers.size());
      PEPNET_RETURN_IF_ERROR(CoordinatorStore::Open(env_, o_.data_dir, id, &store_));
      last_version_ = store_->record().last_version();
      last_base_ = store_->record().last_base();
    }
    std::unique_ptr<FrameListener> listener;
    PEPNET_RETURN_IF_ERROR(CheckListenSecurity(o_.host, o_.secret, "--host"));
    PEPNET_RETURN_IF_ERROR(FrameListener::Listen(o_.host, o_.port, &listener));
    if (!o_.port_file.empty()) {
      PEPNET_RETURN_IF_ERROR(
          WriteFileDurably(env_, o_.port_file, std::to_string(listener->port()) + "\n"));
    }
    fprintf(stderr, "pepnet_coord: listening on %s:%d for %d workers%s%s\n", o_.host.c_str(),
            listener->port(), o_.num_workers,
            o_.secret.empty() ? " (no --secret_file: serving loopback only)"
            : o_.secret.tls() ? ", peers authenticated, TLS"
                              : ", peers authenticated",
            o_.admin_port ? ("; admin HTTP on port " + std::to_string(o_.admin_port)).c_str() : "");
    if (store_) {
      const proto::CoordinatorRecord& r = store_->record();
      if (r.committed_pass() == 0) {
        fprintf(stderr, "pepnet_coord: a new run, recorded in %s\n", o_.data_dir.c_str());
      } else {
        fprintf(stderr,
                "pepnet_coord: resuming after committed pass %u (%s), version %llu, recorded in "
                "%s\n",
                r.committed_pass(),
                r.done_passes().empty() ? "" : r.done_passes().rbegin()->c_str(),
                static_cast<unsigned long long>(r.last_version()), o_.data_dir.c_str());
      }
    }
    // One epoch per membership of the cluster: the first, and one after every recovery.
    for (;;) {
      Status st = RunEpoch(listener.get());
      progress_.Clear();  // what follows is not mixed into a redrawn progress line
      if (st.ok()) return st;
      const bool recover = store_ && Recoverable(st);
      Report(false, (recover ? "recovering from: " : "failed: ") + st.message());
      if (o_.status) o_.status->Set("workers", "none joined");
      Broadcast(Fail(st.ToString(), recover));
      // Workers waiting on the shards for a dense step of the pass fail now, and read the
      // reason just sent (a dead shard fails its own; nothing to wait for there).
      if (client_ && running_pass_ != 0) client_->AbortDenseSums(running_pass_);
      LetWorkersReadTheFailure();
      workers_.clear();
      client_.reset();
      if (!recover) return st;
      if (!recovering_) {
        recovering_ = true;
        recovery_start_ = Clock::now();
      } else if (RecoveryBudgetMs() <= 0) {
        return Status::DeadlineExceeded("the cluster did not recover within " +
                                        std::to_string(o_.recovery_timeout_ms / 1000) +
                                        " s: " + st.message());
      }
      // A failure that comes back every time (a request that always times out) would
      // retrain the same pass forever.
      if (committed_pass() != failed_after_pass_) {
        failed_after_pass_ = committed_pass();
        failures_ = 0;
      }
      if (++failures_ > kMaxRecoveriesPerPass) {
        return Status(st.code(), "pass " + std::to_string(committed_pass() + 1) + " failed " +
                                     std::to_string(failures_) +
                                     " times; the last time: " + st.message());
      }
      fprintf(stderr, "pepnet_coord: %s; recovering from committed pass %u\n",
              st.ToString().c_str(), committed_pass());
    }
  }

 private:
  uint32_t committed_pass() const { return store_ ? store_->record().committed_pass() : 0; }

  void Report(bool ready, const std::string& why_not) {
    if (o_.status == nullptr) return;
    if (ready) {
      o_.status->SetReady();
    } else {
      o_.status->SetNotReady(why_not);
    }
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

  // How long recovering may still take (the first epoch of a run without a record waits
  // as before: 10 minutes for its workers).
  int RecoveryBudgetMs() const {
    if (!recovering_) return o_.recovery_timeout_ms;
    const double spent = SecondsSince(recovery_start_) * 1000;
    return static_cast<int>(std::max(0.0, o_.recovery_timeout_ms - spent));
  }

  Status RunEpoch(FrameListener* listener) {
    Report(false,
           recovering_ ? "recovering: connecting to the shards" : "connecting to the shards");
    PEPNET_RETURN_IF_ERROR(ConnectShards());
    Report(true, "");
    if (o_.status) o_.status->Set("workers", "joining");
    PEPNET_RETURN_IF_ERROR(AcceptWorkers(listener));
    if (o_.status) o_.status->Set("workers", std::to_string(o_.num_workers) + " joined");
    if (recovering_) {
      fprintf(stderr,
              "pepnet_coord: the cluster is whole again after %.1f s; resuming at pass %u\n",
              SecondsSince(recovery_start_), committed_pass() + 1);
      recovering_ = false;
    }
    for (uint32_t pass = committed_pass() + 1;; ++pass) {
      bool finished = false;
      PEPNET_RETURN_IF_ERROR(RunPass(pass, &finished));
      if (finished) return Status::OK();
    }
  }

  // Connects to every shard (waiting for restarted ones, when recovering), brings each
  // to the committed pass, republishes a committed pass whose publish was cut short, and
  // leaves client_ connected with the shards' new epochs.
  Status ConnectShards() {
    ClientOptions options;
    options.servers = o_.servers;
    options.secret = o_.secret;
    options.role = PeerRole::kCoordinator;
    options.timeout_ms = 600000;  // exports of big tables take a while
    std::unique_ptr<PsClient> client;
    const auto deadline = Clock::now() + std::chrono::milliseconds(RecoveryBudgetMs());
    bool logged = false;
    for (int delay_ms = 100;; delay_ms = std::min(2 * delay_ms, 2000)) {
      Status st = PsClient::Connect(options, &client);
      if (st.ok()) break;
      if (!store_ || !Recoverable(st)) return st;
      if (Clock::now() >= deadline) {
        return Status::DeadlineExceeded("recovering: " + st.message() + " for " +
                                        std::to_string(o_.recovery_timeout_ms / 1000) + " s");
      }
      if (!logged) {
        fprintf(stderr, "pepnet_coord: waiting for the shards: %s\n", st.message().c_str());
        logged = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    }
    const std::vector<proto::PingReply>& shards = client->shard_info();
    durable_shards_ = shards[0].durable();
    for (size_t s = 0; s < shards.size(); ++s) {
      if (shards[s].durable() != durable_shards_) {
        return Status::InvalidArgument(
            "shard 0 " + std::string(durable_shards_ ? "keeps" : "keeps no") +
            " storage but shard " + std::to_string(s) + " (" + o_.servers[s] + ") " +
            (durable_shards_ ? "none" : "does") + "; give every pepnet_ps a --data_dir, or none");
      }
    }
    if (store_ && !durable_shards_) {
      return Status::InvalidArgument(
          "the coordinator keeps a record (--data_dir) but the shards keep no storage: give "
          "every pepnet_ps a --data_dir");
    }
    if (!durable_shards_) {
      client_ = std::move(client);
      return Status::OK();
    }
    const uint32_t committed = committed_pass();
    for (size_t s = 0; s < shards.size(); ++s) {
      const proto::PingReply& p = shards[s];
      const bool at = p.committed_pass() == committed;
      const bool before =
          committed > 0 && p.committed_pass() + 1 == committed && p.prepared_pass() == committed;
      if (!at && !before) {
        return Status::InvalidArgument(
            "shard " + std::to_string(s) + " (" + o_.servers[s] + ") holds committed pass " +
            std::to_string(p.committed_pass()) + " but the cluster's is " +
            std::to_string(committed) +
            (store_ ? " (the coordinator's record in " + o_.data_dir + ")"
                    : " (the coordinator keeps no record: give it the --data_dir of the run)"));
      }
    }
    // A decided pass that some shard has only prepared is committed there now (the
    // coordinator stopped between its record and the shards' commit); everything a shard
    // did after the committed pass is undone.
    if (committed > 0) PEPNET_RETURN_IF_ERROR(client->CommitPass(committed));
    PEPNET_RETURN_IF_ERROR(client->RollbackPass(committed));
    PEPNET_RETURN_IF_ERROR(PsClient::Connect(options, &client_));
    PEPNET_RETURN_IF_ERROR(ReportShards(committed));
    if (store_) AppendMetricsOnce(committed, store_->record().metrics_json());
    // Through the committed pass only: a pass that failed after counting is counted again.
    PEPNET_RETURN_IF_ERROR(RestoreRunAuc(store_ ? store_->record().run_auc() : std::string()));
    if (store_ && store_->record().committed_version() != 0 &&
        store_->record().committed_version() != store_->record().last_version()) {
      if (o_.publish_dir.empty()) {
        return Status::InvalidArgument(
            "the record says committed pass " + std::to_string(committed) +
            " is to be published as version " +
            std::to_string(store_->record().committed_version()) +
            ", but no --publish_dir is given: start the coordinator with the run's flags");
      }
      DenseState dense;
      PEPNET_RETURN_IF_ERROR(DecodeDenseState(store_->dense(), o_.data_dir, &dense));
      uint64_t rows = 0;
      PEPNET_RETURN_IF_ERROR(
          Publish(committed, *store_->record().done_passes().rbegin(), dense.params, &rows));
      fprintf(stderr, "pepnet_coord: republished committed pass %u as version %llu\n", committed,
              static_cast<unsigned long long>(last_version_));
    }
    return Status::OK();
  }

  // Where the shards stand and how long their tables took to load, once per epoch.
  Status ReportShards(uint32_t committed) {
    std::vector<proto::ServerStats> stats;
    PEPNET_RETURN_IF_ERROR(client_->Stats(&stats));
    std::string loads;
    uint64_t rows = 0, disk = 0;
    for (const proto::ServerStats& reply : stats) {
      const StatSet s = StatsFromProto(reply);
      char load[32];
      snprintf(load, sizeof(load), "%s%.2f s", loads.empty() ? "" : ", ",
               s.Value("pepnet_storage_load_seconds"));
      loads += load;
      rows += s.Value("pepnet_table_rows");
      disk += s.Value("pepnet_storage_disk_bytes");
    }
    fprintf(stderr,
            "pepnet_coord: shards at committed pass %u: %llu rows, %.1f MiB on disk; tables "
            "loaded in %s\n",
            committed, static_cast<unsigned long long>(rows), disk / 1048576.0, loads.c_str());
    return Status::OK();
  }

  Status AcceptWorkers(FrameListener* listener) {
    workers_.clear();
    workers_.resize(o_.num_workers);
    WorkerAcceptorOptions acceptor_options;
    acceptor_options.secret = &o_.secret;
    WorkerAcceptor acceptor(listener, acceptor_options);
    int joined = 0;
    const auto deadline = Clock::now() + std::chrono::milliseconds(RecoveryBudgetMs());
    while (joined < o_.num_workers) {
      const int left_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left_ms <= 0) {
        return Status::DeadlineExceeded(
            std::to_string(o_.num_workers - joined) + " of " + std::to_string(o_.num_workers) +
            " workers did not join within " + std::to_string(o_.recovery_timeout_ms / 1000) + " s");
      }
      std::unique_ptr<WorkerLink> link;
      proto::CoordMessage hello;
      Status st = acceptor.Next(left_ms, &link, &hello);
      if (st.code() == Status::kDeadlineExceeded) continue;  // the check above says so
      PEPNET_RETURN_IF_ERROR(st);
      const int i = static_cast<int>(hello.worker_index());
      if (hello.num_workers() != uint32_t(o_.num_workers) || i < 0 || i >= o_.num_workers ||
          (workers_[i] && !store_)) {
        const std::string error = "worker at " + link->peer() + " says it is worker " +
                                  std::to_string(i) + " of " + std::to_string(hello.num_workers()) +
                                  "; the cluster has " + std::to_string(o_.num_workers) +
                                  " workers and each index once";
        link->Send(Fail(error, false));
        return Status::InvalidArgument(error);
      }
      if (hello.model_fingerprint() != ModelConfigFingerprint(model_)) {
        const std::string error = "worker " + std::to_string(i) + " (" + link->peer() +
                                  ") runs a different model config than the coordinator's " +
                                  o_.model_config;
        link->Send(Fail(error, false));
        return Status::InvalidArgument(error);
      }
      if (workers_[i]) {
        // The same worker again: its earlier connection is from before it restarted.
        fprintf(stderr, "pepnet_coord: worker %d joined again from %s; dropping %s\n", i,
                link->peer().c_str(), workers_[i]->peer().c_str());
        workers_[i].reset();
        --joined;
      }
      proto::CoordMessage welcome;
      welcome.set_type(proto::COORD_HELLO);
      welcome.set_durable(store_ != nullptr);
      welcome.set_pass(committed_pass());
      welcome.set_num_dense(num_dense_);
      std::string payload;
      if (store_) {
        for (const std::string& name : store_->record().done_passes()) {
          welcome.add_done_passes(name);
        }
        payload = store_->dense();
      }
      st = link->Send(welcome, payload.data(), payload.size());
      if (!st.ok()) {
        fprintf(stderr, "pepnet_coord: worker %d (%s) left while joining: %s\n", i,
                link->peer().c_str(), st.ToString().c_str());
        continue;
      }
      link->Start(&mu_, &cv_);
      workers_[i] = std::move(link);
      ++joined;
    }
    return Status::OK();
  }

  // One message from every worker, of `type`; an error names the first worker that failed.
  Status Collect(proto::CoordType type, const std::string& phase, int timeout_ms,
                 std::vector<CoordEnvelope>* out) {
    out->assign(o_.num_workers, CoordEnvelope());
    std::vector<bool> have(o_.num_workers, false);
    const auto deadline =
        Clock::now() + std::chrono::milliseconds(timeout_ms > 0 ? timeout_ms : 1 << 30);
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
          const proto::CoordMessage& h = (*out)[i].header;
          if (h.type() == proto::COORD_ABORT) {
            const std::string what = Name(i) + " gave up during " + phase + ": " + h.error();
            return h.fatal() ? Status::InvalidArgument(what) : Status::Unavailable(what);
          }
          if (h.type() != type) {
            return Status::Internal(Name(i) + " sent message type " + std::to_string(h.type()) +
                                    " during " + phase);
          }
          continue;
        }
        if (!w.error_.ok()) {
          // A broken connection is a dead worker; an unparsable message is not.
          return Status(Recoverable(w.error_) ? Status::kUnavailable : w.error_.code(),
                        Name(i) + " failed during " + phase + ": " + w.error_.ToString());
        }
        ++missing;
      }
      if (missing == 0) return Status::OK();
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
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
    std::vector<CoordEnvelope> msgs;
    // Workers may wait long for the next pass folder: no timeout here, but a worker that
    // dies is noticed at once.
    PEPNET_RETURN_IF_ERROR(
        Collect(proto::COORD_BEGIN_PASS, "the start of pass " + std::to_string(pass), 0, &msgs));
    int done = 0;
    for (const CoordEnvelope& m : msgs) done += m.header.finished();
    if (done == o_.num_workers) {
      proto::CoordMessage reply;
      reply.set_type(proto::COORD_BEGIN_PASS);
      reply.set_finished(true);
      Broadcast(reply);
      fprintf(stderr, "pepnet_coord: every worker has finished; %u passes\n", pass - 1);
      if (pass > 1) {
        printf("%s\n", RunAucText(task_names_, run_auc_, pass - 1).c_str());
        fflush(stdout);
      }
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
    running_pass_ = pass;
    if (o_.status) o_.status->Set("pass", std::to_string(pass) + " (" + name + ")");
    proto::CoordMessage begin;
    begin.set_type(proto::COORD_BEGIN_PASS);
    begin.set_pass(pass);
    begin.set_pass_name(name);
    Broadcast(begin);
    const auto start = Clock::now();
    progress_.BeginPass(pass, name, last_pass_samples_, /*exact=*/false);
    PEPNET_RETURN_IF_ERROR(RunSteps(pass));

    // End of pass: replicas, metrics, the shards' pass end, the commit, the publish.
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
      const CoordEnvelope& m = msgs[i];
      if (m.header.prediction_bytes() > m.payload.size()) {
        return Status::InvalidArgument(Name(i) + ": prediction bytes past the payload");
      }
      Status st = metrics.MergeSerialized(m.payload.data(), m.header.prediction_bytes());
      if (!st.ok()) return Status(st.code(), Name(i) + ": " + st.message());
    }
    const CoordEnvelope& first = msgs[0];
    const std::string dense_bytes = first.payload.substr(first.header.prediction_bytes());
    DenseState dense;
    PEPNET_RETURN_IF_ERROR(DecodeDenseState(dense_bytes, Name(0) + "'s dense state", &dense));
    if (dense.params.size() != num_dense_) {
      return Status::InvalidArgument(Name(0) + " sent " + std::to_string(dense.params.size()) +
                                     " dense parameters; the model has " +
                                     std::to_string(num_dense_));
    }
    for (const std::vector<float>* part : {&dense.params, &dense.m, &dense.v}) {
      const size_t bad = FirstNonFinite(part->data(), part->size());
      if (bad < part->size()) {
        return Status::InvalidArgument(
            Name(0) + "'s dense state after pass " + std::to_string(pass) + " is not finite (" +
            (part == &dense.params ? "parameter " : "Adam moment ") + std::to_string(bad) + " is " +
            std::to_string((*part)[bad]) + "); the pass is not committed or published");
      }
    }
    // End-of-pass hooks on every shard, then the commit and the publish see their deletions.
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
    const uint64_t version = o_.publish_dir.empty() ? 0 : last_version_ + 1;
    uint64_t samples = 0;
    for (const CoordEnvelope& m : msgs) samples += m.header.samples();
    const double trained_seconds = SecondsSince(start);
    std::vector<proto::ServerStats> stats;
    PEPNET_RETURN_IF_ERROR(client_->Stats(&stats));
    const StatSet table = ShardTotal(stats);
    // The run AUC through this pass, kept only once the pass is committed.
    std::vector<BinnedAuc> run_auc = run_auc_;
    for (size_t t = 0; t < run_auc.size(); ++t) {
      for (uint32_t d = 0; d < model_.num_domains(); ++d) {
        for (const Prediction& p : metrics.Predictions(t, d)) run_auc[t].Add(p.score, p.label > 0);
      }
    }
    std::string run_auc_bytes;
    for (const BinnedAuc& a : run_auc) run_auc_bytes += a.Serialize();
    PassLine line(metrics.ToJson(pass));
    line.Add("name", JsonString(name));
    line.Add("samples", std::to_string(samples));
    line.Add("seconds", JsonNumber(trained_seconds));
    line.Add("samples_per_s", JsonNumber(trained_seconds > 0 ? samples / trained_seconds : 0));
    line.Add("unix_ms", std::to_string(UnixMillis()));
    line.Add("table", TableJson(table, stats.size()));
    line.Add("run_auc", RunAucJson(task_names_, run_auc));
    CommitSummary commit;
    PEPNET_RETURN_IF_ERROR(
        Commit(pass, name, dense_bytes, version, line.text(), run_auc_bytes, &commit));
    run_auc_ = std::move(run_auc);
    uint64_t rows = 0;
    const auto publish_start = Clock::now();
    if (version) PEPNET_RETURN_IF_ERROR(Publish(pass, name, dense.params, &rows));
    const double publish_seconds = SecondsSince(publish_start);
    // Again after the commit: its bytes on disk.
    stats.clear();
    PEPNET_RETURN_IF_ERROR(client_->Stats(&stats));
    if (commit.durable) {
      const uint64_t disk = ShardTotal(stats).Value("pepnet_storage_disk_bytes");
      line.Add("commit", "{\"seconds\":" + JsonNumber(commit.seconds) +
                             ",\"rows_written\":" + std::to_string(commit.rows_written) +
                             ",\"rows_deleted\":" + std::to_string(commit.rows_deleted) +
                             ",\"bytes_on_disk\":" + std::to_string(disk) + "}");
    }
    if (version) {
      line.Add("publish", "{\"seconds\":" + JsonNumber(publish_seconds) + ",\"version\":" +
                              std::to_string(version) + ",\"rows\":" + std::to_string(rows) + "}");
    }
    AppendMetricsOnce(pass, line.text());
    samples_total_ += samples;
    if (o_.status) {
      PassFigures f;
      f.pass = pass;
      f.samples = samples;
      f.seconds = trained_seconds;
      f.commit_seconds = commit.durable ? commit.seconds : -1;
      f.publish_seconds = version ? publish_seconds : -1;
      f.version = version;
      f.samples_total = samples_total_;
      StatSet figures;
      AddPassFigures(f, metrics, task_names_, run_auc_, &figures);
      o_.status->SetStats(std::move(figures));
    }
    last_pass_samples_ = samples;
    progress_.Clear();
    PrintPassLine(metrics, pass, name, SecondsSince(start), stats, deleted, deleted_total, version,
                  rows, commit);
    proto::CoordMessage end;
    end.set_type(proto::COORD_END_PASS);
    end.set_pass(pass);
    end.set_version(version);
    Broadcast(end);
    running_pass_ = 0;
    return Status::OK();
  }

  // The pass's dense steps, which the workers sum on the shards: their progress, until
  // every worker reports the step in which no worker had data. A worker that gives up,
  // dies or stays silent for the step timeout fails the pass.
  Status RunSteps(uint32_t pass) {
    const int n = o_.num_workers;
    std::vector<bool> done(n, false);
    std::vector<uint64_t> samples(n, 0), loss_count(n, 0);
    std::vector<double> loss_sum(n, 0);
    std::vector<Clock::time_point> heard(n, Clock::now());
    const auto timeout = std::chrono::milliseconds(o_.step_timeout_ms);
    std::vector<uint64_t> next_step(n, 0);
    // The step each worker is at, for messages.
    const auto phase = [&](int i) {
      return "pass " + std::to_string(pass) + " step " + std::to_string(next_step[i]);
    };
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      bool moved = false;
      int left = 0;
      for (int i = 0; i < n; ++i) {
        WorkerLink& w = *workers_[i];
        while (!done[i] && !w.queue_.empty()) {
          const CoordEnvelope m = std::move(w.queue_.front());
          w.queue_.pop_front();
          const proto::CoordMessage& h = m.header;
          if (h.type() == proto::COORD_ABORT) {
            const std::string what = Name(i) + " gave up during " + phase(i) + ": " + h.error();
            return h.fatal() ? Status::InvalidArgument(what) : Status::Unavailable(what);
          }
          if (h.type() != proto::COORD_STEP) {
            return Status::Internal(Name(i) + " sent message type " + std::to_string(h.type()) +
                                    " during " + phase(i));
          }
          next_step[i] = h.step() + 1;
          samples[i] = h.samples();
          loss_sum[i] = h.loss_sum();
          loss_count[i] = h.loss_count();
          heard[i] = Clock::now();
          done[i] = h.all_done();
          moved = true;
        }
        if (done[i]) continue;
        if (!w.error_.ok()) {
          return Status(Recoverable(w.error_) ? Status::kUnavailable : w.error_.code(),
                        Name(i) + " failed during " + phase(i) + ": " + w.error_.ToString());
        }
        if (o_.step_timeout_ms > 0 && Clock::now() - heard[i] >= timeout) {
          // A dense step waits on the shards for its slowest worker, so all go silent
          // together: only a worker silent while others report is the one to blame.
          bool all_silent = true;
          for (int j = 0; j < n; ++j) {
            if (!done[j] && Clock::now() - heard[j] < timeout) all_silent = false;
          }
          if (all_silent && n > 1) {
            return Status::DeadlineExceeded(
                "no worker reported a dense step for " + std::to_string(o_.step_timeout_ms / 1000) +
                " s during pass " + std::to_string(pass) + " (" + Name(i) + " was at " + phase(i) +
                "): a step waits on the shards for every worker; their logs name the "
                "one missing");
          }
          return Status::DeadlineExceeded(Name(i) + " sent nothing for " +
                                          std::to_string(o_.step_timeout_ms / 1000) + " s during " +
                                          phase(i));
        }
        ++left;
      }
      if (moved) {
        uint64_t total = 0, count = 0;
        double loss = 0;
        for (int i = 0; i < n; ++i) {
          total += samples[i];
          loss += loss_sum[i];
          count += loss_count[i];
        }
        progress_.Update(total, count ? loss / count : 0);
      }
      if (left == 0) return Status::OK();
      cv_.wait_for(lock, std::chrono::milliseconds(
                             o_.step_timeout_ms > 0 ? std::min(o_.step_timeout_ms, 1000) : 1000));
    }
  }

  // The two-phase commit of pass `pass` (docs/architecture.md, "Commits and recovery"):
  // every shard prepares, the dense checkpoint is written, the record names both (the
  // commit point), every shard commits.
  Status Commit(uint32_t pass, const std::string& name, const std::string& dense_bytes,
                uint64_t version, const std::string& metrics_json, const std::string& run_auc,
                CommitSummary* out) {
    if (!durable_shards_) return Status::OK();
    const auto start = Clock::now();
    std::vector<proto::PrepareReply> prepared;
    PEPNET_RETURN_IF_ERROR(client_->PreparePass(pass, &prepared));
    PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_prepare"));
    if (store_) {
      PEPNET_RETURN_IF_ERROR(store_->WriteDense(pass, dense_bytes));
      PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_dense"));
      PEPNET_RETURN_IF_ERROR(store_->Commit(pass, name, version, metrics_json, run_auc));
      PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_record"));
    }
    PEPNET_RETURN_IF_ERROR(client_->CommitPass(pass));
    PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_commit"));
    out->durable = true;
    out->seconds = SecondsSince(start);
    for (const proto::PrepareReply& p : prepared) {
      out->rows_written += p.rows_written();
      out->rows_deleted += p.rows_deleted();
    }
    return Status::OK();
  }

  // Publishes pass `pass` as version last_version_ + 1: every shard writes its rows (all
  // of them for a base, the pass's for a delta) into the version's temporary folder, then
  // the dense parameters and the manifest, then the rename. Repeatable: a version already
  // in place (a crash after the rename) is taken as published.
  Status Publish(uint32_t pass, const std::string& pass_name, const std::vector<float>& dense,
                 uint64_t* total_rows) {
    const uint64_t version = last_version_ + 1;
    const bool base = last_base_ == 0 || version - last_base_ >= uint64_t(o_.base_every);
    *total_rows = 0;
    // Only a resumed run finds its own versions in place.
    if (!store_ || !VersionWriter::IsPublished(o_.publish_dir, version, pass, pass_name)) {
      VersionWriter writer(env_, o_.publish_dir, version);
      PEPNET_RETURN_IF_ERROR(writer.Begin());
      std::vector<proto::ExportReply> replies;
      PEPNET_RETURN_IF_ERROR(client_->ExportRows(pass, base, version, &replies));
      PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_export"));
      proto::ModelManifest manifest;
      manifest.set_version(version);
      manifest.set_pass(pass);
      manifest.set_pass_name(pass_name);
      manifest.set_parent_version(version - 1);
      manifest.set_is_base(base);
      manifest.set_base_version(base ? version : last_base_);
      manifest.set_table_seed(o_.table_seed);
      *manifest.mutable_model() = model_;
      uint64_t total_deleted = 0;
      for (uint32_t s = 0; s < replies.size(); ++s) {
        proto::RowFile* f = manifest.add_rows();
        f->set_shard(s);
        f->set_path(RowFileName(s));
        f->set_rows(replies[s].rows());
        f->set_bytes(replies[s].bytes());
        f->set_checksum(replies[s].checksum());
        f->set_deleted(replies[s].deleted());
        *total_rows += replies[s].rows();
        total_deleted += replies[s].deleted();
      }
      manifest.set_total_rows(*total_rows);
      manifest.set_total_deleted(total_deleted);
      PEPNET_RETURN_IF_ERROR(writer.Finish(dense.data(), dense.size(), &manifest));
    }
    PEPNET_RETURN_IF_ERROR(env_->StepPoint("coord.after_publish"));
    if (store_) PEPNET_RETURN_IF_ERROR(store_->MarkPublished(version, base));
    last_version_ = version;
    if (base) last_base_ = version;
    return Status::OK();
  }

  // The run AUC counters of the record (empty: none yet, every counter 0).
  Status RestoreRunAuc(const std::string& bytes) {
    run_auc_.assign(task_names_.size(), BinnedAuc());
    if (bytes.empty()) return Status::OK();
    const size_t each = bytes.size() / std::max<size_t>(1, run_auc_.size());
    if (each * run_auc_.size() != bytes.size()) {
      return Status::Corruption(o_.data_dir + ": run AUC counters of " +
                                std::to_string(bytes.size()) + " bytes for " +
                                std::to_string(run_auc_.size()) + " tasks");
    }
    for (size_t t = 0; t < run_auc_.size(); ++t) {
      Status st = run_auc_[t].Deserialize(bytes.substr(t * each, each));
      if (!st.ok()) return Status(st.code(), o_.data_dir + ": " + st.message());
    }
    return Status::OK();
  }

  // Puts the pass's line into --metrics_out once: a restart after the commit adds the
  // line the record kept, and a pass trained again after a rollback was never committed,
  // never added. The file is rewritten whole and durably, so a crash leaves no half line.
  void AppendMetricsOnce(uint32_t pass, const std::string& json) {
    if (o_.metrics_out.empty() || json.empty()) return;
    const std::string mark = "{\"pass\":" + std::to_string(pass) + ",";
    // The record keeps the line without its commit and publish keys, which come last: a
    // line that begins as `json` does (without its closing brace) is this pass's already.
    const std::string stem = json.substr(0, json.size() - 1);
    std::string text, kept;
    env_->ReadFile(o_.metrics_out, &text);  // absent: a new file
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = std::min(text.find('\n', start), text.size());
      const std::string line = text.substr(start, end - start);
      if (line.compare(0, stem.size(), stem) == 0 && end < text.size()) return;
      // Another line of this pass is an earlier run's, or the record's shorter one.
      const bool replaced = line.compare(0, mark.size(), mark) == 0;
      if (!replaced && end < text.size()) kept += line + "\n";  // not a line cut short
      start = end + 1;
    }
    const Status st = WriteFileDurably(env_, o_.metrics_out, kept + json + "\n");
    if (!st.ok()) fprintf(stderr, "pepnet_coord: --metrics_out: %s\n", st.ToString().c_str());
  }

  void PrintPassLine(const PassMetrics& metrics, uint32_t pass, const std::string& name,
                     double seconds, const std::vector<proto::ServerStats>& stats,
                     const uint64_t* deleted, uint64_t deleted_total, uint64_t version,
                     uint64_t rows, const CommitSummary& commit) {
    const StatSet total = ShardTotal(stats);
    const uint64_t table_rows = total.Value("pepnet_table_rows");
    const uint64_t table_bytes = total.Value("pepnet_table_used_bytes");
    const uint64_t disk_bytes = total.Value("pepnet_storage_disk_bytes");
    printf("%s", metrics.ToText(pass).c_str());
    printf("pass %u (%s): %.1f s; table %llu rows, %.1f MiB on %zu shards", pass, name.c_str(),
           seconds, static_cast<unsigned long long>(table_rows), table_bytes / 1048576.0,
           stats.size());
    // Deleted during the pass, to make room (the pass end's deletions are in `deleted`).
    uint64_t evicted = 0;
    for (const Stat& st : total.stats()) {
      const std::string& reason = st.LabelValue("reason");
      if (st.name == "pepnet_table_slot_pass_deleted_rows" &&
          (reason == DeleteReasonName(DeleteReason::kMemory) ||
           reason == DeleteReasonName(DeleteReason::kCap))) {
        evicted += static_cast<uint64_t>(st.value);
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
    if (commit.durable) {
      printf("; committed pass %u (%llu rows written, %llu deleted, %.1f MiB on disk, %.2f s)",
             pass, static_cast<unsigned long long>(commit.rows_written),
             static_cast<unsigned long long>(commit.rows_deleted), disk_bytes / 1048576.0,
             commit.seconds);
    }
    if (version) {
      printf("; published version %llu (%llu rows)", static_cast<unsigned long long>(version),
             static_cast<unsigned long long>(rows));
    }
    printf("\n");
    fflush(stdout);
  }

  const CoordinatorOptions o_;
  Env* const env_;
  proto::ModelConfig model_;
  std::vector<std::string> task_names_;
  std::vector<BinnedAuc> run_auc_;  // per task, through the last committed pass
  uint64_t samples_total_ = 0;
  uint64_t last_pass_samples_ = 0;  // the guess of the next pass's size
  ProgressLine progress_{stderr, o_.progress_interval_s};
  size_t num_dense_ = 0;
  std::unique_ptr<CoordinatorStore> store_;
  std::unique_ptr<PsClient> client_;
  bool durable_shards_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<WorkerLink>> workers_;
  uint64_t last_version_ = 0, last_base_ = 0;
  bool recovering_ = false;
  Clock::time_point recovery_start_;
  static constexpr int kMaxRecoveriesPerPass = 5;
  uint32_t running_pass_ = 0;       // begun on the shards and not ended (0: none)
  uint32_t failed_after_pass_ = 0;  // the committed pass when the last failure came
  int failures_ = 0;                // failures since the cluster committed that pass
};

}  // namespace

Status RunCoordinator(const CoordinatorOptions& options) {
  if (options.num_workers < 1) return Status::InvalidArgument("--num_workers must be >= 1");
  if (options.base_every < 1) return Status::InvalidArgument("--base_every must be >= 1");
  if (options.servers.empty()) return Status::InvalidArgument("--servers is required");
  Coordinator c(options);
  return c.Run();
}

}  // namespace pepnet
