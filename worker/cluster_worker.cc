#include "worker/cluster_worker.h"

#include <glog/logging.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

#include "common/frame_channel.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/cluster.pb.h"
#include "proto/model_config.pb.h"
#include "worker/batch_prefetcher.h"
#include "worker/data_reader.h"
#include "worker/dense_state.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

namespace pepnet {
namespace {

using Clock = std::chrono::steady_clock;

bool Recoverable(const Status& st) {
  return st.code() == Status::kUnavailable || st.code() == Status::kDeadlineExceeded;
}

// The coordinator's conversation: framed messages, with its COORD_FAIL turned into the
// error it carries (Unavailable when the cluster recovers, so the worker rejoins).
class CoordinatorChannel {
 public:
  explicit CoordinatorChannel(std::unique_ptr<FrameChannel> channel)
      : channel_(std::move(channel)) {}

  // A failed send usually means the coordinator gave up on the cluster: its FAIL message
  // (the reason) may still be waiting to be read.
  Status Send(const proto::CoordMessage& m, const void* payload = nullptr, size_t len = 0) {
    Status st = channel_->Send(m.SerializeAsString(), payload, len);
    if (st.ok()) return st;
    failed_ = true;
    std::string header;
    PayloadBuffer reply_payload;
    proto::CoordMessage reply;
    if (channel_->Receive(&header, &reply_payload, 2000).ok() && reply.ParseFromString(header) &&
        reply.type() == proto::COORD_FAIL) {
      return FailureOf(reply);
    }
    return st;
  }

  // The coordinator's FAIL, if it sent one within `timeout_ms`; else OK.
  Status FailureIfAny(int timeout_ms) {
    std::string header;
    PayloadBuffer payload;
    proto::CoordMessage m;
    if (channel_->Receive(&header, &payload, timeout_ms).ok() && m.ParseFromString(header) &&
        m.type() == proto::COORD_FAIL) {
      failed_ = true;
      return FailureOf(m);
    }
    return Status::OK();
  }

  Status Receive(proto::CoordMessage* m, PayloadBuffer* payload) {
    std::string header;
    Status st = channel_->Receive(&header, payload);
    if (st.ok() && !m->ParseFromString(header)) {
      st = Status::Corruption("unparsable coordinator message");
    }
    if (st.ok() && m->type() == proto::COORD_FAIL) st = FailureOf(*m);
    failed_ = failed_ || !st.ok();
    return st;
  }

  // Whether the coordinator failed the cluster or the connection to it broke.
  bool failed() const { return failed_; }

  static Status FailureOf(const proto::CoordMessage& fail) {
    if (fail.retry()) return Status::Unavailable("the cluster is recovering: " + fail.error());
    return Status::Internal("the cluster failed: " + fail.error());
  }

 private:
  std::unique_ptr<FrameChannel> channel_;
  bool failed_ = false;
};

// The dense sum of a step: on the shards (a cluster of one keeps its own gradient), then
// the step's progress to the coordinator.
class ShardReducer : public DenseReducer {
 public:
  ShardReducer(CoordinatorChannel* channel, PsClient* client, int worker_index, int num_workers)
      : channel_(channel),
        client_(client),
        worker_index_(worker_index),
        num_workers_(num_workers) {}

  // The pass the steps belong to; `samples` and `metrics`: what each step reports for the
  // coordinator's progress line (borrowed; null: none).
  void BeginPass(uint32_t pass, const uint64_t* samples, const PassMetrics* metrics) {
    pass_ = pass;
    step_ = 0;
    samples_ = samples;
    metrics_ = metrics;
  }
  void EndPass() {
    samples_ = nullptr;
    metrics_ = nullptr;
  }

