// LiveModel: the model version a serving process scores with, and its atomic switch to the
// next. A version is a table of rows (serve/serving_table.h), dense parameters and what
// /v1/model says of it; the three change together under one writer-preferring
// reader-writer lock, so a request that reads its rows under the read lock is scored
// entirely by one version, and knows which.
//
// Requests hold the read lock only while they copy their rows out; the model math runs
// outside it. An update holds the write lock while it swaps in a new table (a new base,
// loaded beside the live one) or applies a delta already read and checked in memory: time
// that grows with the delta's rows, not with the table.
//
// Thread safety: Read and the accessors from any thread; Install and Apply from one
// updating thread at a time.
#ifndef PEPNET_SERVE_LIVE_MODEL_H_
#define PEPNET_SERVE_LIVE_MODEL_H_

#include <pthread.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "worker/pepnet_model.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
class ServingTable;

// What is known of a live version. Immutable once installed.
struct ServedVersion {
  uint64_t version = 0;
  uint64_t base_version = 0;
  uint32_t pass = 0;
  std::string pass_name;
  bool is_base = false;
  uint64_t table_seed = 0;
  uint64_t rows_changed = 0;  // rows the update brought (a base: all of them)
  uint64_t keys_deleted = 0;
  double published_unix_s = 0;  // when the version folder was renamed into place
  double live_unix_s = 0;       // when it went live here
  double read_seconds = 0;      // reading and checking its files, making room for its rows
  double switch_seconds = 0;    // holding the write lock
  std::shared_ptr<const proto::ModelConfig> model;
};

// A delta read and checked whole (rows, deleted keys), waiting to be applied.
struct StagedDelta {
  std::vector<uint64_t> deleted;
  std::vector<uint64_t> keys;  // row i's weights at weights[offset[i] .. offset[i + 1])
  std::vector<size_t> offset{0};
  std::vector<float> weights;
};

class LiveModel {
 public:
  LiveModel();
  ~LiveModel();
  LiveModel(const LiveModel&) = delete;
  LiveModel& operator=(const LiveModel&) = delete;

  // Runs `fn` under the read lock with the live table; *dense and *version get the
  // version's. False (fn not run) while no version is live.
  bool Read(const std::function<void(const ServingTable&)>& fn,
            std::shared_ptr<const PepNetParams<float>>* dense,
            std::shared_ptr<const ServedVersion>* version) const;
  // The live version (null while none).
  std::shared_ptr<const ServedVersion> version() const;
  // The live version and its table's rows and bytes, read together.
  std::shared_ptr<const ServedVersion> Snapshot(uint64_t* rows, uint64_t* bytes) const;

  // Makes `table` live with `dense` (a new base, or the first version). The old table is
  // freed after the lock is released. Sets version->switch_seconds and live_unix_s.
  void Install(std::unique_ptr<ServingTable> table,
               std::shared_ptr<const PepNetParams<float>> dense,
               std::shared_ptr<ServedVersion> version);
  // Applies `delta` to the live table in place and swaps in `dense`, all under the write
  // lock. The delta's rows must fit the table (ServingTable::DimOf): checked while it was
  // staged. Room for its new rows is made before the lock is taken (added to
  // version->read_seconds); sets switch_seconds and live_unix_s.
  void Apply(const StagedDelta& delta, std::shared_ptr<const PepNetParams<float>> dense,
             std::shared_ptr<ServedVersion> version);
  // The live table, for the updating thread only (reads without the lock: nobody else
  // changes it).
  const ServingTable* table_for_updater() const { return table_.get(); }

 private:
  mutable pthread_rwlock_t lock_;
  std::unique_ptr<ServingTable> table_;
  std::shared_ptr<const PepNetParams<float>> dense_;
  std::shared_ptr<const ServedVersion> version_;
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_LIVE_MODEL_H_
