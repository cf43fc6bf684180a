#include "ps/request_handler.h"

#include <glog/logging.h>

#include <cmath>
#include <mutex>
#include <random>

#include "common/env.h"
#include "common/hash.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/shard_store.h"
#include "ps/table_stats.h"
#include "publish/manifest.h"
#include "publish/row_file.h"

namespace pepnet {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "payloads are read in place as little-endian uint64/float32");

// Largest show or click one push may carry for a key.
constexpr float kMaxCount = 1e9f;

Status LengthMismatch(const char* what, uint64_t got, uint64_t want) {
  return Status::InvalidArgument(std::string(what) + ": payload is " + std::to_string(got) +
                                 " bytes but the header implies " + std::to_string(want));
}

// A key routed here by a client with a different shard count would silently split the
// table; refuse it instead.
Status CheckOwnership(const uint64_t* keys, uint64_t n, uint32_t shard_id, uint32_t num_shards) {
  for (uint64_t i = 0; i < n; ++i) {
    const uint32_t owner = ShardOfKey(keys[i], num_shards);
    if (owner != shard_id) {
      return Status::InvalidArgument("key " + FormatKey(keys[i]) + " belongs to shard " +
                                     std::to_string(owner) + " of " + std::to_string(num_shards) +
                                     ", not to this shard " + std::to_string(shard_id));
    }
  }
  return Status::OK();
}

uint64_t NewEpoch() {
  std::random_device rd;
  return ((uint64_t{rd()} << 32) ^ rd()) | 1;  // never 0, which means "unchecked"
}

}  // namespace

RequestHandler::RequestHandler(EmbeddingTable* table, ShardStore* store, Env* env,
                               const HandlerOptions& options)
    : table_(table),
      store_(store),
      env_(env),
      shard_id_(options.shard_id),
      num_shards_(options.num_shards),
      max_reply_bytes_(options.max_reply_bytes),
      export_dir_(options.export_dir),
      max_abs_gradient_(options.max_abs_gradient),
      start_(std::chrono::steady_clock::now()),
      epoch_(NewEpoch()),
      dense_sum_(options.shard_id, options.num_shards, options.dense_sum_timeout_ms) {}

void RequestHandler::StopDenseSums() {
  dense_sum_.Close(Status::Unavailable(Shard() + " is shutting down"));
}

void RequestHandler::HandleDenseSum(const PeerSession& session, const proto::RequestHeader& request,
                                    const PayloadBuffer* payload, DenseSum::Done done) {
  const auto started = std::chrono::steady_clock::now();
  auto finish = [this, started, done = std::move(done)](DenseSumResult r) {
    if (!r.status.ok()) counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
    counters_.latency[proto::DENSE_SUM].ObserveSince(started);
    done(std::move(r));
  };
  // Checked and added under the same lock: a rollback (which holds it alone) cannot come
  // between, so a slice of before it never joins a step of after it.
  std::shared_lock<std::shared_mutex> lock(table_mu_);
  Status st;
  if (session.role != PeerRole::kWorker) {
    counters_.rejected_privileged.fetch_add(1, std::memory_order_relaxed);
    st = Status::InvalidArgument("DENSE_SUM comes only from workers; " + session.peer +
                                 " declared itself a " + RoleName(session.role));
  } else if (!fatal_.ok()) {
    st = fatal_;
  } else if (request.epoch() != 0 && request.epoch() != epoch_.load(std::memory_order_relaxed)) {
    st = StaleEpoch();
  } else if (request.pass() == 0 || request.pass() != table_->pass()) {
    st = Status::InvalidArgument("DENSE_SUM for pass " + std::to_string(request.pass()) + " but " +
                                 Shard() + " runs pass " + std::to_string(table_->pass()));
  }
  if (!st.ok()) {
    DenseSumResult r;
    r.status = st;
    finish(std::move(r));
    return;
  }
  DenseContribution c;
  c.pass = request.pass();
  c.step = request.dense().step();
  c.worker_index = request.dense().worker_index();
  c.num_workers = request.dense().num_workers();
  c.has_data = request.dense().has_data();
  c.dense_size = request.dense().dense_size();
  c.peer = session.peer;
  // Callbacks that run now only post replies: nothing here waits for the lock again.
  dense_sum_.Contribute(c, payload, std::move(finish));
}

