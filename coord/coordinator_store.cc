#include "coord/coordinator_store.h"

#include <chrono>
#include <cstdio>

#include <google/protobuf/text_format.h>

#include "common/checksum.h"
#include "common/text_proto.h"
#include "worker/dense_state.h"

namespace pepnet {
namespace {

constexpr char kRecordFile[] = "coordinator.pbtxt";
constexpr uint32_t kRecordVersion = 1;

std::string HexOf(uint64_t v) {
  char buf[20];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string CoordinatorStore::DenseName(uint32_t pass) const {
  char name[32];
  snprintf(name, sizeof(name), "dense-%08u.bin", pass);
  return name;
}

Status CoordinatorStore::Open(Env* env, const std::string& dir, const Identity& identity,
                              std::unique_ptr<CoordinatorStore>* out) {
  std::unique_ptr<CoordinatorStore> store(new CoordinatorStore(env, dir));
  PEPNET_RETURN_IF_ERROR(CreateDirs(env, dir));
  const std::string path = dir + "/" + kRecordFile;
  std::string text;
  Status st = env->ReadFile(path, &text);
  proto::CoordinatorRecord& r = store->record_;
  if (st.code() == Status::kNotFound) {
    r.set_format_version(kRecordVersion);
    r.set_model_fingerprint(identity.model_fingerprint);
    r.set_num_shards(identity.num_shards);
    PEPNET_RETURN_IF_ERROR(store->Write(r));
    *out = std::move(store);
    return Status::OK();
  }
  PEPNET_RETURN_IF_ERROR(st);
  st = ParseTextProto(text, path, &r);
  if (!st.ok()) return Status::Corruption(st.message());
  const std::string where = "coordinator data dir " + dir;
  if (r.format_version() != kRecordVersion) {
    return Status::InvalidArgument(where + " holds a record of format " +
                                   std::to_string(r.format_version()) + "; this build reads " +
                                   std::to_string(kRecordVersion));
  }
  if (r.model_fingerprint() != identity.model_fingerprint) {
    return Status::InvalidArgument(where + " holds a run of another model config (fingerprint " +
                                   HexOf(r.model_fingerprint()) + "; this config " +
                                   HexOf(identity.model_fingerprint) + ")");
  }
  if (r.num_shards() != identity.num_shards) {
    return Status::InvalidArgument(where + " holds a run of " + std::to_string(r.num_shards()) +
                                   " shards; --servers lists " +
                                   std::to_string(identity.num_shards));
  }
  if (r.committed_pass() > 0) {
    const std::string dense_path = dir + "/" + r.dense_file();
    PEPNET_RETURN_IF_ERROR(env->ReadFile(dense_path, &store->dense_));
    if (ChecksumOf(store->dense_.data(), store->dense_.size()) != r.dense_checksum()) {
      return Status::Corruption(dense_path + ": checksum differs from the record's");
    }
    DenseState state;
    PEPNET_RETURN_IF_ERROR(DecodeDenseState(store->dense_, dense_path, &state));
    if (state.params.size() != identity.num_dense) {
      return Status::InvalidArgument(
          dense_path + " holds a dense checkpoint of " + std::to_string(state.params.size()) +
          " floats; this model has " + std::to_string(identity.num_dense));
    }
  }
  // Left by a crash: a dense checkpoint the record never named, a half-written file.
  std::vector<std::string> names;
  PEPNET_RETURN_IF_ERROR(env->GetChildren(dir, &names));
  for (const std::string& name : names) {
    const bool stray_dense = name.rfind("dense-", 0) == 0 && name != r.dense_file();
    const bool tmp = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if (stray_dense || tmp) PEPNET_RETURN_IF_ERROR(env->RemoveFile(dir + "/" + name));
  }
  *out = std::move(store);
  return Status::OK();
}

Status CoordinatorStore::Write(const proto::CoordinatorRecord& record) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(record, &text);
  return WriteFileDurably(env_, dir_ + "/" + kRecordFile,
                          "# pepnet-ps coordinator record (docs/storage-format.md)\n" + text);
}

Status CoordinatorStore::WriteDense(uint32_t pass, const std::string& encoded) {
  pending_name_.clear();
  pending_dense_.clear();
  const std::string name = DenseName(pass);
  PEPNET_RETURN_IF_ERROR(WriteFileDurably(env_, dir_ + "/" + name, encoded));
  pending_name_ = name;
  pending_dense_ = encoded;
  return Status::OK();
}

Status CoordinatorStore::Commit(uint32_t pass, const std::string& pass_name, uint64_t version,
                                const std::string& metrics_json, const std::string& run_auc) {
  if (pending_name_ != DenseName(pass)) {
    return Status::Internal("commit of pass " + std::to_string(pass) + " without its dense state");
  }
  proto::CoordinatorRecord r = record_;
  const std::string old_dense = r.dense_file();
  r.set_committed_pass(pass);
  r.add_done_passes(pass_name);
  r.set_dense_file(pending_name_);
  r.set_dense_floats((pending_dense_.size() - 32) / 12);
  r.set_dense_checksum(ChecksumOf(pending_dense_.data(), pending_dense_.size()));
  r.set_committed_version(version);
  r.set_metrics_json(metrics_json);
  r.set_run_auc(run_auc);
  r.set_commit_unix_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
  PEPNET_RETURN_IF_ERROR(Write(r));
  record_ = r;
  dense_.swap(pending_dense_);
  pending_dense_.clear();
  pending_name_.clear();
  // The checkpoint before is named by nothing now.
  if (!old_dense.empty() && old_dense != record_.dense_file()) {
    env_->RemoveFile(dir_ + "/" + old_dense);
  }
  return Status::OK();
}

Status CoordinatorStore::MarkPublished(uint64_t version, bool base) {
  proto::CoordinatorRecord r = record_;
  r.set_last_version(version);
  if (base) r.set_last_base(version);
  PEPNET_RETURN_IF_ERROR(Write(r));
  record_ = r;
  return Status::OK();
}

}  // namespace pepnet
