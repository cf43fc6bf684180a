// CoordinatorStore: the coordinator's durable record of a run (pepnet_coord --data_dir):
// the last committed pass and the pass folders committed, the version numbers, and the
// dense checkpoint of the committed pass. Files (docs/storage-format.md):
//   coordinator.pbtxt       CoordinatorRecord (proto/storage.proto), protobuf text
//   dense-NNNNNNNN.bin      the committed pass's DenseState (worker/dense_state.h)
// Every write is durable (a temporary name, fsync, rename, fsync of the folder); the
// record is the commit point: it names the dense file, written before it.
//
// Not thread-safe: the coordinator's one thread uses it.
#ifndef PEPNET_COORD_COORDINATOR_STORE_H_
#define PEPNET_COORD_COORDINATOR_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/env.h"
#include "common/status.h"
#include "proto/storage.pb.h"

namespace pepnet {

class CoordinatorStore {
 public:
  // What a record must match to be resumed.
  struct Identity {
    uint64_t model_fingerprint = 0;
    uint64_t num_dense = 0;  // floats of dense parameters of the model
    uint32_t num_shards = 0;
  };

  // Opens the record in `dir` (creating the folder and a fresh record if there is none).
  // Refuses with one line naming what differs, before writing anything, a record of
  // another model config or shard count, and a dense checkpoint that does not fit the
  // model (InvalidArgument) or is damaged (Corruption). `env` is borrowed.
  static Status Open(Env* env, const std::string& dir, const Identity& identity,
                     std::unique_ptr<CoordinatorStore>* out);

  const proto::CoordinatorRecord& record() const { return record_; }
  // The encoded dense state of the committed pass; empty before the first commit.
  const std::string& dense() const { return dense_; }

  // The dense half of phase one: writes the checkpoint of `pass`, which nothing names yet.
  Status WriteDense(uint32_t pass, const std::string& encoded);
  // The commit point: `pass` (folder `pass_name`, the dense state WriteDense wrote, its
  // metrics line, the run AUC counters through it) is committed, to be published as `version` (0:
  // nothing is published).
  Status Commit(uint32_t pass, const std::string& pass_name, uint64_t version,
                const std::string& metrics_json, const std::string& run_auc = "");
  // The committed pass's version is in place; `base` if it is a base.
  Status MarkPublished(uint64_t version, bool base);

 private:
  CoordinatorStore(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  Status Write(const proto::CoordinatorRecord& record);
  std::string DenseName(uint32_t pass) const;

  Env* const env_;
  const std::string dir_;
  proto::CoordinatorRecord record_;
  std::string dense_;
  // WriteDense's file and bytes, until Commit names them.
  std::string pending_name_, pending_dense_;
};

}  // namespace pepnet

#endif  // PEPNET_COORD_COORDINATOR_STORE_H_
