#include "publish/manifest.h"

#include <dirent.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cstdio>

#include "common/text_proto.h"
#include "proto/publish.pb.h"
#include "ps/table_config.h"
// For kMaxDenseFloats only: the publish library does not link the worker's.
#include "worker/model_config.h"

namespace pepnet {

std::string VersionFolder(uint64_t version) {
  char name[32];
  snprintf(name, sizeof(name), "v-%08llu", static_cast<unsigned long long>(version));
  return name;
}

std::string RowFileName(uint32_t shard) { return "rows-" + std::to_string(shard) + ".bin"; }

Status ListVersions(const std::string& publish_dir, std::vector<std::string>* folders) {
  folders->clear();
  DIR* d = opendir(publish_dir.c_str());
  if (d == nullptr) return Status::NotFound("cannot read the model folder " + publish_dir);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    // "v-" and the version's digits: "v-00000005.tmp" is unfinished, "v-00000005-old" a
    // copy someone made; neither is a version.
    const bool digits =
        name.size() > 2 && name.find_first_not_of("0123456789", 2) == std::string::npos;
    if (name.rfind("v-", 0) == 0 && digits) folders->push_back(name);
  }
  closedir(d);
  std::sort(folders->begin(), folders->end());
  return Status::OK();
}

Status ReadManifest(const std::string& version_dir, proto::ModelManifest* manifest) {
  const std::string path = version_dir + "/" + kManifestFile;
  PEPNET_RETURN_IF_ERROR(CheckConfigFile(path, "model manifest"));
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "model manifest", &text));
  PEPNET_RETURN_IF_ERROR(ParseTextProto(text, path, manifest));
  return ValidateManifest(*manifest, path);
}

Status ValidateManifest(const proto::ModelManifest& m, const std::string& path) {
  auto bad = [&](const std::string& what) { return Status::Corruption(path + ": " + what); };
  const uint64_t v = m.version();
  if (v == 0) return bad("version 0 (versions start at 1)");
  if (m.parent_version() >= v) {
    return bad("parent_version " + std::to_string(m.parent_version()) + " is not before version " +
               std::to_string(v));
  }
  if (m.is_base() ? m.base_version() != v : m.base_version() == 0 || m.base_version() >= v) {
    return bad("base_version " + std::to_string(m.base_version()) + " for " +
               (m.is_base() ? "a base" : "a delta") + " of version " + std::to_string(v));
  }
  if (m.rows_size() > static_cast<int>(kMaxRowFiles)) {
    return bad(std::to_string(m.rows_size()) + " row files, over the limit of " +
               std::to_string(kMaxRowFiles));
  }
  uint64_t rows = 0, deleted = 0;
  for (int i = 0; i < m.rows_size(); ++i) {
    const proto::RowFile& f = m.rows(i);
    const std::string where = "rows[" + std::to_string(i) + "]";
    if (f.shard() != static_cast<uint32_t>(i) || f.path() != RowFileName(f.shard())) {
      return bad(where + ": shard " + std::to_string(f.shard()) + " path '" + f.path() +
                 "'; row file i is shard i's, named " + RowFileName(i));
    }
    if (m.is_base() && f.deleted() != 0) {
      return bad(where + ": a base with " + std::to_string(f.deleted()) + " deleted keys");
    }
    // 16 bytes of magic and footer at least, 8 per deleted key, 16 per row at least (key,
    // dim and one weight): counts no file of `bytes` can hold are refused unread.
    const uint64_t room = f.bytes() < 16 ? 0 : f.bytes() - 16;
    if (f.bytes() < 16 || f.deleted() > room / 8 || f.rows() > (room - 8 * f.deleted()) / 16) {
      return bad(where + ": " + std::to_string(f.rows()) + " rows and " +
                 std::to_string(f.deleted()) + " deleted keys cannot fit in " +
                 std::to_string(f.bytes()) + " bytes");
    }
    if (__builtin_add_overflow(rows, f.rows(), &rows) ||
        __builtin_add_overflow(deleted, f.deleted(), &deleted)) {
      return bad("the row files' counts overflow");
    }
  }
  if (rows != m.total_rows() || deleted != m.total_deleted()) {
    return bad("total_rows " + std::to_string(m.total_rows()) + " and total_deleted " +
               std::to_string(m.total_deleted()) + ", the row files hold " + std::to_string(rows) +
               " and " + std::to_string(deleted));
  }
  if (m.dense_path() != kDenseFile) {
    return bad("dense_path '" + m.dense_path() + "' is not " + kDenseFile);
  }
  if (m.dense_floats() == 0 || m.dense_floats() > kMaxDenseFloats) {
    return bad("dense_floats " + std::to_string(m.dense_floats()) + " is not in [1, " +
               std::to_string(kMaxDenseFloats) + "]");
  }
  if (!m.has_model()) return bad("no model");
  return Status::OK();
}

std::string FormatManifest(const proto::ModelManifest& manifest) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(manifest, &text);
  return "# pepnet-ps model version (docs/publish-format.md)\n" + text;
}

}  // namespace pepnet
