#include "serve/live_model.h"

#include <glog/logging.h>

#include <chrono>

#include "serve/serving_table.h"

namespace pepnet {
namespace {

class ReadLock {
 public:
  explicit ReadLock(pthread_rwlock_t* l) : l_(l) { CHECK_EQ(pthread_rwlock_rdlock(l_), 0); }
  ~ReadLock() { pthread_rwlock_unlock(l_); }

 private:
  pthread_rwlock_t* l_;
};

class WriteLock {
 public:
  explicit WriteLock(pthread_rwlock_t* l) : l_(l) { CHECK_EQ(pthread_rwlock_wrlock(l_), 0); }
  ~WriteLock() { pthread_rwlock_unlock(l_); }

 private:
  pthread_rwlock_t* l_;
};

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

LiveModel::LiveModel() {
  // A steady stream of requests must not hold an update off forever: waiting writers go
  // before new readers.
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  CHECK_EQ(pthread_rwlock_init(&lock_, &attr), 0);
  pthread_rwlockattr_destroy(&attr);
}

LiveModel::~LiveModel() { pthread_rwlock_destroy(&lock_); }

bool LiveModel::Read(const std::function<void(const ServingTable&)>& fn,
                     std::shared_ptr<const PepNetParams<float>>* dense,
                     std::shared_ptr<const ServedVersion>* version) const {
  ReadLock lock(&lock_);
  if (!table_) return false;
  fn(*table_);
  *dense = dense_;
  *version = version_;
  return true;
}

std::shared_ptr<const ServedVersion> LiveModel::version() const {
  ReadLock lock(&lock_);
  return version_;
}

std::shared_ptr<const ServedVersion> LiveModel::Snapshot(uint64_t* rows, uint64_t* bytes) const {
  ReadLock lock(&lock_);
  *rows = table_ ? table_->rows() : 0;
  *bytes = table_ ? table_->bytes() : 0;
  return version_;
}

void LiveModel::Install(std::unique_ptr<ServingTable> table,
                        std::shared_ptr<const PepNetParams<float>> dense,
                        std::shared_ptr<ServedVersion> version) {
  const auto start = std::chrono::steady_clock::now();
  {
    WriteLock lock(&lock_);
    table_.swap(table);
    dense_.swap(dense);
    version->switch_seconds = SecondsSince(start);
    version->live_unix_s = NowUnix();
    version_ = std::move(version);
  }
  // `table` and `dense` now hold the old version's, freed here, outside the lock.
}

void LiveModel::Apply(const StagedDelta& delta, std::shared_ptr<const PepNetParams<float>> dense,
                      std::shared_ptr<ServedVersion> version) {
  auto start = std::chrono::steady_clock::now();
  ServingTable::Reservation room = table_->Reserve(delta.keys.data(), delta.keys.size());
  version->read_seconds += SecondsSince(start);
  start = std::chrono::steady_clock::now();
  {
    WriteLock lock(&lock_);
    table_->Install(&room);
    for (uint64_t key : delta.deleted) table_->Erase(key);
    for (size_t i = 0; i < delta.keys.size(); ++i) {
      const Status st = table_->Set(delta.keys[i], delta.weights.data() + delta.offset[i],
                                    static_cast<uint32_t>(delta.offset[i + 1] - delta.offset[i]));
      CHECK(st.ok()) << "a staged delta row does not fit the table: " << st.ToString();
    }
    dense_.swap(dense);
    version->switch_seconds = SecondsSince(start);
    version->live_unix_s = NowUnix();
    version_ = std::move(version);
  }
}

}  // namespace pepnet
