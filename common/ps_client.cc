#include "common/ps_client.h"

#include <glog/logging.h>

#include <boost/asio.hpp>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/dense_slice.h"
#include "common/hash.h"
#include "common/key_dedup.h"
#include "common/shard_connection.h"
#include "proto/ps.pb.h"

namespace pepnet {

namespace asio = boost::asio;
using asio::ip::tcp;

Status ParseServerList(const std::string& list, std::vector<std::string>* out) {
  out->clear();
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    std::string entry = list.substr(start, comma - start);
    const size_t colon = entry.rfind(':');
    const std::string port = colon == std::string::npos ? "" : entry.substr(colon + 1);
    if (colon == std::string::npos || colon == 0 || port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
      return Status::InvalidArgument("bad server address '" + entry +
                                     "' in server list (want host:port,host:port)");
    }
    out->push_back(entry);
    start = comma + 1;
  }
  return Status::OK();
}

namespace {

// The state of one Pull/Push/Stats call across its shards.
struct Call {
  std::mutex mu;
  std::condition_variable done_cv;
  int pending = 0;
  Status status;

  void Finish(const Status& st) {
    std::lock_guard<std::mutex> lock(mu);
    // The first error, unless a later one is of a kind retrying does not cure (a full
    // disk on one shard while another one died): that one decides what the caller does.
    const auto transient = [](const Status& s) {
      return s.code() == Status::kUnavailable || s.code() == Status::kDeadlineExceeded;
    };
    if (!st.ok() && (status.ok() || (transient(status) && !transient(st)))) status = st;
    if (--pending == 0) done_cv.notify_all();
  }
};

// Request payloads of a few MB each, recycled so that steady traffic neither calls
// mmap nor faults in fresh pages for every request.
class BufferPool {
 public:
  PayloadBuffer Take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return PayloadBuffer();
    PayloadBuffer b = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  void Give(PayloadBuffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kMaxPooled && b.capacity_bytes() <= kMaxPooledBytes) {
      free_.push_back(std::move(b));
    }
  }

 private:
  static constexpr size_t kMaxPooled = 64;
  static constexpr size_t kMaxPooledBytes = 64 << 20;
  std::mutex mu_;
  std::vector<PayloadBuffer> free_;
};

// Gives its payload buffer back to the pool when the request is done with it.
class PooledRequest : public ShardRequest {
 public:
  explicit PooledRequest(std::shared_ptr<BufferPool> pool) : pool_(std::move(pool)) {
    payload = pool_->Take();
  }
  ~PooledRequest() override { pool_->Give(std::move(payload)); }

 private:
  std::shared_ptr<BufferPool> pool_;
};

// One contiguous run of floats copied from a shard's reply into the caller's vector.
struct RowCopy {
  uint64_t src;  // float offset in the shard reply
  uint64_t dst;  // float offset in the caller's values
  uint32_t dim;
};

class ShardPull : public PooledRequest {
 public:
  using PooledRequest::PooledRequest;
  std::shared_ptr<Call> call;
  float* direct = nullptr;  // set when the reply lands as-is in the caller's vector
  float* out = nullptr;
  std::vector<RowCopy> copies;

  char* ReplyBuffer(size_t bytes) override {
    return direct ? reinterpret_cast<char*>(direct) : ShardRequest::ReplyBuffer(bytes);
  }
  void Complete(const Status& st, const proto::ResponseHeader*, const char* payload) override {
    if (st.ok() && !direct) {
      const float* src = reinterpret_cast<const float*>(payload);
      for (const RowCopy& c : copies) std::memcpy(out + c.dst, src + c.src, 4 * c.dim);
    }
    call->Finish(st);
  }
};

class ShardSimple : public PooledRequest {
 public:
  using PooledRequest::PooledRequest;
  std::shared_ptr<Call> call;
  std::function<void(const proto::ResponseHeader&)> on_reply;
  void Complete(const Status& st, const proto::ResponseHeader* reply, const char*) override {
    if (st.ok() && on_reply) on_reply(*reply);
    call->Finish(st);
  }
};

