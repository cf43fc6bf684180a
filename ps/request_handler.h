// RequestHandler: turns one decoded request frame into one reply. Knows nothing of
// sockets; every malformed request becomes an error reply here.
//
// Thread-safe: server threads call Handle concurrently. Requests share the table; the
// requests that may reload it from storage (COMMIT_PASS, ROLLBACK_PASS) hold it alone.
#ifndef PEPNET_PS_REQUEST_HANDLER_H_
#define PEPNET_PS_REQUEST_HANDLER_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <shared_mutex>

#include "common/auth.h"
#include "common/frame.h"
#include "common/latency_histogram.h"
#include "common/status.h"
#include "ps/dense_sum.h"

namespace pepnet {
namespace proto {
class RequestHeader;
class ResponseHeader;
class ServerStats;
}  // namespace proto

class EmbeddingTable;
class Env;
class ShardStore;
class StatSet;

constexpr int kNumRequestTypes = 13;  // proto::RequestType values 0..DENSE_ABORT

struct ServerCounters {
  std::atomic<uint64_t> pull_requests{0};
  std::atomic<uint64_t> pull_rows{0};
  std::atomic<uint64_t> push_requests{0};
  std::atomic<uint64_t> push_rows{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> rejected_nonfinite{0};
  std::atomic<uint64_t> rejected_out_of_range{0};
  std::atomic<uint64_t> rejected_counts{0};
  std::atomic<uint64_t> rejected_privileged{0};
  std::atomic<size_t> open_connections{0};
  // Time from a parsed request to its reply, by request type (proto::RequestType).
  std::array<LatencyHistogram, kNumRequestTypes> latency;
};

// Who sent a request: the peer's address and the role its handshake declared.
struct PeerSession {
  std::string peer;
  PeerRole role = PeerRole::kTool;
};

struct HandlerOptions {
  uint32_t shard_id = 0;
  uint32_t num_shards = 1;
  // Replies larger than this are refused (the client's frame limit is the same by
  // default).
  uint64_t max_reply_bytes = kDefaultMaxFrameBytes;
  // EXPORT_ROWS writes only under this folder; empty: exports are refused.
  std::string export_dir;
  // A pushed gradient value beyond this (or not finite) refuses the push.
  float max_abs_gradient = 1e6f;
  // A dense step still missing a worker's slice this long after its first one fails.
  int dense_sum_timeout_ms = 60000;
};

class RequestHandler {
 public:
  // `table`, `store` (nullptr for a shard without storage) and `env` (where exports are
  // written) are borrowed and must outlive the handler.
  RequestHandler(EmbeddingTable* table, ShardStore* store, Env* env, const HandlerOptions& options);

  // Called once if storage fails to reload the table (a damaged database found by a
  // rollback): the table is gone, so the process must stop; every later request fails.
  void set_on_fatal(std::function<void(const Status&)> on_fatal) {
    on_fatal_ = std::move(on_fatal);
  }

  // Handles one request whose header parsed. Fills `reply` (request id, code, error,
  // results) and `reply_payload`. Returns the status also put in the reply, so the
  // caller can log failures with the peer's address.
  // Pass and export requests come only from a coordinator session.
  Status Handle(const PeerSession& session, const proto::RequestHeader& request,
                const char* payload, size_t payload_len, proto::ResponseHeader* reply,
                PayloadBuffer* reply_payload);

  // DENSE_SUM (from a worker session) is answered later: `done` runs once, on any thread,
  // with the step's sum or the reason it failed. `payload` (the worker's slice) is
  // borrowed until then (DenseSum::Contribute). Records the request's latency (the wait
  // for the other workers included).
  void HandleDenseSum(const PeerSession& session, const proto::RequestHeader& request,
                      const PayloadBuffer* payload, DenseSum::Done done);

  // The server is stopping: dense steps waiting here fail now (their replies can still be
  // written), and later ones at once.
  void StopDenseSums();

  // The STATS reply: the shard's identity and its stats registry.
  void FillStats(proto::ServerStats* stats) const;
  // Every figure of the shard (the table's, the requests', the storage's): what STATS,
  // `pepnet_ctl stats` and /metrics report, for a reader outside a request (/metrics).
  // Reads each table partition under its lock in turn. Thread-safe and never waits: while
  // a commit or rollback holds the table, or after the table was lost, the table's and
  // storage's figures are left out and `pepnet_ps_stats_busy` is 1.
  void CollectStats(StatSet* out) const;
  ServerCounters& counters() { return counters_; }

 private:
  Status HandlePull(const proto::RequestHeader& request, const char* payload, size_t len,
                    proto::ResponseHeader* reply, PayloadBuffer* reply_payload);
  Status HandlePush(const proto::RequestHeader& request, const char* payload, size_t len);
  Status HandlePass(const proto::RequestHeader& request, proto::ResponseHeader* reply);
  Status BeginPass(uint32_t pass);
  Status StaleEpoch() const;
  // Durable shards: pulls and pushes only while a pass runs.
  Status CheckPassOpen() const;
  // COMMIT_PASS and ROLLBACK_PASS, under the exclusive lock.
  Status HandleRecovery(const proto::RequestHeader& request);
  void FillPing(proto::ResponseHeader* reply) const;
  // The table's and storage's figures; the caller holds table_mu_ (shared is enough).
  void CollectStatsLocked(StatSet* out) const;
  // The request counters and latency histograms: atomics, no lock.
  void AddRequestStats(StatSet* out) const;
  std::string Shard() const { return "shard " + std::to_string(shard_id_); }
  // The gradients, shows and clicks of a push are finite and within their bounds.
  Status CheckPushNumbers(const uint64_t* keys, uint64_t n, const float* grads, uint64_t v,
                          const float* shows, const float* clicks);

  EmbeddingTable* const table_;
  ShardStore* const store_;
  Env* const env_;
  const uint32_t shard_id_;
  const uint32_t num_shards_;
  const uint64_t max_reply_bytes_;
  const std::string export_dir_;
  const float max_abs_gradient_;
  const std::chrono::steady_clock::time_point start_;
  ServerCounters counters_;
  // Shared by requests that use the table, exclusive for reloads.
  mutable std::shared_mutex table_mu_;
  std::atomic<uint64_t> epoch_;
  std::function<void(const Status&)> on_fatal_;
  Status fatal_;  // guarded by table_mu_
  DenseSum dense_sum_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_REQUEST_HANDLER_H_
