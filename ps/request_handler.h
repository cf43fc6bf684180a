// RequestHandler: turns one decoded request frame into one reply. Knows nothing of
// sockets; every malformed request becomes an error reply here.
//
// Thread-safe: server threads call Handle concurrently.
#ifndef PEPNET_PS_REQUEST_HANDLER_H_
#define PEPNET_PS_REQUEST_HANDLER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "common/frame.h"
#include "common/status.h"

namespace pepnet {
namespace proto {
class RequestHeader;
class ResponseHeader;
class ServerStats;
}  // namespace proto

class EmbeddingTable;

struct ServerCounters {
  std::atomic<uint64_t> pull_requests{0};
  std::atomic<uint64_t> pull_rows{0};
  std::atomic<uint64_t> push_requests{0};
  std::atomic<uint64_t> push_rows{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> connections{0};
};

class RequestHandler {
 public:
  // `table` is borrowed and must outlive the handler. Replies larger than
  // `max_reply_bytes` are refused (the client's frame limit is the same by default).
  RequestHandler(EmbeddingTable* table, uint32_t shard_id, uint32_t num_shards,
                 uint64_t max_reply_bytes);

  // Handles one request whose header parsed. Fills `reply` (request id, code, error,
  // results) and `reply_payload`. Returns the status also put in the reply, so the
  // caller can log failures with the peer's address.
  Status Handle(const proto::RequestHeader& request, const char* payload, size_t payload_len,
                proto::ResponseHeader* reply, PayloadBuffer* reply_payload);

  void FillStats(proto::ServerStats* stats) const;
  ServerCounters& counters() { return counters_; }

 private:
  Status HandlePull(const proto::RequestHeader& request, const char* payload, size_t len,
                    proto::ResponseHeader* reply, PayloadBuffer* reply_payload);
  Status HandlePush(const proto::RequestHeader& request, const char* payload, size_t len);

  EmbeddingTable* const table_;
  const uint32_t shard_id_;
  const uint32_t num_shards_;
  const uint64_t max_reply_bytes_;
  const std::chrono::steady_clock::time_point start_;
  ServerCounters counters_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_REQUEST_HANDLER_H_
