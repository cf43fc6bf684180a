// Why the table deleted a row: the index of per-reason counters in stats and replies.
#ifndef PEPNET_COMMON_DELETE_REASON_H_
#define PEPNET_COMMON_DELETE_REASON_H_

namespace pepnet {

enum class DeleteReason : int {
  kScore = 0,       // feature score under the slot's delete_score_threshold at a pass end
  kMemory = 1,      // evicted to keep the table under its memory limit
  kCap = 2,         // evicted to make room under the slot's max_rows
  kTtl = 3,         // not updated in the slot's last ttl_passes passes, at a pass end
  kMinUpdates = 4,  // fewer than min_updates updates in its first passes, at a pass end
};
constexpr int kNumDeleteReasons = 5;

// "score", "memory", "cap", "ttl", "min_updates".
inline const char* DeleteReasonName(DeleteReason reason) {
  switch (reason) {
    case DeleteReason::kScore:
      return "score";
    case DeleteReason::kMemory:
      return "memory";
    case DeleteReason::kCap:
      return "cap";
    case DeleteReason::kTtl:
      return "ttl";
    case DeleteReason::kMinUpdates:
      return "min_updates";
  }
  return "?";
}

}  // namespace pepnet

#endif  // PEPNET_COMMON_DELETE_REASON_H_
