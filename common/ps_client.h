// PsClient: how workers and tools talk to the GSET shard servers.
//
// A small Push/Pull API in the manner of ps-lite's KVWorker: calls return a Ticket at
// once and Wait(ticket) blocks for the outcome. Each call deduplicates its keys, routes
// every key to the shard ShardOfKey(key, num_shards) (common/hash.h), and sends one
// request per shard, all shards in parallel, over `connections_per_shard` pipelined TCP
// connections. A lost connection fails the calls in flight on it with Unavailable naming
// the shard, and the next call reconnects. Pushes are never retried automatically: a
// push that failed may or may not have been applied.
//
// Thread safety: all methods may be called from any thread concurrently. One internal
// I/O thread does the network work and writes pulled rows into the caller's vector.
#ifndef PEPNET_COMMON_PS_CLIENT_H_
#define PEPNET_COMMON_PS_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/status.h"

namespace pepnet {
namespace proto {
class ServerStats;
class ExportReply;
class PassEndReply;
class PingReply;
class PrepareReply;
}  // namespace proto

struct ClientOptions {
  // "host:port" of every shard; position i must be the server started with --shard_id=i.
  std::vector<std::string> servers;
  // Connections per shard. Two let a two-threaded server work on two requests at once.
  int connections_per_shard = 2;
  // A request without a reply after this long fails with DeadlineExceeded and its
  // connection is closed (so no late reply can write into the caller's buffers).
  int timeout_ms = 30000;
  int connect_timeout_ms = 5000;
  uint64_t max_frame_bytes = 256ull << 20;
  // The cluster's secret (empty: none; the servers must have none either) and the role
  // this client declares in every connection's handshake (common/auth.h).
  Secret secret;
  PeerRole role = PeerRole::kTool;
  // A dense sum waits for every worker of its step: it may take this long, which is more
  // than the shards' --dense_sum_timeout_ms so that their reason arrives first.
  int dense_timeout_ms = 180000;
};

// One worker's dense step, for PsClient::DenseSum.
struct DenseStepInfo {
  uint32_t pass = 0;
  uint64_t step = 0;  // from 0 in every pass
  uint32_t worker_index = 0;
  uint32_t num_workers = 0;
  bool has_data = false;
};

// Parses "h:p,h:p" into a list; InvalidArgument naming the bad entry.
Status ParseServerList(const std::string& list, std::vector<std::string>* out);

class PsClient {
 public:
  using Ticket = uint64_t;

  // Connects to every shard and reads its schema (shard id, slot dims) and epoch. Fails
  // with a Status naming the first shard that cannot be reached or is misconfigured.
  // Every later request carries the shard's epoch: once a shard restarts or rolls back,
  // this client's requests to it fail with Unavailable, and only a new client (a new
  // Connect) talks to it again.
  static Status Connect(const ClientOptions& options, std::unique_ptr<PsClient>* client);
  virtual ~PsClient();

  // Starts pulling the rows of keys[0..n) (duplicates allowed; created on the servers if
  // absent). On success `values` holds each key's row in key order, each of its slot's
  // dim. `keys` may be reused once Pull returns; `values` must stay alive and untouched
  // until Wait returns.
  virtual Ticket Pull(const uint64_t* keys, size_t n, std::vector<float>* values) = 0;

  // Starts pushing gradients: `grads` holds each key's gradient row in key order (same
  // layout as Pull's values); shows and clicks one float per key. Duplicate keys are
  // summed before sending. The arrays may be reused once Push returns.
  virtual Ticket Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                      const float* clicks) = 0;

  // Blocks until the call has finished on every shard. Each ticket is waited once.
  virtual Status Wait(Ticket ticket) = 0;

  // Sums this worker's dense gradient with the other workers' of the same step, on the
  // shards (docs/architecture.md, "The dense sum"): shard s adds the floats
  // DenseSliceOf(values->size(), s, num_shards()) of every worker. `values` holds the
  // gradient when step.has_data (else only its size counts). On OK it holds the sum over
  // the workers with data, in worker order, and *workers_with_data how many had (0: none
  // had; `values` is unchanged). Blocks until every worker of the step has sent its part
  // or the step failed; a shard's error names the worker at fault (a non-finite gradient,
  // a missing one). Needs role kWorker. Runs on a connection per shard of its own, so
  // pulls and pushes never queue behind a waiting step. `on_slice` (may be empty) runs on
  // the calling thread for each shard's slice [begin, end) as soon as its sum is in
  // `values`, unless no worker had data; after an error some slices may have run.
  virtual Status DenseSum(const DenseStepInfo& step, std::vector<float>* values,
                          uint32_t* workers_with_data,
                          const std::function<void(size_t begin, size_t end)>& on_slice) = 0;

  // The coordinator, giving up on `pass`: every dense step of it waiting on a shard fails
  // now, and every later one at once.
  virtual Status AbortDenseSums(uint32_t pass) = 0;

  // Synchronous statistics of every shard, in shard order.
  virtual Status Stats(std::vector<proto::ServerStats>* stats) = 0;

  // Pass hooks on every shard (the pass coordinator's; the servers refuse them from a
  // client whose role is not kCoordinator): rows created or updated from now on record
  // `pass`; ExportRows has every shard write its rows (all, or those of `pass`) into the
  // temporary folder of model version `version` under its --export_dir.
  virtual Status BeginPass(uint32_t pass) = 0;
  // Runs the pass-end policies of `pass` (the one BeginPass started) on every shard.
  virtual Status EndPass(uint32_t pass, std::vector<proto::PassEndReply>* replies) = 0;
  virtual Status ExportRows(uint32_t pass, bool all, uint64_t version,
                            std::vector<proto::ExportReply>* replies) = 0;
  // The two-phase commit of durable shards (ps/shard_store.h), on every shard.
  virtual Status PreparePass(uint32_t pass, std::vector<proto::PrepareReply>* replies) = 0;
  virtual Status CommitPass(uint32_t pass) = 0;
  virtual Status RollbackPass(uint32_t pass) = 0;

  // What each shard said when this client connected (durability, committed pass), in
  // shard order.
  virtual const std::vector<proto::PingReply>& shard_info() const = 0;

  virtual uint32_t num_shards() const = 0;
  // The servers' slot_bits: keys carry their slot in that many top bits.
  virtual uint32_t slot_bits() const = 0;
  // Dim of the key's slot as the servers configure it; 0 if unknown.
  virtual uint32_t DimOf(uint64_t key) const = 0;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_PS_CLIENT_H_
