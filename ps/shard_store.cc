#include "ps/shard_store.h"

#include <glog/logging.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <thread>

#include "common/checksum.h"
#include "common/hash.h"
#include "proto/ps.pb.h"
#include "proto/storage.pb.h"
#include "ps/embedding_table.h"
#include "ps/rocksdb_env.h"
#include "ps/storage_format.h"

namespace pepnet {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What RocksDB said, in our codes: a damaged file is Corruption, the rest a failure of
// the file system under it.
Status FromRocks(const rocksdb::Status& st, const std::string& context = "") {
  if (st.ok()) return Status::OK();
  const std::string text = context.empty() ? st.ToString() : context + ": " + st.ToString();
  return st.IsCorruption() ? Status::Corruption(text) : Status::IoError(text);
}

std::string PreparedName(uint32_t pass) {
  char name[40];
  snprintf(name, sizeof(name), "prepared-%08u.sst", pass);
  return name;
}

// The pass of a "prepared-NNNNNNNN.sst" name; false for other names.
bool ParsePreparedName(const std::string& name, uint32_t* pass) {
  const std::string digits = name.size() == 21 ? name.substr(9, 8) : "";
  if (digits.size() != 8 || name.compare(0, 9, "prepared-") != 0 ||
      name.compare(17, 4, ".sst") != 0 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *pass = static_cast<uint32_t>(std::stoul(digits));
  return true;
}

// The first line where two texts differ, for a one-line refusal.
std::string FirstDifference(const std::string& stored, const std::string& given) {
  size_t line = 1, a = 0, b = 0;
  for (;;) {
    const size_t ea = std::min(stored.find('\n', a), stored.size());
    const size_t eb = std::min(given.find('\n', b), given.size());
    const std::string la = stored.substr(a, ea - a), lb = given.substr(b, eb - b);
    if (la != lb || ea == stored.size() || eb == given.size()) {
      return "line " + std::to_string(line) + " is '" + la + "' there, '" + lb + "' here";
    }
    a = ea + 1;
    b = eb + 1;
    ++line;
  }
}

rocksdb::Options DatabaseOptions(rocksdb::Env* env) {
  rocksdb::Options o;
  o.env = env;
  o.paranoid_checks = true;
  // Rows are floats, which compress poorly; the CPU is the trainer's.
  o.compression = rocksdb::kNoCompression;
  o.max_background_jobs = 2;
  o.level_compaction_dynamic_level_bytes = true;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 16 << 20;
  rocksdb::BlockBasedTableOptions table;
  // Rows are only ever read by whole-partition scans (loads): large blocks, no filters.
  table.block_size = 64 << 10;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return o;
}

void ToProto(const PartitionImage& im, proto::PartitionImage* p) {
  for (const SlotShardImage& s : im.shards) {
    proto::SlotShardImage* out = p->add_shards();
    out->set_slot_index(s.slot_index);
    out->set_rows(s.rows);
    out->set_index_capacity(s.index_capacity);
    out->set_chunk_slots(s.chunk_slots);
  }
  p->set_rows_created(im.rows_created);
  p->set_rows_erased(im.rows_erased);
  p->set_deletions(im.deletions);
  p->set_cap_refused(im.cap_refused);
  p->set_memory_refused(im.memory_refused);
  p->set_admitted(im.admission.admitted);
  p->set_pushes_dropped(im.admission.pushes_dropped);
  p->set_pulls_default(im.admission.pulls_default);
  for (uint64_t v : im.deleted_pass) p->add_deleted_pass(v);
  for (uint64_t v : im.deleted_total) p->add_deleted_total(v);
  proto::EvictionCursorImage* e = p->mutable_evict();
  e->set_threshold(im.evict.threshold);
  e->set_valid(im.evict.valid);
  e->set_shard(im.evict.shard);
  e->set_row(im.evict.row);
  e->set_scanned(im.evict.scanned);
  e->set_lap(im.evict.lap);
  e->set_rng(im.evict.rng);
}

TableImage FromProto(const proto::ShardState& s) {
  TableImage image;
  image.hash_salt = s.hash_salt();
  image.pass = s.pass();
  image.pass_ends = s.pass_ends();
  image.last_ended_pass = s.last_ended_pass();
  for (const proto::PartitionImage& p : s.partitions()) {
    PartitionImage im;
    for (const proto::SlotShardImage& sh : p.shards()) {
      im.shards.push_back({sh.slot_index(), sh.rows(), sh.index_capacity(), sh.chunk_slots()});
    }
    im.rows_created = p.rows_created();
    im.rows_erased = p.rows_erased();
    im.deletions = p.deletions();
    im.cap_refused = p.cap_refused();
    im.memory_refused = p.memory_refused();
    im.admission.admitted = p.admitted();
    im.admission.pushes_dropped = p.pushes_dropped();
    im.admission.pulls_default = p.pulls_default();
    im.deleted_pass.assign(p.deleted_pass().begin(), p.deleted_pass().end());
    im.deleted_total.assign(p.deleted_total().begin(), p.deleted_total().end());
    im.evict.threshold = p.evict().threshold();
    im.evict.valid = p.evict().valid();
    im.evict.shard = p.evict().shard();
    im.evict.row = p.evict().row();
    im.evict.scanned = p.evict().scanned();
    im.evict.lap = p.evict().lap();
    im.evict.rng = p.evict().rng();
    image.partitions.push_back(std::move(im));
  }
  return image;
}

Status ReadRecord(rocksdb::DB* db, const char* key, google::protobuf::Message* out, bool* found,
                  const std::string& db_dir) {
  std::string value;
  rocksdb::Status st = db->Get(rocksdb::ReadOptions(), key, &value);
  *found = !st.IsNotFound();
  if (st.IsNotFound()) return Status::OK();
  PEPNET_RETURN_IF_ERROR(FromRocks(st, db_dir));
  if (!out->ParseFromString(value)) {
    return Status::Corruption(db_dir + ": unparsable record '" + key + "'");
  }
  return Status::OK();
}

}  // namespace

class ShardStore::Impl {
 public:
  Impl(const ShardStoreOptions& o, const TableOptions& table_options)
      : o_(o),
        table_options_(table_options),
        db_dir_(o.dir + "/db"),
        staging_dir_(o.dir + "/staging"),
        rocks_env_(NewRocksEnv(o.env)),
        options_(DatabaseOptions(rocks_env_.get())) {}