  Status AllReduce(bool has_data, std::vector<float>* grads, bool* all_done,
                   const PartReady& ready) override {
    if (num_workers_ == 1) {
      // Alone, this worker's gradient is the sum; a non-finite one would poison the model.
      if (has_data) {
        const size_t bad = FirstNonFinite(*grads);
        if (bad < grads->size()) {
          return Status::InvalidArgument("worker " + std::to_string(worker_index_) +
                                         " computed a non-finite dense gradient "
                                         "in pass " +
                                         std::to_string(pass_) + " step " + std::to_string(step_) +
                                         " (value " + std::to_string(bad) + " is " +
                                         std::to_string((*grads)[bad]) +
                                         "); nothing of the pass is committed or published");
        }
      }
      *all_done = !has_data;
      if (has_data) ready(0, grads->size());
    } else {
      DenseStepInfo info;
      info.pass = pass_;
      info.step = step_;
      info.worker_index = static_cast<uint32_t>(worker_index_);
      info.num_workers = static_cast<uint32_t>(num_workers_);
      info.has_data = has_data;
      uint32_t with_data = 0;
      Status st = client_->DenseSum(info, grads, &with_data, ready);
      if (!st.ok()) {
        // A step abandoned because the coordinator gave up: its reason says more.
        if (st.code() == Status::kUnavailable) {
          Status why = channel_->FailureIfAny(2000);
          if (!why.ok()) return why;
        }
        return st;
      }
      *all_done = with_data == 0;
    }
    proto::CoordMessage m;
    m.set_type(proto::COORD_STEP);
    m.set_step(step_++);
    m.set_has_data(has_data);
    m.set_all_done(*all_done);
    if (samples_ != nullptr) m.set_samples(*samples_);
    if (metrics_ != nullptr) {
      m.set_loss_sum(metrics_->loss_sum());
      m.set_loss_count(metrics_->loss_count());
    }
    return channel_->Send(m);
  }

  static size_t FirstNonFinite(const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) return i;
    }
    return v.size();
  }

  static Status Unexpected(const proto::CoordMessage& m) {
    return Status::Internal("unexpected coordinator message type " + std::to_string(m.type()));
  }

 private:
  CoordinatorChannel* channel_;
  PsClient* client_;
  const int worker_index_;
  const int num_workers_;
  uint32_t pass_ = 0;
  uint64_t step_ = 0;
  const uint64_t* samples_ = nullptr;
  const PassMetrics* metrics_ = nullptr;
};

// One membership of the cluster: join, train passes until done or a failure.
class Session {
 public:
  Session(const proto::ModelConfig& config, const ClusterWorkerOptions& o)
      : config_(config), o_(o) {
    for (const auto& t : config.task()) task_names_.push_back(t.name());
  }

