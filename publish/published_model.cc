#include "publish/published_model.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "common/checksum.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/manifest.h"
#include "publish/row_file.h"

namespace pepnet {

PublishedModel::~PublishedModel() = default;

Status LoadPublishedModel(const std::string& publish_dir, uint64_t version, PublishedModel* out) {
  std::vector<std::string> folders;
  PEPNET_RETURN_IF_ERROR(ListVersions(publish_dir, &folders));
  if (folders.empty()) return Status::NotFound("no model version under " + publish_dir);
  std::vector<proto::ModelManifest> manifests(folders.size());
  int target = -1;
  for (size_t i = 0; i < folders.size(); ++i) {
    PEPNET_RETURN_IF_ERROR(ReadManifest(publish_dir + "/" + folders[i], &manifests[i]));
    if (version == 0 || manifests[i].version() == version) target = static_cast<int>(i);
  }
  if (target < 0) {
    return Status::NotFound("no version " + std::to_string(version) + " under " + publish_dir);
  }
  const proto::ModelManifest& top = manifests[target];
  int base = -1;
  for (int i = 0; i <= target; ++i) {
    if (manifests[i].version() == top.base_version()) base = i;
  }
  if (base < 0 || !manifests[base].is_base()) {
    return Status::NotFound("version " + std::to_string(top.version()) + " needs base version " +
                            std::to_string(top.base_version()) + ", absent from " + publish_dir);
  }
  // Serving holds every shard's rows in one table: the per-shard caps do not apply (a
  // pull of a new key must not evict a loaded row). Admission stays: a key without a
  // row reads zeros, as on the servers.
  TableOptions table_options = TableOptionsFor(top.model(), top.table_seed());
  for (SlotOptions& slot : table_options.slots) slot.eviction.max_rows = 0;
  PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(table_options, &out->table));
  for (int i = base; i <= target; ++i) {
    const proto::ModelManifest& m = manifests[i];
    if (i > base && m.parent_version() != manifests[i - 1].version()) {
      return Status::Corruption(folders[i] + ": parent version " +
                                std::to_string(m.parent_version()) + " is not " + folders[i - 1]);
    }
    for (const proto::RowFile& f : m.rows()) {
      RowFileInfo info;
      PEPNET_RETURN_IF_ERROR(ReadRowFile(
          publish_dir + "/" + folders[i] + "/" + f.path(), f.checksum(),
          [&](uint64_t key) { return out->table->Erase(key); },
          [&](uint64_t key, const float* w, uint32_t dim) {
            return out->table->SetWeights(key, w, dim);
          },
          &info));
      if (m.is_base() && info.deleted > 0) {
        return Status::Corruption(folders[i] + "/" + f.path() + ": a base with " +
                                  std::to_string(info.deleted) + " deleted keys");
      }
      if (info.rows != f.rows() || info.deleted != f.deleted()) {
        return Status::Corruption(folders[i] + "/" + f.path() + ": " + std::to_string(info.rows) +
                                  " rows and " + std::to_string(info.deleted) +
                                  " deleted keys, the manifest says " + std::to_string(f.rows()) +
                                  " and " + std::to_string(f.deleted()));
      }
    }
    out->versions_applied.push_back(m.version());
  }
  const std::string dense_path = publish_dir + "/" + folders[target] + "/" + top.dense_path();
  std::ifstream in(dense_path, std::ios::binary);
  out->dense.resize(top.dense_floats());
  in.read(reinterpret_cast<char*>(out->dense.data()),
          static_cast<std::streamsize>(4 * out->dense.size()));
  if (!in || in.peek() != EOF) {
    return Status::Corruption(dense_path + ": not " + std::to_string(top.dense_floats()) +
                              " floats");
  }
  FileChecksum sum;
  sum.Update(reinterpret_cast<const char*>(out->dense.data()), 4 * out->dense.size());
  if (sum.Final() != top.dense_checksum()) {
    return Status::Corruption(dense_path + ": checksum mismatch");
  }
  out->manifest.reset(new proto::ModelManifest(top));
  return Status::OK();
}

}  // namespace pepnet