  ~Impl() {
    if (db_) {
      rocksdb::Status st = db_->Close();
      if (!st.ok()) LOG(WARNING) << "closing " << db_dir_ << ": " << st.ToString();
    }
  }

  std::string Shard() const { return "shard " + std::to_string(o_.shard_id); }

  Status Open(std::unique_ptr<EmbeddingTable>* table) {
    Env* env = o_.env;
    PEPNET_RETURN_IF_ERROR(CreateDirs(env, o_.dir));
    const bool exists = env->FileExists(db_dir_ + "/CURRENT").ok();
    proto::ShardIdentity identity;
    proto::ShardState state;
    bool have_identity = false, have_state = false;
    if (exists) {
      // Read-only first: a store that is refused is left exactly as it was.
      rocksdb::DB* raw = nullptr;
      PEPNET_RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(options_, db_dir_, &raw),
                                       Shard() + ": cannot open the database in " + db_dir_));
      std::unique_ptr<rocksdb::DB> ro(raw);
      PEPNET_RETURN_IF_ERROR(
          ReadRecord(ro.get(), storage::kIdentityKey, &identity, &have_identity, db_dir_));
      PEPNET_RETURN_IF_ERROR(
          ReadRecord(ro.get(), storage::kStateKey, &state, &have_state, db_dir_));
      if (have_identity != have_state) {
        return Status::Corruption(db_dir_ + ": the database has " +
                                  (have_identity ? "an identity but no committed state"
                                                 : "a committed state but no identity"));
      }
      if (have_identity) {
        PEPNET_RETURN_IF_ERROR(CheckIdentity(identity));
        PEPNET_RETURN_IF_ERROR(CheckState(state));
        PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(table_options_, table, identity.hash_salt()));
        PEPNET_RETURN_IF_ERROR(Load(ro.get(), state, table->get()));
        state_ = state;
        bool found = false;
        PEPNET_RETURN_IF_ERROR(
            ReadRecord(ro.get(), storage::kCommitInfoKey, &last_commit_, &found, db_dir_));
        if (state.committed_pass() > 0 &&
            state.memory_limit_bytes() != table_options_.memory_limit_bytes) {
          LOG(WARNING) << Shard() << ": --memory_limit_bytes is "
                       << table_options_.memory_limit_bytes << "; pass " << state.committed_pass()
                       << " was committed under " << state.memory_limit_bytes()
                       << ": eviction differs from an undisturbed run from here on";
        }
      } else if (!EmptyDatabase(ro.get())) {
        return Status::Corruption(db_dir_ + ": the database holds entries but no identity");
      }
      ro->Close();
    }
    rocksdb::Options options = options_;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    PEPNET_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, db_dir_, &raw),
                                     Shard() + ": cannot open the database in " + db_dir_));
    db_.reset(raw);
    if (!have_identity) PEPNET_RETURN_IF_ERROR(Initialize(table));
    committed_ = state_.committed_pass();
    image_pass_ = committed_;
    PEPNET_RETURN_IF_ERROR(CreateDirs(env, staging_dir_));
    return CleanStaging();
  }

  Status Prepare(EmbeddingTable* table, uint32_t pass, proto::PrepareReply* info) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto start = Clock::now();
    PEPNET_RETURN_IF_ERROR(CheckTable());
    if (prepared_ == pass && image_pass_ == pass && !table->changed()) {
      *info = last_prepare_;  // a repeated request: the file is there
      return Status::OK();
    }
    if (captured_) {
      // The capture forgot the rows moved since the commit: another one would miss them.
      return Status::InvalidArgument(Shard() + ": pass " + std::to_string(pass) +
                                     " was read for a commit already (a prepare that failed, "
                                     "or the table changed after it); roll back first");
    }
    if (pass != committed_ + 1 || table->pass() != pass ||
        table->last_ended_pass() != static_cast<int64_t>(pass)) {
      return Status::InvalidArgument(
          Shard() + " cannot prepare pass " + std::to_string(pass) + ": its committed pass is " +
          std::to_string(committed_) + " and its table is at pass " +
          std::to_string(table->pass()) +
          (table->last_ended_pass() == static_cast<int64_t>(table->pass()) ? " (ended)"
                                                                           : " (not ended)"));
    }
    prepared_ = 0;
    PEPNET_RETURN_IF_ERROR(RemovePrepared());
    const std::string path = staging_dir_ + "/" + PreparedName(pass);
    const std::string tmp = path + ".tmp";
    captured_ = true;
    table->ClearChanged();
    proto::ShardState state;
    proto::PrepareReply out;
    Status st = WriteCommitFile(table, pass, tmp, &state, &out);
    if (st.ok() && table->changed()) {
      st = Status::Internal(
          "the table changed while it was read (a client pulled or pushed "
          "during the commit)");
    }
    if (st.ok()) st = o_.env->RenameFile(tmp, path);
    if (st.ok()) st = o_.env->SyncDir(staging_dir_);
    if (!st.ok()) {
      image_pass_ = -1;
      o_.env->RemoveFile(tmp);
      return Status(st.code(), Shard() + ": cannot prepare pass " + std::to_string(pass) + " in " +
                                   path + ": " + st.message());
    }
    prepared_ = pass;
    image_pass_ = pass;
    prepared_state_ = state;
    out.set_seconds(SecondsSince(start));
    last_prepare_ = out;
    *info = out;
    return o_.env->StepPoint("shard.after_prepare");
  }

  Status Commit(EmbeddingTable* table, uint32_t pass) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto start = Clock::now();
    PEPNET_RETURN_IF_ERROR(CheckTable());
    if (committed_ == pass) {
      prepared_ = 0;
      RemoveStaging();
      return Status::OK();
    }
    if (prepared_ != pass || committed_ + 1 != pass) {
      return Status::InvalidArgument(
          Shard() + " cannot commit pass " + std::to_string(pass) + ": it holds committed pass " +
          std::to_string(committed_) + " and " +
          (prepared_ ? "prepared pass " + std::to_string(prepared_) : "no prepared pass"));
    }
    const std::string path = staging_dir_ + "/" + PreparedName(pass);
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    ingest.write_global_seqno = false;
    // A file this process did not write (it prepared before a restart) is checked whole.
    ingest.verify_checksums_before_ingest = image_pass_ != static_cast<int64_t>(pass);
    PEPNET_RETURN_IF_ERROR(
        FromRocks(db_->IngestExternalFile({path}, ingest),
                  Shard() + ": cannot commit pass " + std::to_string(pass) + " from " + path));
    committed_ = pass;
    prepared_ = 0;
    captured_ = false;
    PEPNET_RETURN_IF_ERROR(o_.env->StepPoint("shard.after_ingest"));
    if (image_pass_ != static_cast<int64_t>(pass) || table->changed()) {
      // This process started after the prepare, or something ran since: the database is
      // the committed state, the table must become it.
      bool found = false;
      PEPNET_RETURN_IF_ERROR(ReadRecord(db_.get(), storage::kStateKey, &state_, &found, db_dir_));
      PEPNET_RETURN_IF_ERROR(Load(db_.get(), state_, table));
      image_pass_ = pass;
    } else {
      state_ = prepared_state_;
    }
    commit_seconds_ = SecondsSince(start);
    NoteCommit();
    RemoveStaging();
    return Status::OK();
  }

  Status Rollback(EmbeddingTable* table, uint32_t pass) {
    std::lock_guard<std::mutex> lock(mu_);
    if (committed_ != pass) {
      return Status::InvalidArgument(Shard() + " cannot roll back to pass " + std::to_string(pass) +
                                     ": its committed pass is " + std::to_string(committed_));
    }
    prepared_ = 0;
    PEPNET_RETURN_IF_ERROR(RemovePrepared());
    if (!lost_ && image_pass_ == static_cast<int64_t>(pass) && !table->changed()) {
      return Status::OK();
    }
    PEPNET_RETURN_IF_ERROR(Load(db_.get(), state_, table));
    image_pass_ = pass;
    captured_ = false;
    return Status::OK();
  }

  bool table_lost() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lost_;
  }

  uint32_t committed_pass() const {
    std::lock_guard<std::mutex> lock(mu_);
    return committed_;
  }
  uint32_t prepared_pass() const {
    std::lock_guard<std::mutex> lock(mu_);
    return prepared_;
  }

  void Stats(proto::StorageStats* s) const {
    std::lock_guard<std::mutex> lock(mu_);
    s->set_committed_pass(committed_);
    s->set_prepared_pass(prepared_);
    s->set_bytes_on_disk(FolderBytes(db_dir_) + FolderBytes(staging_dir_));
    const proto::CommitInfo& c = last_commit_;
    s->set_rows_written(c.rows_written());
    s->set_rows_deleted(c.rows_deleted());
    s->set_commit_file_bytes(c.file_bytes());
    s->set_prepare_seconds(c.prepare_seconds());
    s->set_commit_seconds(c.commit_seconds());
    s->set_commit_unix_ms(c.unix_ms());
    s->set_load_seconds(load_seconds_);
    s->set_rows_loaded(rows_loaded_);
  }

  const std::string& dir() const { return o_.dir; }

 private:
  uint64_t ConfigFingerprint() const {
    const std::string config = FormatTableConfig(table_options_);
    return ChecksumOf(config.data(), config.size());
  }

  // The committed state must be this shard's, as its identity is.
  Status CheckState(const proto::ShardState& state) const {
    if (state.shard_id() != o_.shard_id || state.num_shards() != o_.num_shards ||
        state.table_config_fingerprint() != ConfigFingerprint()) {
      return Status::Corruption(db_dir_ + ": the committed state of pass " +
                                std::to_string(state.committed_pass()) + " is of shard " +
                                std::to_string(state.shard_id()) + " of " +
                                std::to_string(state.num_shards()) +
                                " or of another table config, unlike the database's identity");
    }
    return Status::OK();
  }

  Status CheckIdentity(const proto::ShardIdentity& id) const {
    const std::string where = "data dir " + o_.dir;
    if (id.format_version() != storage::kFormatVersion) {
      return Status::InvalidArgument(
          where + " is in storage format " + std::to_string(id.format_version()) +
          "; this build reads format " + std::to_string(storage::kFormatVersion));
    }
    if (id.shard_id() != o_.shard_id || id.num_shards() != o_.num_shards) {
      return Status::InvalidArgument(where + " belongs to shard " + std::to_string(id.shard_id()) +
                                     " of " + std::to_string(id.num_shards()) +
                                     "; this server is shard " + std::to_string(o_.shard_id) +
                                     " of " + std::to_string(o_.num_shards));
    }
    const std::string config = FormatTableConfig(table_options_);
    if (id.table_config() != config) {
      return Status::InvalidArgument(where + " was written with another table config: " +
                                     FirstDifference(id.table_config(), config));
    }
    if (o_.new_hash_salt != 0 && o_.new_hash_salt != id.hash_salt()) {
      return Status::InvalidArgument(where +
                                     " was created with another hash salt than the one "
                                     "given (--hash_salt)");
    }
    return Status::OK();
  }

  bool EmptyDatabase(rocksdb::DB* db) const {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    return !it->Valid() && it->status().ok();
  }

  // A new store: the identity and the empty table's state, in one synced write.
  Status Initialize(std::unique_ptr<EmbeddingTable>* table) {
    PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(table_options_, table, o_.new_hash_salt));
    proto::ShardIdentity identity;
    identity.set_format_version(storage::kFormatVersion);
    identity.set_shard_id(o_.shard_id);
    identity.set_num_shards(o_.num_shards);
    identity.set_table_config(FormatTableConfig(table_options_));
    identity.set_hash_salt((*table)->hash_salt());
    identity.set_created_unix_ms(UnixMillis());
    TableImage image;
    PEPNET_RETURN_IF_ERROR((*table)->CaptureCommit(
        0, &image, [](const EmbeddingTable::PartitionCommit&) { return Status::OK(); }));
    proto::ShardState state = StateOf(image, 0, 0);
    rocksdb::WriteBatch batch;
    batch.Put(storage::kIdentityKey, identity.SerializeAsString());
    batch.Put(storage::kStateKey, state.SerializeAsString());
    rocksdb::WriteOptions wo;
    wo.sync = true;
    PEPNET_RETURN_IF_ERROR(
        FromRocks(db_->Write(wo, &batch), Shard() + ": cannot initialize " + db_dir_));
    state_ = state;
    (*table)->ClearChanged();
    return Status::OK();
  }

  proto::ShardState StateOf(const TableImage& image, uint32_t pass, uint64_t rows) const {
    proto::ShardState state;
    state.set_committed_pass(pass);
    state.set_shard_id(o_.shard_id);
    state.set_num_shards(o_.num_shards);
    state.set_table_config_fingerprint(ConfigFingerprint());
    state.set_memory_limit_bytes(table_options_.memory_limit_bytes);
    state.set_pass(image.pass);
    state.set_pass_ends(image.pass_ends);
    state.set_last_ended_pass(image.last_ended_pass);
    state.set_hash_salt(image.hash_salt);
    for (const PartitionImage& p : image.partitions) ToProto(p, state.add_partitions());
    state.set_rows(rows);
    return state;
  }

  // The sorted commit file of `pass`: partition by partition its deleted-key log, filter
  // and rows (puts and deletes, by key), then the state.
  Status WriteCommitFile(EmbeddingTable* table, uint32_t pass, const std::string& path,
                         proto::ShardState* state, proto::PrepareReply* info) {
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options_);
    PEPNET_RETURN_IF_ERROR(FromRocks(writer.Open(path)));
    TableImage image;
    uint64_t rows = 0;
    std::string value;
    std::vector<EmbeddingTable::RowRef> refs;
    Status st = table->CaptureCommit(pass, &image, [&](const EmbeddingTable::PartitionCommit& c) {
      const uint32_t p = c.partition;
      // The logs of earlier passes go with this commit (a range deletion in the file
      // covers only the keys of older files, so not this pass's log).
      PEPNET_RETURN_IF_ERROR(FromRocks(
          writer.DeleteRange(storage::DeletedKeyKey(p, 0, 0), storage::DeletedKeyKey(p, pass, 0))));
      for (size_t seq = 0; seq < c.deleted_log.size(); ++seq) {
        const uint64_t key = c.deleted_log[seq];
        PEPNET_RETURN_IF_ERROR(
            FromRocks(writer.Put(storage::DeletedKeyKey(p, pass, static_cast<uint32_t>(seq)),
                                 rocksdb::Slice(reinterpret_cast<const char*>(&key), 8))));
      }
      if (c.filter != nullptr) {
        PEPNET_RETURN_IF_ERROR(FromRocks(
            writer.Put(storage::PartitionKey(p, storage::kFilterTag),
                       rocksdb::Slice(reinterpret_cast<const char*>(c.filter), c.filter_bytes))));
      }
      refs = c.rows;
      std::sort(refs.begin(), refs.end(),
                [](const EmbeddingTable::RowRef& a, const EmbeddingTable::RowRef& b) {
                  return a.key < b.key;
                });
      size_t d = 0;
      for (const EmbeddingTable::RowRef& r : refs) {
        for (; d < c.deleted.size() && c.deleted[d] < r.key; ++d) {
          PEPNET_RETURN_IF_ERROR(FromRocks(writer.Delete(storage::RowKey(p, c.deleted[d]))));
        }
        const size_t body = r.row_bytes - RowLayout::kMetaOffset;
        storage::EncodeRowValue(r.id, image.pass_ends, r.row + RowLayout::kMetaOffset, body,
                                &value);
        PEPNET_RETURN_IF_ERROR(FromRocks(writer.Put(storage::RowKey(p, r.key), value)));
      }
      for (; d < c.deleted.size(); ++d) {
        PEPNET_RETURN_IF_ERROR(FromRocks(writer.Delete(storage::RowKey(p, c.deleted[d]))));
      }
      for (const SlotShardImage& s : c.image.shards) rows += s.rows;
      info->set_rows_written(info->rows_written() + refs.size());
      info->set_rows_deleted(info->rows_deleted() + c.deleted.size());
      return Status::OK();
    });
    if (!st.ok()) return st;
    *state = StateOf(image, pass, rows);
    PEPNET_RETURN_IF_ERROR(FromRocks(writer.Put(storage::kStateKey, state->SerializeAsString())));
    rocksdb::ExternalSstFileInfo file;
    PEPNET_RETURN_IF_ERROR(FromRocks(writer.Finish(&file)));
    info->set_file_bytes(file.file_size);
    return Status::OK();
  }

  // Puts the state `state` names into `table`. A failure leaves the table emptied and
  // half loaded: lost until a load succeeds.
  Status Load(rocksdb::DB* db, const proto::ShardState& state, EmbeddingTable* table) {
    Status st = LoadTable(db, state, table);
    lost_ = !st.ok();
    if (!st.ok()) image_pass_ = -1;
    return st.ok() ? st : Status(st.code(), db_dir_ + ": " + st.message());
  }

  Status CheckTable() const {
    if (!lost_) return Status::OK();
    return Status::Internal(Shard() + ": its table failed to load from " + db_dir_ +
                            " and holds nothing; the process must restart");
  }

  // Reads the rows with load_threads threads.
  Status LoadTable(rocksdb::DB* db, const proto::ShardState& state, EmbeddingTable* table) {
    const auto start = Clock::now();
    PEPNET_RETURN_IF_ERROR(table->BeginLoad(FromProto(state)));
    const uint32_t partitions = static_cast<uint32_t>(state.partitions_size());
    const int threads =
        static_cast<int>(std::max<uint32_t>(1, std::min<uint32_t>(o_.load_threads, partitions)));
    std::vector<Status> results(threads);
    std::vector<uint64_t> rows(threads, 0);
    auto work = [&](int t) {
      const uint32_t begin = partitions * t / threads, end = partitions * (t + 1) / threads;
      for (uint32_t p = begin; p < end && results[t].ok(); ++p) {
        results[t] = LoadPartition(db, state.committed_pass(), p, table, &rows[t]);
      }
    };
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; ++t) helpers.emplace_back(work, t);
    work(0);
    for (auto& h : helpers) h.join();
    uint64_t total = 0;
    for (int t = 0; t < threads; ++t) {
      PEPNET_RETURN_IF_ERROR(results[t]);
      total += rows[t];
    }
    if (total != state.rows()) {
      return Status::Corruption(
          std::to_string(total) + " stored rows, the committed state of pass " +
          std::to_string(state.committed_pass()) + " has " + std::to_string(state.rows()));
    }
    PEPNET_RETURN_IF_ERROR(table->FinishLoad());
    load_seconds_ = SecondsSince(start);
    rows_loaded_ = total;
    LOG(INFO) << Shard() << ": loaded " << total << " rows of committed pass "
              << state.committed_pass() << " from " << db_dir_ << " in " << load_seconds_ << " s";
    return Status::OK();
  }

  Status LoadPartition(rocksdb::DB* db, uint32_t committed, uint32_t p, EmbeddingTable* table,
                       uint64_t* rows) {
    const std::string first = storage::PartitionKey(p, 0);
    const std::string end = storage::PartitionEnd(p);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    ro.fill_cache = false;
    ro.readahead_size = 4 << 20;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    auto bad = [&](const std::string& what) {
      return Status::Corruption("partition " + std::to_string(p) + ": " + what);
    };
    for (it->Seek(first); it->Valid(); it->Next()) {
      const rocksdb::Slice k = it->key(), v = it->value();
      if (k.size() < storage::kPartitionKeyPrefix) return bad("short key");
      const char tag = k[3];
      if (tag == storage::kRowTag) {
        if (k.size() != storage::kPartitionKeyPrefix + 8 || v.size() < storage::kRowValueHeader) {
          return bad("malformed row entry");
        }
        const uint64_t key = storage::ReadBigEndian(k.data() + storage::kPartitionKeyPrefix, 8);
        if (table->PartitionOfKey(key) != p) {
          return bad("row " + FormatKey(key) + " belongs to partition " +
                     std::to_string(table->PartitionOfKey(key)));
        }
        uint32_t id, pass_ends;
        std::memcpy(&id, v.data(), 4);
        std::memcpy(&pass_ends, v.data() + 4, 4);
        PEPNET_RETURN_IF_ERROR(table->LoadRow(key, id, pass_ends,
                                              v.data() + storage::kRowValueHeader,
                                              v.size() - storage::kRowValueHeader));
        ++*rows;
      } else if (tag == storage::kDeletedTag) {
        if (k.size() != storage::kPartitionKeyPrefix + 8 || v.size() != 8) {
          return bad("malformed deleted-key entry");
        }
        // Logs of earlier passes are deleted by the commit after them: not in a load.
        if (storage::ReadBigEndian(k.data() + storage::kPartitionKeyPrefix, 4) != committed) {
          continue;
        }
        uint64_t key;
        std::memcpy(&key, v.data(), 8);
        table->LoadDeletedKey(p, key);
      } else if (tag == storage::kFilterTag) {
        PEPNET_RETURN_IF_ERROR(table->LoadFilter(p, v.data(), v.size()));
      } else {
        return bad(std::string("unknown entry tag '") + tag + "'");
      }
    }
    return FromRocks(it->status(), "reading partition " + std::to_string(p));
  }

  // After a commit: what is left in staging is nobody's; a failure to remove it does not
  // undo the commit.
  void RemoveStaging() {
    const Status st = RemovePrepared();
    if (!st.ok()) LOG(WARNING) << Shard() << ": " << st.ToString();
  }

  // What the stats show of the last commit, kept beside the state (not in the commit's
  // file, which cannot hold its own size). Not synced: a crash may lose it, never the
  // commit.
  void NoteCommit() {
    proto::CommitInfo info;
    info.set_rows_written(last_prepare_.rows_written());
    info.set_rows_deleted(last_prepare_.rows_deleted());
    info.set_file_bytes(last_prepare_.file_bytes());
    info.set_prepare_seconds(last_prepare_.seconds());
    info.set_commit_seconds(commit_seconds_);
    info.set_unix_ms(UnixMillis());
    last_commit_ = info;
    const rocksdb::Status st =
        db_->Put(rocksdb::WriteOptions(), storage::kCommitInfoKey, info.SerializeAsString());
    if (!st.ok()) LOG(WARNING) << Shard() << ": recording the commit's figures: " << st.ToString();
  }

  Status RemovePrepared() {
    std::vector<std::string> names;
    PEPNET_RETURN_IF_ERROR(o_.env->GetChildren(staging_dir_, &names));
    for (const std::string& name : names) {
      PEPNET_RETURN_IF_ERROR(o_.env->RemoveFile(staging_dir_ + "/" + name));
    }
    return Status::OK();
  }

  // At open: keeps the prepared file of the pass after the committed one (the
  // coordinator decides it), removes anything else (a prepare cut short, an old pass).
  Status CleanStaging() {
    std::vector<std::string> names;
    PEPNET_RETURN_IF_ERROR(o_.env->GetChildren(staging_dir_, &names));
    for (const std::string& name : names) {
      uint32_t pass = 0;
      if (ParsePreparedName(name, &pass) && pass == committed_ + 1) {
        prepared_ = pass;
        LOG(INFO) << Shard() << ": pass " << pass << " is prepared, awaiting the coordinator";
        continue;
      }
      PEPNET_RETURN_IF_ERROR(o_.env->RemoveFile(staging_dir_ + "/" + name));
    }
    return Status::OK();
  }

  uint64_t FolderBytes(const std::string& dir) const {
    std::vector<std::string> names;
    if (!o_.env->GetChildren(dir, &names).ok()) return 0;
    uint64_t total = 0;
    for (const std::string& name : names) {
      uint64_t bytes = 0;
      if (o_.env->GetFileSize(dir + "/" + name, &bytes).ok()) total += bytes;
    }
    return total;
  }

  const ShardStoreOptions o_;
  const TableOptions table_options_;
  const std::string db_dir_, staging_dir_;
  std::unique_ptr<rocksdb::Env> rocks_env_;
  const rocksdb::Options options_;
  std::unique_ptr<rocksdb::DB> db_;

  mutable std::mutex mu_;
  uint32_t committed_ = 0;
  uint32_t prepared_ = 0;
  // The pass whose committed or prepared image the table holds as of the last
  // ClearChanged (-1: none, the table must be reloaded before it can be committed).
  int64_t image_pass_ = -1;
  // A prepare read the table (and dropped its log of moved rows) since the last commit or
  // load: the table can be committed only as that prepared state, or reloaded.
  bool captured_ = false;
  // A load failed after emptying the table: it holds nothing usable.
  bool lost_ = false;
  proto::CommitInfo last_commit_;     // of the last commit, for the stats
  proto::ShardState state_;           // the committed state
  proto::ShardState prepared_state_;  // the prepared pass's, written by this process
  proto::PrepareReply last_prepare_;
  double commit_seconds_ = 0;
  double load_seconds_ = 0;
  uint64_t rows_loaded_ = 0;
};