Status RequestHandler::Handle(const PeerSession& session, const proto::RequestHeader& request,
                              const char* payload, size_t payload_len, proto::ResponseHeader* reply,
                              PayloadBuffer* reply_payload) {
  const auto started = std::chrono::steady_clock::now();
  reply->Clear();
  reply->set_request_id(request.request_id());
  reply_payload->Resize(0);
  Status st;
  const proto::RequestType type = request.type();
  const bool privileged = type == proto::BEGIN_PASS || type == proto::END_PASS ||
                          type == proto::EXPORT_ROWS || type == proto::PREPARE_PASS ||
                          type == proto::COMMIT_PASS || type == proto::ROLLBACK_PASS ||
                          type == proto::DENSE_ABORT;
  if (privileged) {
    LOG(INFO) << Shard() << ": " << proto::RequestType_Name(type) << " pass " << request.pass()
              << (type == proto::EXPORT_ROWS
                      ? " version " + std::to_string(request.export_version()) +
                            (request.export_all() ? " (base)" : " (delta)")
                      : std::string())
              << " from " << session.peer << " (" << RoleName(session.role) << ")";
  }
  if (privileged && session.role != PeerRole::kCoordinator) {
    counters_.rejected_privileged.fetch_add(1, std::memory_order_relaxed);
    st = Status::InvalidArgument(proto::RequestType_Name(type) +
                                 " comes only from the coordinator; " + session.peer +
                                 " declared itself a " + RoleName(session.role));
  } else if (type == proto::COMMIT_PASS || type == proto::ROLLBACK_PASS ||
             type == proto::PREPARE_PASS) {
    // Alone with the table: a prepare reads it whole, a commit or rollback may reload it.
    std::unique_lock<std::shared_mutex> lock(table_mu_);
    const bool epoch_ok = type != proto::PREPARE_PASS || request.epoch() == 0 ||
                          request.epoch() == epoch_.load(std::memory_order_relaxed);
    if (!fatal_.ok()) {
      st = fatal_;
    } else if (!epoch_ok) {
      st = StaleEpoch();
    } else {
      st = type == proto::PREPARE_PASS ? HandlePass(request, reply) : HandleRecovery(request);
    }
  } else {
    std::shared_lock<std::shared_mutex> lock(table_mu_);
    const bool checked = type == proto::PULL || type == proto::PUSH || type == proto::BEGIN_PASS ||
                         type == proto::END_PASS || type == proto::EXPORT_ROWS;
    if (!fatal_.ok()) {
      st = fatal_;
    } else if (checked && request.epoch() != 0 &&
               request.epoch() != epoch_.load(std::memory_order_relaxed)) {
      st = StaleEpoch();
    } else {
      switch (type) {
        case proto::PING:
          FillPing(reply);
          break;
        case proto::STATS:
          FillStats(reply->mutable_stats());
          break;
        case proto::PULL:
          st = HandlePull(request, payload, payload_len, reply, reply_payload);
          break;
        case proto::PUSH:
          st = HandlePush(request, payload, payload_len);
          break;
        case proto::BEGIN_PASS:
        case proto::END_PASS:
        case proto::EXPORT_ROWS:
          st = HandlePass(request, reply);
          break;
        case proto::DENSE_ABORT:
          dense_sum_.Abort(request.pass(), Status::Unavailable("the coordinator gave up on pass " +
                                                               std::to_string(request.pass())));
          break;
        case proto::DENSE_SUM:
          st = Status::Internal("DENSE_SUM is answered through HandleDenseSum");
          break;
        default:
          st = Status::InvalidArgument("unknown request type " + std::to_string(type));
      }
    }
  }
  if (!st.ok()) {
    counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
    reply->set_code(static_cast<proto::StatusCode>(st.code()));
    reply->set_error(st.message());
    reply->set_num_values(0);
    reply_payload->Resize(0);
  }
  if (type > 0 && type < kNumRequestTypes) counters_.latency[type].ObserveSince(started);
  return st;
}

void RequestHandler::FillPing(proto::ResponseHeader* reply) const {
  proto::PingReply* ping = reply->mutable_ping();
  ping->set_shard_id(shard_id_);
  ping->set_num_shards(num_shards_);
  ping->set_slot_bits(table_->options().slot_bits);
  for (const SlotOptions& s : table_->options().slots) {
    proto::SlotSchema* schema = ping->add_slots();
    schema->set_slot(s.id);
    schema->set_dim(s.dim);
  }
  ping->set_epoch(epoch_.load(std::memory_order_relaxed));
  if (store_ != nullptr) {
    ping->set_durable(true);
    ping->set_committed_pass(store_->committed_pass());
    ping->set_prepared_pass(store_->prepared_pass());
  }
}