// A dense sum across the shards: which slices are in, in the order they came.
struct DenseCall {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint32_t> finished;  // shards, in completion order
  std::vector<Status> status;      // by shard
  std::vector<uint32_t> workers;   // by shard: dense_workers of its reply
};

// One shard's slice of a dense sum: the reply lands in the caller's vector, at the slice.
class ShardDense : public PooledRequest {
 public:
  using PooledRequest::PooledRequest;
  std::shared_ptr<DenseCall> call;
  uint32_t shard = 0;
  float* out = nullptr;  // the slice's place in the caller's values

  bool AcceptsReplyBytes(uint64_t bytes) const override {
    // No payload when no worker had data.
    return bytes == 0 || bytes == expected_reply_bytes;
  }
  char* ReplyBuffer(size_t bytes) override {
    return bytes == 0 ? ShardRequest::ReplyBuffer(0) : reinterpret_cast<char*>(out);
  }
  void Complete(const Status& st, const proto::ResponseHeader* reply, const char*) override {
    std::lock_guard<std::mutex> lock(call->mu);
    call->status[shard] = st;
    if (st.ok()) call->workers[shard] = reply->dense_workers();
    call->finished.push_back(shard);
    call->cv.notify_all();
  }
};

class PsClientImpl : public PsClient {
 public:
  explicit PsClientImpl(const ClientOptions& options)
      : options_(options), work_(asio::make_work_guard(io_)) {}

  ~PsClientImpl() override {
    if (!io_thread_.joinable()) return;
    asio::post(io_, [this] {
      for (auto& shard : conns_)
        for (auto& c : shard) c->Fail(Status::Unavailable("client shut down"));
      for (auto& c : dense_conns_) c->Fail(Status::Unavailable("client shut down"));
      io_.stop();
    });
    io_thread_.join();
  }

