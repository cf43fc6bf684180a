// The RocksDB Env of a shard's database: RocksDB's own POSIX file system, with every
// write of it first asked of our Env (Env::CheckWrite), so that the tests' fault-injecting
// Env reaches RocksDB's files too (a full disk during a commit, say).
#ifndef PEPNET_PS_ROCKSDB_ENV_H_
#define PEPNET_PS_ROCKSDB_ENV_H_

#include <memory>

namespace rocksdb {
class Env;
}

namespace pepnet {

class Env;

// `env` is borrowed and must outlive the result.
std::unique_ptr<rocksdb::Env> NewRocksEnv(Env* env);

}  // namespace pepnet

#endif  // PEPNET_PS_ROCKSDB_ENV_H_
