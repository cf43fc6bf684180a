#include "publish/version_writer.h"

#include "common/checksum.h"
#include "proto/publish.pb.h"
#include "publish/manifest.h"

namespace pepnet {

VersionWriter::VersionWriter(Env* env, std::string publish_dir, uint64_t version)
    : env_(env),
      publish_dir_(std::move(publish_dir)),
      final_dir_(publish_dir_ + "/" + VersionFolder(version)),
      tmp_dir_(final_dir_ + ".tmp") {}

Status VersionWriter::Begin() {
  PEPNET_RETURN_IF_ERROR(CreateDirs(env_, publish_dir_));
  PEPNET_RETURN_IF_ERROR(RemoveTree(env_, tmp_dir_));
  return env_->CreateDir(tmp_dir_);
}

std::string VersionWriter::RowFilePath(uint32_t shard) const {
  return tmp_dir_ + "/" + RowFileName(shard);
}

Status VersionWriter::Finish(const float* dense, uint64_t num_dense,
                             proto::ModelManifest* manifest) {
  if (env_->FileExists(final_dir_).ok()) {
    return Status::InvalidArgument(final_dir_ +
                                   " exists already: give each run its own publish "
                                   "folder");
  }
  // The shards wrote their files into their own --export_dir: it must be this folder.
  for (const proto::RowFile& f : manifest->rows()) {
    uint64_t size = 0;
    Status st = env_->GetFileSize(tmp_dir_ + "/" + f.path(), &size);
    if (!st.ok() || size != f.bytes()) {
      return Status::InvalidArgument(
          "shard " + std::to_string(f.shard()) + " said it exported " + std::to_string(f.bytes()) +
          " bytes but " + tmp_dir_ + "/" + f.path() +
          (st.ok() ? " holds " + std::to_string(size) : " is missing") +
          ": every shard's --export_dir must be this --publish_dir (" + publish_dir_ + ")");
    }
  }
  const std::string bytes(reinterpret_cast<const char*>(dense), 4 * num_dense);
  manifest->set_dense_path(kDenseFile);
  manifest->set_dense_floats(num_dense);
  manifest->set_dense_checksum(ChecksumOf(bytes.data(), bytes.size()));
  PEPNET_RETURN_IF_ERROR(WriteFileDurably(env_, tmp_dir_ + "/" + kDenseFile, bytes));
  PEPNET_RETURN_IF_ERROR(
      WriteFileDurably(env_, tmp_dir_ + "/" + kManifestFile, FormatManifest(*manifest)));
  PEPNET_RETURN_IF_ERROR(env_->SyncDir(tmp_dir_));
  PEPNET_RETURN_IF_ERROR(env_->StepPoint("publish.before_rename"));
  PEPNET_RETURN_IF_ERROR(env_->RenameFile(tmp_dir_, final_dir_));
  return env_->SyncDir(publish_dir_);
}

bool VersionWriter::IsPublished(const std::string& publish_dir, uint64_t version, uint32_t pass,
                                const std::string& pass_name) {
  proto::ModelManifest manifest;
  return ReadManifest(publish_dir + "/" + VersionFolder(version), &manifest).ok() &&
         manifest.version() == version && manifest.pass() == pass &&
         manifest.pass_name() == pass_name;
}

}  // namespace pepnet