  // *welcomed: the coordinator took the worker in; *durable: it said it recovers (so a
  // lost coordinator is waited for).
  Status Run(int connect_timeout_ms, bool* welcomed, bool* durable) {
    Report("connecting to the coordinator");
    std::unique_ptr<FrameChannel> raw;
    PEPNET_RETURN_IF_ERROR(FrameChannel::Connect(o_.coordinator_host, o_.coordinator_port,
                                                 connect_timeout_ms, o_.secret, PeerRole::kWorker,
                                                 &raw));
    coord_.reset(new CoordinatorChannel(std::move(raw)));
    proto::CoordMessage hello;
    hello.set_type(proto::COORD_HELLO);
    hello.set_worker_index(o_.worker_index);
    hello.set_num_workers(o_.num_workers);
    hello.set_model_fingerprint(ModelConfigFingerprint(config_));
    PEPNET_RETURN_IF_ERROR(coord_->Send(hello));
    // The coordinator answers once the cluster is whole (it may be recovering).
    proto::CoordMessage welcome;
    PayloadBuffer payload;
    PEPNET_RETURN_IF_ERROR(coord_->Receive(&welcome, &payload));
    if (welcome.type() != proto::COORD_HELLO) return ShardReducer::Unexpected(welcome);
    *welcomed = true;
    *durable = welcome.durable();
    std::vector<std::string> done(welcome.done_passes().begin(), welcome.done_passes().end());
    PassSource source(o_.source);
    Status st = source.Resume(done);
    if (!st.ok()) return Abort(st);

    ClientOptions client_options;
    client_options.servers = o_.servers;
    client_options.secret = o_.secret;
    client_options.role = PeerRole::kWorker;
    std::unique_ptr<PsClient> client;
    Report("connecting to the shards");
    st = PsClient::Connect(client_options, &client);
    if (!st.ok()) return Abort(st);
    Report("");
    std::unique_ptr<EmbeddingStore> store = MakeRemoteStore(client.get());
    Trainer trainer(config_, store.get(), o_.seed, o_.threads);
    if (welcome.durable() && welcome.pass() > 0) {
      DenseState dense;
      st = DecodeDenseState(std::string(payload.data(), payload.size()),
                            "the coordinator's dense state", &dense);
      if (st.ok()) st = trainer.LoadDenseState(dense);
      if (!st.ok()) return Abort(st);
      LOG(INFO) << "joined after committed pass " << welcome.pass() << " ("
                << (done.empty() ? "" : done.back()) << "), dense state of Adam step "
                << dense.step;
    }
    ShardReducer reducer(coord_.get(), client.get(), o_.worker_index, o_.num_workers);
    trainer.set_dense_reducer(&reducer);
    for (;;) {
      const std::string folder = source.Next();
      proto::CoordMessage begin;
      begin.set_type(proto::COORD_BEGIN_PASS);
      begin.set_worker_index(o_.worker_index);
      begin.set_finished(folder.empty());
      begin.set_pass_name(folder);
      PEPNET_RETURN_IF_ERROR(coord_->Send(begin));
      proto::CoordMessage reply;
      PEPNET_RETURN_IF_ERROR(coord_->Receive(&reply, &payload));
      if (reply.finished()) {
        Report("finished: every pass trained");
        return Status::OK();
      }
      if (o_.status) o_.status->Set("pass", std::to_string(reply.pass()) + " (" + folder + ")");
      st = TrainPass(reply.pass(), folder, &trainer, &reducer);
      if (!st.ok()) return st;
    }
  }

 private:
  // Empty: ready.
  void Report(const std::string& why_not) {
    if (o_.status == nullptr) return;
    if (why_not.empty()) {
      o_.status->SetReady();
    } else {
      o_.status->SetNotReady(why_not);
    }
  }