  Status Init() {
    if (options_.servers.empty()) return Status::InvalidArgument("no servers given");
    if (options_.connections_per_shard < 1) {
      return Status::InvalidArgument("connections_per_shard must be >= 1");
    }
    if (options_.timeout_ms <= 0 || options_.connect_timeout_ms <= 0 ||
        options_.dense_timeout_ms <= 0) {
      return Status::InvalidArgument(
          "timeout_ms, connect_timeout_ms and dense_timeout_ms must be > 0");
    }
    if (options_.max_frame_bytes < 2 * kHeaderAllowance || options_.max_frame_bytes > UINT32_MAX) {
      return Status::InvalidArgument("max_frame_bytes must be in [" +
                                     std::to_string(2 * kHeaderAllowance) + ", 4294967295]");
    }
    tcp::resolver resolver(io_);
    conns_.resize(options_.servers.size());
    for (size_t s = 0; s < options_.servers.size(); ++s) {
      const std::string& addr = options_.servers[s];
      const size_t colon = addr.rfind(':');
      boost::system::error_code ec;
      auto results = resolver.resolve(addr.substr(0, colon), addr.substr(colon + 1), ec);
      if (ec || results.empty()) {
        return Status::InvalidArgument("shard " + std::to_string(s) + ": cannot resolve " + addr +
                                       ": " + ec.message());
      }
      std::vector<tcp::endpoint> endpoints;
      for (const auto& r : results) endpoints.push_back(r.endpoint());
      for (int c = 0; c < options_.connections_per_shard; ++c) {
        conns_[s].push_back(std::make_shared<ShardConnection>(
            io_, static_cast<uint32_t>(s), addr, endpoints, options_.timeout_ms,
            options_.connect_timeout_ms, options_.max_frame_bytes, &options_.secret,
            options_.role));
      }
      // Connects at its first dense sum only.
      dense_conns_.push_back(std::make_shared<ShardConnection>(
          io_, static_cast<uint32_t>(s), addr, endpoints, options_.dense_timeout_ms,
          options_.connect_timeout_ms, options_.max_frame_bytes, &options_.secret, options_.role));
    }
    io_thread_ = std::thread([this] { io_.run(); });

    // Learn each shard's identity, slot dims and epoch, and check they agree.
    std::vector<proto::PingReply> pings(num_shards());
    auto call = NewCall(num_shards());
    for (uint32_t s = 0; s < num_shards(); ++s) {
      auto req = std::make_shared<ShardSimple>(pool_);
      req->header.set_type(proto::PING);
      req->call = call;
      req->on_reply = [&pings, s](const proto::ResponseHeader& r) { pings[s] = r.ping(); };
      Dispatch(s, req);
    }
    PEPNET_RETURN_IF_ERROR(WaitCall(call.get()));
    for (uint32_t s = 0; s < num_shards(); ++s) {
      const proto::PingReply& p = pings[s];
      if (p.shard_id() != s || p.num_shards() != num_shards()) {
        return Status::InvalidArgument("server " + options_.servers[s] + " is shard " +
                                       std::to_string(p.shard_id()) + " of " +
                                       std::to_string(p.num_shards()) + " but is listed as shard " +
                                       std::to_string(s) + " of " + std::to_string(num_shards()));
      }
      if (p.slot_bits() < 1 || p.slot_bits() > 16) {
        return Status::InvalidArgument("shard " + std::to_string(s) + " reports slot_bits " +
                                       std::to_string(p.slot_bits()));
      }
      std::vector<uint32_t> dims(size_t{1} << p.slot_bits(), 0);
      for (const auto& slot : p.slots()) {
        if (slot.slot() < dims.size()) dims[slot.slot()] = slot.dim();
      }
      if (s == 0) {
        slot_bits_ = p.slot_bits();
        dims_ = std::move(dims);
      } else if (p.slot_bits() != slot_bits_ || dims != dims_) {
        return Status::InvalidArgument("shard " + std::to_string(s) + " (" + options_.servers[s] +
                                       ") has different slots or dims from shard 0; all shards "
                                       "must run the same table config");
      }
    }
    pings_ = std::move(pings);
    return Status::OK();
  }

  Ticket Pull(const uint64_t* keys, size_t n, std::vector<float>* values) override {
    Route& r = thread_route_;
    Status st = Plan(keys, n, &r);
    const Ticket ticket = NewTicket();
    if (!st.ok()) return Settle(ticket, st);
    values->resize(r.total_values);
    auto call = NewCall(0);
    std::vector<std::shared_ptr<ShardPull>> parts(num_shards());
    for (uint32_t s = 0; s < num_shards(); ++s) {
      if (r.shard_keys[s].empty()) continue;
      auto req = std::make_shared<ShardPull>(pool_);
      req->call = call;
      req->out = values->data();
      req->header.set_type(proto::PULL);
      req->header.set_num_keys(static_cast<uint32_t>(r.shard_keys[s].size()));
      req->payload.Resize(8 * r.shard_keys[s].size());
      std::memcpy(req->payload.data(), r.shard_keys[s].data(), req->payload.size());
      req->expected_reply_bytes = 4 * r.shard_values[s];
      parts[s] = req;
      ++call->pending;
    }
    if (r.identity && r.single_shard >= 0) {
      parts[r.single_shard]->direct = values->data();
    } else {
      for (size_t i = 0; i < n; ++i) {
        const uint32_t u = r.position[i];
        parts[r.unique_shard[u]]->copies.push_back({r.unique_offset[u], r.out_offset[i], r.dim[i]});
      }
    }
    return Launch(ticket, call, parts);
  }