Status RequestHandler::StaleEpoch() const {
  return Status::Unavailable(Shard() +
                             " restarted or rolled back since this client connected (its epoch "
                             "changed); reconnect");
}

Status RequestHandler::CheckPassOpen() const {
  // Between a pass's end and the next BEGIN_PASS the table is the pass's final state,
  // which its commit stores: a change there would reach neither this commit nor the next.
  if (store_ != nullptr && table_->pass() > 0 &&
      table_->last_ended_pass() == static_cast<int64_t>(table_->pass())) {
    return Status::InvalidArgument(Shard() + ": pass " + std::to_string(table_->pass()) +
                                   " has ended; pulls and pushes wait for the next BEGIN_PASS");
  }
  return Status::OK();
}

Status RequestHandler::BeginPass(uint32_t pass) {
  // Passes go one at a time: the one after the running pass, once that one has ended.
  const uint32_t running = table_->pass();
  const bool ended = running == 0 || table_->last_ended_pass() == static_cast<int64_t>(running);
  // A begin of the running pass before its end is a retry: the table takes it as a no-op.
  const bool retry = pass == running && !ended;
  if (store_ == nullptr && !retry && (pass != running + 1 || !ended)) {
    return Status::InvalidArgument(
        "BEGIN_PASS " + std::to_string(pass) + ": " + Shard() + " is at pass " +
        std::to_string(running) + (ended ? " (ended)" : " (not ended)") + "; the next pass is " +
        std::to_string(running + 1) + ", once pass " + std::to_string(running) + " has ended");
  }
  if (store_ != nullptr) {
    // Every commit stores the changes of exactly one pass, the one after the committed
    // one: a pass begun twice, or skipped, would leave storage behind the table.
    const uint32_t committed = store_->committed_pass();
    if (pass != committed + 1 || table_->pass() != committed) {
      return Status::InvalidArgument("BEGIN_PASS " + std::to_string(pass) + ": " + Shard() +
                                     " has committed pass " + std::to_string(committed) +
                                     " and its table is at pass " + std::to_string(table_->pass()) +
                                     "; the next pass is " + std::to_string(committed + 1) +
                                     (table_->pass() != committed ? ", after a rollback" : ""));
    }
  }
  return table_->BeginPass(pass);
}

Status RequestHandler::HandlePass(const proto::RequestHeader& request,
                                  proto::ResponseHeader* reply) {
  switch (request.type()) {
    case proto::BEGIN_PASS: {
      PEPNET_RETURN_IF_ERROR(BeginPass(request.pass()));
      dense_sum_.Reset(
          Status::Unavailable(Shard() + " began pass " + std::to_string(request.pass())));
      return Status::OK();
    }
    case proto::END_PASS: {
      if (request.pass() != table_->pass()) {
        return Status::InvalidArgument("END_PASS for pass " + std::to_string(request.pass()) +
                                       " but the running pass is " +
                                       std::to_string(table_->pass()));
      }
      PassEndReport r;
      PEPNET_RETURN_IF_ERROR(table_->EndPass(&r));
      proto::PassEndReply* out = reply->mutable_pass_end();
      out->set_rows_before(r.rows_before);
      out->set_rows_after(r.rows_after);
      for (int k = 0; k < kNumDeleteReasons; ++k) {
        out->mutable_deleted()->add_by_reason(r.deleted[k]);
      }
      return Status::OK();
    }
    case proto::PREPARE_PASS: {
      if (store_ == nullptr) {
        return Status::InvalidArgument(Shard() +
                                       " keeps no storage (no --data_dir): nothing to "
                                       "prepare");
      }
      proto::PrepareReply info;
      PEPNET_RETURN_IF_ERROR(store_->Prepare(table_, request.pass(), &info));
      LOG(INFO) << Shard() << ": prepared pass " << request.pass() << " (" << info.rows_written()
                << " rows written, " << info.rows_deleted() << " deleted, " << info.file_bytes()
                << " bytes, " << info.seconds() << " s)";
      *reply->mutable_prepare() = info;
      return Status::OK();
    }
    case proto::EXPORT_ROWS: {
      if (!request.export_path().empty()) {
        return Status::InvalidArgument(
            "EXPORT_ROWS with export_path: a shard writes only inside its --export_dir, to "
            "names it derives from export_version");
      }
      if (export_dir_.empty()) {
        return Status::InvalidArgument(Shard() + " exports nothing: it has no --export_dir");
      }
      if (request.export_version() == 0) {
        return Status::InvalidArgument("EXPORT_ROWS without export_version");
      }
      // The coordinator has made the version's temporary folder; the shard fills its file.
      const std::string path = export_dir_ + "/" + VersionFolder(request.export_version()) +
                               ".tmp/" + RowFileName(shard_id_);
      RowFileInfo info;
      PEPNET_RETURN_IF_ERROR(
          WriteRowFile(env_, *table_, request.export_all(), request.pass(), path, &info));
      reply->mutable_export_()->set_rows(info.rows);
      reply->mutable_export_()->set_bytes(info.bytes);
      reply->mutable_export_()->set_checksum(info.checksum);
      reply->mutable_export_()->set_deleted(info.deleted);
      return Status::OK();
    }
    default:
      return Status::Internal("not a pass request");
  }
}