  Status TrainPass(uint32_t pass, const std::string& folder, Trainer* trainer,
                   ShardReducer* reducer) {
    const std::vector<std::string> all = PassSource::FilesOf(folder);
    std::vector<std::string> files;
    for (const std::string& f : PassSource::ShareOf(all, o_.worker_index, o_.num_workers)) {
      files.push_back(folder + "/" + f);
    }
    LOG(INFO) << "pass " << pass << " (" << folder << "): training on " << files.size()
              << " of its " << all.size() << " files";
    PassMetrics metrics(task_names_, config_.num_domains());
    DataReader reader(&config_, files);
    uint64_t samples = 0;
    reducer->BeginPass(pass, &samples, &metrics);
    const auto start = std::chrono::steady_clock::now();
    Status st;
    {
      // The batch after this one is read first, so that the step can prefetch its rows.
      BatchPrefetcher prefetcher(&reader, config_.batch_size());
      Batch batch, next;
      bool done = false;
      st = prefetcher.Next(&batch, &done);
      while (st.ok() && batch.size > 0) {
        next.size = 0;
        if (!done) st = prefetcher.Next(&next, &done);
        if (!st.ok()) break;
        const bool overlap = o_.prefetch_rows && next.size > 0;
        st = trainer->TrainBatch(batch, &metrics, overlap ? &next : nullptr);
        samples += batch.size;
        std::swap(batch, next);
      }
    }
    // The last push is acknowledged before the pass can end (or the worker aborts).
    const Status flushed = trainer->Flush();
    if (st.ok()) st = flushed;
    // Out of data: take part in the other workers' remaining steps.
    bool all_done = false;
    while (st.ok() && !all_done) st = trainer->IdleStep(&all_done);
    reducer->EndPass();
    if (!st.ok()) {
      return Abort(st.WithContext("pass " + std::to_string(pass) + " (" + folder + ")"));
    }

    proto::CoordMessage end;
    end.set_type(proto::COORD_END_PASS);
    end.set_worker_index(o_.worker_index);
    end.set_pass(pass);
    end.set_checksum(trainer->DenseChecksum());
    end.set_samples(samples);
    end.set_loss_sum(metrics.loss_sum());
    end.set_loss_count(metrics.loss_count());
    std::string body = metrics.Serialize();
    end.set_prediction_bytes(body.size());
    if (o_.worker_index == 0) {
      // Weights and optimizer state of the same moment: the commit's dense checkpoint.
      DenseState dense;
      trainer->CaptureDenseState(&dense);
      end.set_num_dense(dense.params.size());
      body += EncodeDenseState(dense);
    }
    PEPNET_RETURN_IF_ERROR(coord_->Send(end, body.data(), body.size()));
    proto::CoordMessage reply;
    PayloadBuffer payload;
    st = coord_->Receive(&reply, &payload);
    if (!st.ok()) return st.WithContext("pass " + std::to_string(pass));
    char checksum[32];
    snprintf(checksum, sizeof(checksum), "%016llx",
             static_cast<unsigned long long>(end.checksum()));
    samples_total_ += samples;
    if (o_.status) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      StatSet figures;
      figures.Gauge("pepnet_worker_pass", "The last pass this worker trained.", pass);
      figures.Gauge("pepnet_worker_pass_samples", "Samples of this worker's share of the pass.",
                    samples);
      figures.Counter("pepnet_worker_samples_total", "Samples this worker trained since start.",
                      samples_total_);
      figures.Gauge("pepnet_worker_samples_per_second", "This worker's samples/s in the last pass.",
                    seconds > 0 ? samples / seconds : 0);
      figures.Gauge("pepnet_worker_pass_logloss",
                    "Mean log loss of this worker's predictions in the last pass.",
                    metrics.running_loss());
      o_.status->SetStats(std::move(figures));
    }
    LOG(INFO) << "pass " << pass << " (" << folder << "): trained " << samples << " samples from "
              << files.size() << " files; dense checksum " << checksum << "; published version "
              << reply.version();
    return Status::OK();
  }

  // Tells the coordinator why this worker cannot go on (unless the failure came from the
  // coordinator itself), and returns the reason.
  Status Abort(const Status& why) {
    if (coord_->failed()) return why;
    proto::CoordMessage abort;
    abort.set_type(proto::COORD_ABORT);
    abort.set_worker_index(o_.worker_index);
    abort.set_error(why.ToString());
    abort.set_fatal(!Recoverable(why));
    coord_->Send(abort);
    return why;
  }

  const proto::ModelConfig& config_;
  const ClusterWorkerOptions& o_;
  std::vector<std::string> task_names_;
  std::unique_ptr<CoordinatorChannel> coord_;
  uint64_t samples_total_ = 0;
};

}  // namespace

Status RunClusterWorker(const proto::ModelConfig& config, const ClusterWorkerOptions& o) {
  bool durable = false;  // what the coordinator said last
  bool welcomed_once = false;
  Clock::time_point trying_since = Clock::now();
  int delay_ms = 100;
  Status last;
  for (;;) {
    const int budget_ms = o.reconnect_timeout_ms -
                          static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               Clock::now() - trying_since)
                                               .count());
    if (budget_ms <= 0) {
      return Status::DeadlineExceeded("could not join the cluster within " +
                                      std::to_string(o.reconnect_timeout_ms / 1000) +
                                      " s: " + last.message());
    }
    Session session(config, o);
    bool welcomed = false;
    last = session.Run(budget_ms, &welcomed, &durable);
    if (last.ok()) return last;
    if (welcomed) {
      welcomed_once = true;
      trying_since = Clock::now();
      delay_ms = 100;
    }
    // A run without recovery ends with its first failure; before the coordinator spoke
    // (it may be starting or recovering), a dead peer is waited for.
    if (!Recoverable(last) || (welcomed_once && !durable)) return last;
    if (o.status) o.status->SetNotReady("rejoining the cluster after: " + last.message());
    LOG(WARNING) << last.ToString() << "; rejoining the cluster in " << delay_ms << " ms";
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    delay_ms = std::min(2 * delay_ms, 2000);
  }
}

}  // namespace pepnet