Status ShardStore::Open(const ShardStoreOptions& options, const TableOptions& table_options,
                        std::unique_ptr<ShardStore>* store,
                        std::unique_ptr<EmbeddingTable>* table) {
  if (!table_options.durable) {
    return Status::Internal("ShardStore::Open needs TableOptions::durable");
  }
  auto impl = std::make_unique<Impl>(options, table_options);
  PEPNET_RETURN_IF_ERROR(impl->Open(table));
  store->reset(new ShardStore(std::move(impl)));
  return Status::OK();
}

ShardStore::ShardStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardStore::~ShardStore() = default;

Status ShardStore::Prepare(EmbeddingTable* table, uint32_t pass, proto::PrepareReply* info) {
  return impl_->Prepare(table, pass, info);
}
Status ShardStore::Commit(EmbeddingTable* table, uint32_t pass) {
  return impl_->Commit(table, pass);
}
Status ShardStore::Rollback(EmbeddingTable* table, uint32_t pass) {
  return impl_->Rollback(table, pass);
}
uint32_t ShardStore::committed_pass() const { return impl_->committed_pass(); }
uint32_t ShardStore::prepared_pass() const { return impl_->prepared_pass(); }
bool ShardStore::table_lost() const { return impl_->table_lost(); }
void ShardStore::Stats(proto::StorageStats* out) const { impl_->Stats(out); }
const std::string& ShardStore::dir() const { return impl_->dir(); }

}  // namespace pepnet