Status RequestHandler::HandleRecovery(const proto::RequestHeader& request) {
  if (store_ == nullptr) {
    return Status::InvalidArgument(Shard() + " keeps no storage (no --data_dir): nothing to " +
                                   (request.type() == proto::COMMIT_PASS ? "commit" : "roll back"));
  }
  const uint32_t pass = request.pass();
  Status st = request.type() == proto::COMMIT_PASS ? store_->Commit(table_, pass)
                                                   : store_->Rollback(table_, pass);
  if (store_->table_lost()) {
    // A reload failed after emptying the table (a damaged database, a failing disk): the
    // table is half loaded and must not serve.
    fatal_ = Status(st.code(), Shard() + " cannot serve: " + st.message());
    LOG(ERROR) << fatal_.ToString();
    if (on_fatal_) on_fatal_(fatal_);
    return fatal_;
  }
  if (st.ok() && request.type() == proto::ROLLBACK_PASS) {
    epoch_.store(NewEpoch(), std::memory_order_relaxed);
    dense_sum_.Reset(
        Status::Unavailable(Shard() + " rolled back to committed pass " + std::to_string(pass)));
    LOG(INFO) << Shard() << ": at committed pass " << pass << " (rolled back; new epoch)";
  } else if (st.ok()) {
    LOG(INFO) << Shard() << ": committed pass " << pass;
  }
  return st;
}

Status RequestHandler::HandlePull(const proto::RequestHeader& request, const char* payload,
                                  size_t len, proto::ResponseHeader* reply,
                                  PayloadBuffer* reply_payload) {
  PEPNET_RETURN_IF_ERROR(CheckPassOpen());
  const uint64_t n = request.num_keys();
  if (len != 8 * n) return LengthMismatch("pull", len, 8 * n);
  const auto* keys = reinterpret_cast<const uint64_t*>(payload);
  PEPNET_RETURN_IF_ERROR(CheckOwnership(keys, n, shard_id_, num_shards_));
  uint64_t num_values;
  PEPNET_RETURN_IF_ERROR(table_->CountValues(keys, n, &num_values));
  if (4 * num_values + kHeaderAllowance > max_reply_bytes_) {
    return Status::ResourceExhausted("pull of " + std::to_string(n) + " keys needs a reply of " +
                                     std::to_string(4 * num_values) + " bytes plus " +
                                     std::to_string(kHeaderAllowance) +
                                     " for the header, over the frame limit of " +
                                     std::to_string(max_reply_bytes_) + "; split the request");
  }
  reply_payload->Resize(4 * num_values);
  PEPNET_RETURN_IF_ERROR(table_->Pull(keys, n, reinterpret_cast<float*>(reply_payload->data())));
  reply->set_num_values(num_values);
  counters_.pull_requests.fetch_add(1, std::memory_order_relaxed);
  counters_.pull_rows.fetch_add(n, std::memory_order_relaxed);
  return Status::OK();
}

