// ModelUpdater: keeps a LiveModel on the newest version of a publish folder
// (docs/publish-format.md). It polls the folder; a new delta whose parent is the live
// version is read and checked whole in memory and then applied in place (only its rows
// and deleted keys); a new base is loaded into a table of its own beside the live one and
// swapped in. When several versions are new at once it starts from the newest base among
// them.
//
// A version is refused, with one log line and a count by reason, and the live version
// keeps serving, when:
//   corrupt   its manifest or a file is unreadable, truncated or fails its checks
//             (sizes, counts, checksums, finite weights);
//   model     it was trained with another model config (or, for a delta, another table
//             seed) than the live version;
//   sequence  it is a delta whose parent is not the live version (a gap: a version in
//             between was refused or removed), or it appeared after a newer version went
//             live.
// A refused version is not tried again; the next base ends a gap.
//
// With a pinned version (pepnet_serve --model_version) it loads that version's chain once
// and never moves.
//
// Threading: one thread of its own (Start/Stop) or PollOnce from one thread; the stats may
// be read from any thread.
#ifndef PEPNET_SERVE_MODEL_UPDATER_H_
#define PEPNET_SERVE_MODEL_UPDATER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"

namespace pepnet {
class LiveModel;
class StatSet;

struct ModelUpdaterOptions {
  std::string model_dir;
  uint64_t pin_version = 0;  // 0: follow the newest
  int poll_ms = 200;
};

class ModelUpdater {
 public:
  // `live` is borrowed and outlives the updater.
  ModelUpdater(ModelUpdaterOptions options, LiveModel* live);
  ~ModelUpdater();

  // Looks at the folder once and brings the live model up to date. Errors only for what
  // stops serving altogether: a pinned version that is absent or refused.
  Status PollOnce();
  void Start();
  void Stop();

  // Why no version is live yet (for /readyz).
  std::string not_ready_reason() const;
  // Counters and the last refusal, for /metrics and /v1/model.
  void AddStats(StatSet* out) const;
  uint64_t refused(const std::string& reason) const;
  std::string last_refusal() const;

 private:
  struct Candidate;
  // Loads version `version`'s whole chain (its base, then its deltas) beside the live
  // model and installs it.
  Status LoadChain(uint64_t version);
  Status ApplyDelta(const Candidate& c);
  void Refuse(uint64_t version, const std::string& reason, const Status& why);
  void NoteNotReady(const std::string& why);

  const ModelUpdaterOptions options_;
  LiveModel* const live_;
  std::set<uint64_t> refused_versions_;  // updater thread only
  std::set<uint64_t> seen_;              // versions looked at once (updater thread only)

  mutable std::mutex mu_;  // guards what other threads read
  std::map<std::string, uint64_t> refused_by_reason_;
  std::string last_refusal_, not_ready_ = "no model version loaded yet";
  uint64_t bases_ = 0, deltas_ = 0, poll_errors_ = 0;
  std::string last_poll_error_;

  std::thread thread_;
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool stop_ = false;
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_MODEL_UPDATER_H_
