// ShardStore: the durable state of one shard (pepnet_ps --data_dir), a RocksDB database
// holding every row of the last committed pass with all its state, and the rest of the
// table's state (ps/table_image.h). Layout and settings: docs/storage-format.md.
//
// A pass is committed in two phases, driven by the coordinator:
//   Prepare(N)  writes every row the pass created, updated or moved, the keys it deleted,
//               the admission counters and the table image into one sorted file beside
//               the database (prepared-N.sst), durably. The database is untouched, so
//               the pass stays undoable: Rollback deletes the file.
//   Commit(N)   ingests that file into the database: RocksDB records it in one MANIFEST
//               write, so the database holds pass N-1 or pass N, never a mixture.
// Rows the pass did not touch are not rewritten; the pass-end decay of their counters is
// replayed at load from the count of pass ends (bit-identical).
//
// Thread safety: Prepare, Commit and Rollback serialize on an internal mutex. Prepare
// reads the table under its partition locks; Commit and Rollback may reload the table,
// which needs the caller to hold off every other use of it (the request handler's
// exclusive lock).
#ifndef PEPNET_PS_SHARD_STORE_H_
#define PEPNET_PS_SHARD_STORE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/env.h"
#include "common/status.h"
#include "ps/table_config.h"

namespace pepnet {
namespace proto {
class PrepareReply;
class StorageStats;
}  // namespace proto

class EmbeddingTable;

struct ShardStoreOptions {
  std::string dir;  // created if absent
  uint32_t shard_id = 0;
  uint32_t num_shards = 1;
  // The salt of a new table; 0 = drawn at random. An existing store keeps its own.
  uint64_t new_hash_salt = 0;
  Env* env = Env::Default();  // borrowed
  // Load with this many threads (partitions are split between them).
  int load_threads = 2;
};

class ShardStore {
 public:
  // Opens the store in options.dir, creating it when the folder is empty or absent, and
  // creates *table from it: the committed pass's table, or an empty one. `table_options`
  // must have durable set. Refuses, with one line naming what differs and before writing
  // anything, a store of another shard id, shard count or table config
  // (InvalidArgument), and a damaged or truncated one (Corruption).
  static Status Open(const ShardStoreOptions& options, const TableOptions& table_options,
                     std::unique_ptr<ShardStore>* store, std::unique_ptr<EmbeddingTable>* table);
  ~ShardStore();

  // Phase one of committing pass `pass`, which the table must be running and have ended;
  // the pass before it must be the committed one. A failure (a full disk) names the shard
  // and the path; the committed state stays as it was.
  Status Prepare(EmbeddingTable* table, uint32_t pass, proto::PrepareReply* info);
  // Phase two: makes the prepared `pass` the committed one. OK at once if `pass` is
  // committed already (the coordinator repeats a decision after a restart). Reloads the
  // table when it does not hold the prepared state (this process started before the
  // commit).
  Status Commit(EmbeddingTable* table, uint32_t pass);
  // Makes the table exactly the committed `pass` again: forgets a prepared later pass and
  // reloads the table from the database unless it holds that state already.
  // InvalidArgument if the database's committed pass is not `pass`.
  Status Rollback(EmbeddingTable* table, uint32_t pass);

  uint32_t committed_pass() const;
  uint32_t prepared_pass() const;
  // Whether a load failed after emptying the table (a damaged database found by a
  // rollback or a commit): the table holds nothing usable and the process must stop.
  bool table_lost() const;
  // What the stats report (proto/ps.proto StorageStats): the committed pass, bytes on
  // disk, the last commit and the last load.
  void Stats(proto::StorageStats* out) const;
  const std::string& dir() const;

 private:
  class Impl;
  explicit ShardStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_SHARD_STORE_H_