Status RequestHandler::HandlePush(const proto::RequestHeader& request, const char* payload,
                                  size_t len) {
  PEPNET_RETURN_IF_ERROR(CheckPassOpen());
  const uint64_t n = request.num_keys();
  const uint64_t v = request.num_values();
  // num_values is untrusted and 64-bit: compare by division so nothing can wrap.
  if (len < 16 * n || (len - 16 * n) % 4 != 0 || (len - 16 * n) / 4 != v) {
    return Status::InvalidArgument("push: payload is " + std::to_string(len) +
                                   " bytes but the header implies " + std::to_string(n) +
                                   " keys and " + std::to_string(v) + " gradient floats");
  }
  const auto* keys = reinterpret_cast<const uint64_t*>(payload);
  PEPNET_RETURN_IF_ERROR(CheckOwnership(keys, n, shard_id_, num_shards_));
  uint64_t num_values;
  PEPNET_RETURN_IF_ERROR(table_->CountValues(keys, n, &num_values));
  if (num_values != v) {
    return Status::InvalidArgument("push: header says " + std::to_string(v) +
                                   " gradient floats but the keys' slot dims sum to " +
                                   std::to_string(num_values));
  }
  const auto* grads = reinterpret_cast<const float*>(payload + 8 * n);
  const float* shows = grads + v;
  const float* clicks = shows + n;
  PEPNET_RETURN_IF_ERROR(CheckPushNumbers(keys, n, grads, v, shows, clicks));
  PEPNET_RETURN_IF_ERROR(table_->Push(keys, n, grads, shows, clicks));
  counters_.push_requests.fetch_add(1, std::memory_order_relaxed);
  counters_.push_rows.fetch_add(n, std::memory_order_relaxed);
  return Status::OK();
}

Status RequestHandler::CheckPushNumbers(const uint64_t* keys, uint64_t n, const float* grads,
                                        uint64_t v, const float* shows, const float* clicks) {
  // A NaN weight reads back NaN and poisons every model that pulls it; a huge gradient
  // freezes a row for good (its accumulator then dwarfs every later step). One pass over
  // the floats, vectorized; the failing value is looked for only then.
  const float bound = max_abs_gradient_;
  bool bad = false;
  for (uint64_t k = 0; k < v; ++k) bad |= !(std::fabs(grads[k]) <= bound);
  if (bad) {
    uint64_t k = 0;
    while (std::fabs(grads[k]) <= bound) ++k;
    uint64_t key = 0;
    for (uint64_t i = 0, offset = 0; i < n; offset += table_->DimOf(keys[i]), ++i) {
      if (k < offset + table_->DimOf(keys[i])) {
        key = keys[i];
        break;
      }
    }
    const bool finite = std::isfinite(grads[k]);
    (finite ? counters_.rejected_out_of_range : counters_.rejected_nonfinite)
        .fetch_add(1, std::memory_order_relaxed);
    return Status::InvalidArgument(
        "push: key " + FormatKey(key) + " has gradient " + std::to_string(grads[k]) +
        "; every gradient must be " +
        (finite ? "within +-" + std::to_string(bound) : std::string("finite")) +
        " (--max_abs_gradient)");
  }
  // Counts feed the feature score that eviction orders rows by: a NaN would make rows
  // unorderable, a negative one a score below every honest row.
  for (uint64_t i = 0; i < n; ++i) {
    if (!(shows[i] >= 0 && shows[i] <= kMaxCount) || !(clicks[i] >= 0 && clicks[i] <= kMaxCount)) {
      counters_.rejected_counts.fetch_add(1, std::memory_order_relaxed);
      return Status::InvalidArgument(
          "push: key " + FormatKey(keys[i]) + " has show " + std::to_string(shows[i]) +
          " and click " + std::to_string(clicks[i]) + "; both must be finite, >= 0 and <= 1e9");
    }
  }
  return Status::OK();
}

void RequestHandler::FillStats(proto::ServerStats* out) const {
  out->set_shard_id(shard_id_);
  out->set_num_shards(num_shards_);
  out->set_durable(store_ != nullptr);
  // Under the shared table lock Handle holds.
  StatSet set;
  CollectStatsLocked(&set);
  AddRequestStats(&set);
  StatsToProto(set, out);
}