  Ticket Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
              const float* clicks) override {
    Route& r = thread_route_;
    Status st = Plan(keys, n, &r);
    const Ticket ticket = NewTicket();
    if (!st.ok()) return Settle(ticket, st);
    auto call = NewCall(0);
    std::vector<std::shared_ptr<ShardSimple>> parts(num_shards());
    std::vector<char*> grad_out(num_shards()), show_out(num_shards()), click_out(num_shards());
    for (uint32_t s = 0; s < num_shards(); ++s) {
      const size_t k = r.shard_keys[s].size();
      if (k == 0) continue;
      auto req = std::make_shared<ShardSimple>(pool_);
      req->call = call;
      req->header.set_type(proto::PUSH);
      req->header.set_num_keys(static_cast<uint32_t>(k));
      req->header.set_num_values(r.shard_values[s]);
      req->payload.Resize(8 * k + 4 * r.shard_values[s] + 8 * k);
      char* p = req->payload.data();
      std::memcpy(p, r.shard_keys[s].data(), 8 * k);
      grad_out[s] = p + 8 * k;
      show_out[s] = grad_out[s] + 4 * r.shard_values[s];
      click_out[s] = show_out[s] + 4 * k;
      // Duplicates are summed into these floats; without duplicates every one of them
      // is overwritten below.
      if (!r.identity) std::memset(grad_out[s], 0, req->payload.size() - 8 * k);
      parts[s] = req;
      ++call->pending;
    }
    if (r.identity && r.single_shard >= 0) {
      // The shard's request is the call itself: whole-array copies.
      const int s = r.single_shard;
      std::memcpy(grad_out[s], grads, 4 * r.total_values);
      std::memcpy(show_out[s], shows, 4 * n);
      std::memcpy(click_out[s], clicks, 4 * n);
      return Launch(ticket, call, parts);
    }
    // Sum duplicates while scattering into the per-shard payloads.
    uint64_t in = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t u = r.position[i];
      const uint32_t s = r.unique_shard[u];
      float* g = reinterpret_cast<float*>(grad_out[s]) + r.unique_offset[u];
      const uint32_t dim = r.dim[i];
      if (r.identity) {
        std::memcpy(g, grads + in, 4 * dim);
      } else {
        for (uint32_t d = 0; d < dim; ++d) g[d] += grads[in + d];
      }
      in += dim;
      const uint32_t j = r.unique_index_in_shard[u];
      float* show = reinterpret_cast<float*>(show_out[s]) + j;
      float* click = reinterpret_cast<float*>(click_out[s]) + j;
      *show = r.identity ? shows[i] : *show + shows[i];
      *click = r.identity ? clicks[i] : *click + clicks[i];
    }
    return Launch(ticket, call, parts);
  }

  Status Wait(Ticket ticket) override {
    std::shared_ptr<Call> call;
    {
      std::lock_guard<std::mutex> lock(calls_mu_);
      auto it = calls_.find(ticket);
      if (it == calls_.end()) {
        return Status::InvalidArgument("unknown or already waited ticket " +
                                       std::to_string(ticket));
      }
      call = std::move(it->second);
      calls_.erase(it);
    }
    return WaitCall(call.get());
  }

  Status DenseSum(const DenseStepInfo& step, std::vector<float>* values,
                  uint32_t* workers_with_data,
                  const std::function<void(size_t, size_t)>& on_slice) override {
    const uint32_t shards = num_shards();
    auto call = std::make_shared<DenseCall>();
    call->status.assign(shards, Status::OK());
    call->workers.assign(shards, 0);
    // Each shard's reply overwrites its own slice only, after the request copied it.
    for (uint32_t s = 0; s < shards; ++s) {
      const DenseSlice slice = DenseSliceOf(values->size(), s, shards);
      auto req = std::make_shared<ShardDense>(pool_);
      req->call = call;
      req->shard = s;
      req->out = values->data() + slice.begin;
      req->expected_reply_bytes = 4 * slice.size();
      req->header.set_type(proto::DENSE_SUM);
      req->header.set_pass(step.pass);
      proto::DenseStep* d = req->header.mutable_dense();
      d->set_worker_index(step.worker_index);
      d->set_num_workers(step.num_workers);
      d->set_step(step.step);
      d->set_has_data(step.has_data);
      d->set_dense_size(values->size());
      if (step.has_data) {
        req->payload.Resize(4 * slice.size());
        std::memcpy(req->payload.data(), values->data() + slice.begin, 4 * slice.size());
      } else {
        req->payload.Resize(0);
      }
      req->header.set_epoch(pings_[s].epoch());
      asio::post(io_, [this, s, req = std::move(req)]() mutable {
        dense_conns_[s]->Send(std::move(req));
      });
    }
    // The slices in the order they come, each handed on at once.
    Status error;
    const auto transient = [](const Status& st) {
      return st.code() == Status::kUnavailable || st.code() == Status::kDeadlineExceeded;
    };
    std::unique_lock<std::mutex> lock(call->mu);
    for (size_t seen = 0; seen < shards;) {
      call->cv.wait(lock, [&] { return call->finished.size() > seen; });
      while (seen < call->finished.size()) {
        const uint32_t s = call->finished[seen++];
        const Status st = call->status[s];
        if (!st.ok()) {
          if (error.ok() || (transient(error) && !transient(st))) error = st;
          continue;
        }
        if (!error.ok() || !on_slice || call->workers[s] == 0) continue;
        if (call->workers[s] != call->workers[call->finished[0]]) continue;  // refused below
        const DenseSlice slice = DenseSliceOf(values->size(), s, shards);
        lock.unlock();
        on_slice(slice.begin, slice.end);
        lock.lock();
      }
    }
    PEPNET_RETURN_IF_ERROR(error);
    for (uint32_t s = 1; s < shards; ++s) {
      if (call->workers[s] != call->workers[0]) {
        return Status::Internal("the shards disagree on dense step " + std::to_string(step.step) +
                                ": shard 0 summed " + std::to_string(call->workers[0]) +
                                " workers' gradients, shard " + std::to_string(s) + " " +
                                std::to_string(call->workers[s]));
      }
    }
    *workers_with_data = call->workers[0];
    return Status::OK();
  }

  Status AbortDenseSums(uint32_t pass) override { return PassCall(proto::DENSE_ABORT, pass); }

  Status Stats(std::vector<proto::ServerStats>* stats) override {
    stats->assign(num_shards(), proto::ServerStats());
    return CallEveryShard(
        [](uint32_t, proto::RequestHeader* h) { h->set_type(proto::STATS); },
        [stats](uint32_t s, const proto::ResponseHeader& r) { (*stats)[s] = r.stats(); });
  }

  Status BeginPass(uint32_t pass) override { return PassCall(proto::BEGIN_PASS, pass); }

  Status EndPass(uint32_t pass, std::vector<proto::PassEndReply>* replies) override {
    replies->assign(num_shards(), proto::PassEndReply());
    return CallEveryShard(
        [pass](uint32_t, proto::RequestHeader* h) {
          h->set_type(proto::END_PASS);
          h->set_pass(pass);
        },
        [replies](uint32_t s, const proto::ResponseHeader& r) { (*replies)[s] = r.pass_end(); });
  }

  Status ExportRows(uint32_t pass, bool all, uint64_t version,
                    std::vector<proto::ExportReply>* replies) override {
    if (version == 0) return Status::InvalidArgument("ExportRows needs a version >= 1");
    replies->assign(num_shards(), proto::ExportReply());
    return CallEveryShard(
        [&](uint32_t, proto::RequestHeader* h) {
          h->set_type(proto::EXPORT_ROWS);
          h->set_pass(pass);
          h->set_export_all(all);
          h->set_export_version(version);
        },
        [replies](uint32_t s, const proto::ResponseHeader& r) { (*replies)[s] = r.export_(); });
  }

  Status PreparePass(uint32_t pass, std::vector<proto::PrepareReply>* replies) override {
    replies->assign(num_shards(), proto::PrepareReply());
    return CallEveryShard(
        [pass](uint32_t, proto::RequestHeader* h) {
          h->set_type(proto::PREPARE_PASS);
          h->set_pass(pass);
        },
        [replies](uint32_t s, const proto::ResponseHeader& r) { (*replies)[s] = r.prepare(); });
  }

  Status CommitPass(uint32_t pass) override { return PassCall(proto::COMMIT_PASS, pass); }
  Status RollbackPass(uint32_t pass) override { return PassCall(proto::ROLLBACK_PASS, pass); }

  const std::vector<proto::PingReply>& shard_info() const override { return pings_; }

  uint32_t num_shards() const override { return static_cast<uint32_t>(conns_.size()); }
  uint32_t slot_bits() const override { return slot_bits_; }

  uint32_t DimOf(uint64_t key) const override {
    return dims_.empty() ? 0 : dims_[SlotOfKey(key, slot_bits_)];
  }

 private:
  Status PassCall(proto::RequestType type, uint32_t pass) {
    return CallEveryShard(
        [type, pass](uint32_t, proto::RequestHeader* h) {
          h->set_type(type);
          h->set_pass(pass);
        },
        [](uint32_t, const proto::ResponseHeader&) {});
  }

  // Sends one header-only request to every shard (fill sets shard s's header) and waits
  // for all replies; on_reply(s, reply) runs for each successful one.
  Status CallEveryShard(
      const std::function<void(uint32_t, proto::RequestHeader*)>& fill,
      const std::function<void(uint32_t, const proto::ResponseHeader&)>& on_reply) {
    auto call = NewCall(num_shards());
    for (uint32_t s = 0; s < num_shards(); ++s) {
      auto req = std::make_shared<ShardSimple>(pool_);
      fill(s, &req->header);
      req->call = call;
      req->on_reply = [on_reply, s](const proto::ResponseHeader& r) { on_reply(s, r); };
      Dispatch(s, req);
    }
    return WaitCall(call.get());
  }

  // Per-thread routing of one call's keys.
  struct Route {
    KeyDeduper dedup;
    std::vector<uint64_t> unique;
    std::vector<uint32_t> position;      // key index -> unique index
    std::vector<uint32_t> dim;           // per key
    std::vector<uint64_t> out_offset;    // per key: float offset in the caller's values
    std::vector<uint32_t> unique_shard;  // per unique key
    std::vector<uint32_t> unique_index_in_shard;
    std::vector<uint64_t> unique_offset;  // float offset in its shard's request/reply
    std::vector<std::vector<uint64_t>> shard_keys;
    std::vector<uint64_t> shard_values;
    uint64_t total_values = 0;
    bool identity = false;  // no duplicates: unique order == key order
    int single_shard = -1;  // the only shard with keys, or -1
  };

  Status Plan(const uint64_t* keys, size_t n, Route* r) {
    const size_t u = r->dedup.Dedup(keys, n, &r->unique, &r->position);
    r->identity = (u == n);
    r->dim.resize(n);
    r->out_offset.resize(n);
    uint64_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t dim = DimOf(keys[i]);
      if (dim == 0) {
        return Status::InvalidArgument("key " + FormatKey(keys[i]) + " (slot " +
                                       std::to_string(SlotOfKey(keys[i], slot_bits_)) +
                                       ") has no slot configured on the servers");
      }
      r->dim[i] = dim;
      r->out_offset[i] = total;
      total += dim;
    }
    r->total_values = total;
    r->shard_keys.resize(num_shards());
    for (auto& v : r->shard_keys) v.clear();
    r->shard_values.assign(num_shards(), 0);
    r->unique_shard.resize(u);
    r->unique_index_in_shard.resize(u);
    r->unique_offset.resize(u);
    for (size_t k = 0; k < u; ++k) {
      const uint64_t key = r->unique[k];
      const uint32_t s = ShardOfKey(key, num_shards());
      r->unique_shard[k] = s;
      r->unique_index_in_shard[k] = static_cast<uint32_t>(r->shard_keys[s].size());
      r->unique_offset[k] = r->shard_values[s];
      r->shard_keys[s].push_back(key);
      r->shard_values[s] += DimOf(key);
    }
    r->single_shard = -1;
    for (uint32_t s = 0; s < num_shards(); ++s) {
      if (r->shard_keys[s].empty()) continue;
      // The larger of the push request and the pull reply must fit in one frame.
      const uint64_t frame =
          16 * r->shard_keys[s].size() + 4 * r->shard_values[s] + kHeaderAllowance;
      if (frame > options_.max_frame_bytes) {
        return Status::InvalidArgument(
            "call of " + std::to_string(n) + " keys needs a " + std::to_string(frame) +
            "-byte frame for shard " + std::to_string(s) +
            ", over max_frame_bytes=" + std::to_string(options_.max_frame_bytes) + "; split it");
      }
      r->single_shard = (r->single_shard == -1) ? static_cast<int>(s) : -2;
    }
    if (r->single_shard < 0) r->single_shard = -1;
    return Status::OK();
  }

  std::shared_ptr<Call> NewCall(int pending) {
    auto call = std::make_shared<Call>();
    call->pending = pending;
    return call;
  }

  Ticket NewTicket() {
    std::lock_guard<std::mutex> lock(calls_mu_);
    return next_ticket_++;
  }

  Ticket Settle(Ticket ticket, const Status& st) {
    auto call = NewCall(0);
    call->status = st;
    std::lock_guard<std::mutex> lock(calls_mu_);
    calls_[ticket] = call;
    return ticket;
  }

  template <typename Part>
  Ticket Launch(Ticket ticket, const std::shared_ptr<Call>& call,
                const std::vector<std::shared_ptr<Part>>& parts) {
    {
      std::lock_guard<std::mutex> lock(calls_mu_);
      calls_[ticket] = call;
    }
    for (uint32_t s = 0; s < parts.size(); ++s) {
      if (parts[s]) Dispatch(s, parts[s]);
    }
    return ticket;
  }

  void Dispatch(uint32_t shard, std::shared_ptr<ShardRequest> req) {
    // Known once the shard answered PING (before that, the PING itself goes unstamped).
    if (shard < pings_.size()) req->header.set_epoch(pings_[shard].epoch());
    asio::post(io_, [this, shard, req = std::move(req)]() mutable {
      // The least busy connection of the shard takes it.
      auto& conns = conns_[shard];
      ShardConnection* best = conns[0].get();
      for (auto& c : conns) {
        if (c->in_flight() < best->in_flight()) best = c.get();
      }
      best->Send(std::move(req));
    });
  }

  Status WaitCall(Call* call) {
    std::unique_lock<std::mutex> lock(call->mu);
    call->done_cv.wait(lock, [call] { return call->pending == 0; });
    return call->status;
  }

  ClientOptions options_;
  std::shared_ptr<BufferPool> pool_ = std::make_shared<BufferPool>();
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread io_thread_;
  std::vector<std::vector<std::shared_ptr<ShardConnection>>> conns_;
  std::vector<std::shared_ptr<ShardConnection>> dense_conns_;  // one per shard
  uint32_t slot_bits_ = 0;
  std::vector<uint32_t> dims_;  // by slot id, 0 = not configured
  // Written while connecting, before any other call; read-only after.
  std::vector<proto::PingReply> pings_;

  std::mutex calls_mu_;
  Ticket next_ticket_ = 1;
  std::unordered_map<Ticket, std::shared_ptr<Call>> calls_;

  static thread_local Route thread_route_;
};

thread_local PsClientImpl::Route PsClientImpl::thread_route_;

}  // namespace

PsClient::~PsClient() = default;

Status PsClient::Connect(const ClientOptions& options, std::unique_ptr<PsClient>* client) {
  auto impl = std::make_unique<PsClientImpl>(options);
  PEPNET_RETURN_IF_ERROR(impl->Init());
  *client = std::move(impl);
  return Status::OK();
}

}  // namespace pepnet