void RequestHandler::CollectStats(StatSet* out) const {
  // Never waits: a prepare, commit or rollback holds the table (and the store) alone for
  // as long as it takes, and a scrape must not stall the admin threads behind it.
  std::shared_lock<std::shared_mutex> lock(table_mu_, std::try_to_lock);
  const bool table_readable = lock.owns_lock() && fatal_.ok();
  out->Gauge("pepnet_ps_stats_busy",
             "1 when the table's figures are left out of this scrape: a commit or rollback "
             "holds the table, or the table was lost.",
             table_readable ? 0 : 1);
  if (table_readable) CollectStatsLocked(out);
  AddRequestStats(out);
}

void RequestHandler::CollectStatsLocked(StatSet* out) const {
  AddTableStats(table_->Stats(), out);
  if (store_ != nullptr) {
    proto::StorageStats st;
    store_->Stats(&st);
    AddStorageStats(st, out);
  }
}

void RequestHandler::AddRequestStats(StatSet* out) const {
  const ServerCounters& c = counters_;
  const char* kRequests = "Pull and push requests served.";
  const char* kRows = "Rows (keys) of the pull and push requests served.";
  const char* kRefused = "Peers refused: a failed handshake, a deadline, a privileged request.";
  const char* kPushes = "Pushes refused for their numbers (docs/security.md).";
  struct Counted {
    const char *name, *help, *label, *value;  // label null: none
    const std::atomic<uint64_t>& counter;
    const char* json;
  };
  const Counted counted[] = {
      {"pepnet_ps_requests_total", kRequests, "type", "pull", c.pull_requests, "pull_requests"},
      {"pepnet_ps_rows_total", kRows, "type", "pull", c.pull_rows, "pull_rows"},
      {"pepnet_ps_requests_total", kRequests, "type", "push", c.push_requests, "push_requests"},
      {"pepnet_ps_rows_total", kRows, "type", "push", c.push_rows, "push_rows"},
      {"pepnet_ps_bad_requests_total", "Requests answered with an error.", nullptr, nullptr,
       c.bad_requests, "bad_requests"},
      {"pepnet_ps_connections_accepted_total", "Connections accepted since start.", nullptr,
       nullptr, c.connections, "connections_accepted"},
      {"pepnet_ps_refused_total", kRefused, "reason", "handshake", c.auth_failures,
       "auth_failures"},
      {"pepnet_ps_refused_total", kRefused, "reason", "deadline", c.timeouts, "timeouts"},
      {"pepnet_ps_refused_total", kRefused, "reason", "privileged", c.rejected_privileged,
       "rejected_privileged"},
      {"pepnet_ps_rejected_pushes_total", kPushes, "reason", "nonfinite", c.rejected_nonfinite,
       "rejected_nonfinite"},
      {"pepnet_ps_rejected_pushes_total", kPushes, "reason", "out_of_range",
       c.rejected_out_of_range, "rejected_out_of_range"},
      {"pepnet_ps_rejected_pushes_total", kPushes, "reason", "counts", c.rejected_counts,
       "rejected_counts"},
  };
  for (const Counted& k : counted) {
    Stat& stat =
        out->Counter(k.name, k.help, static_cast<double>(k.counter.load(std::memory_order_relaxed)))
            .Json(k.json);
    if (k.label != nullptr) stat.Label(k.label, k.value);
  }
  out->Counter("pepnet_ps_dense_steps_total",
               "Dense steps whose slice this shard summed for the workers.",
               static_cast<double>(dense_sum_.steps()))
      .Json("dense_steps");
  out->Counter("pepnet_ps_dense_failed_steps_total",
               "Dense steps that failed here: a non-finite or missing slice, workers out of "
               "step, or an abandoned pass.",
               static_cast<double>(dense_sum_.failed_steps()))
      .Json("dense_failed_steps");
  out->Gauge("pepnet_ps_connections", "Connections open now.",
             static_cast<double>(c.open_connections.load(std::memory_order_relaxed)))
      .Json("connections_open");
  out->Gauge("pepnet_process_uptime_seconds", "Seconds since the process started.",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count())
      .Json("uptime_s")
      .Total(StatTotal::kMax);
  for (int t = 1; t < kNumRequestTypes; ++t) {
    if (!proto::RequestType_IsValid(t)) continue;
    std::string type = proto::RequestType_Name(static_cast<proto::RequestType>(t));
    for (char& ch : type) ch = static_cast<char>(tolower(ch));
    out->Histogram("pepnet_ps_request_duration_seconds",
                   "Time from a parsed request to its reply, by request type.", c.latency[t])
        .Label("type", type);
  }
}

}  // namespace pepnet
