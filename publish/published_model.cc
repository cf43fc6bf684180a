#include "publish/published_model.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/checksum.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/manifest.h"
#include "publish/row_file.h"
// For kMaxDenseFloats only: the publish library does not link the worker's.
#include "worker/model_config.h"

namespace pepnet {
namespace {

// Closes a file descriptor on every return path.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Opens without blocking: a FIFO planted in a version folder must be refused, not wait
// for a writer.
int OpenForReading(const std::string& path) {
  return open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

// The size of a regular file (a FIFO or a device has none to check against).
Status RegularFileSize(int fd, const std::string& path, uint64_t* size) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::IoError("cannot stat " + path + ": " + strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::Corruption(path + ": not a regular file");
  *size = static_cast<uint64_t>(st.st_size);
  return Status::OK();
}

Status CheckRowFileSize(const std::string& path, const proto::RowFile& f) {
  Fd file{OpenForReading(path)};
  if (file.fd < 0) return Status::NotFound("cannot read " + path + ": " + strerror(errno));
  uint64_t size = 0;
  PEPNET_RETURN_IF_ERROR(RegularFileSize(file.fd, path, &size));
  if (size != f.bytes()) {
    return Status::Corruption(path + ": " + std::to_string(size) + " bytes, the manifest says " +
                              std::to_string(f.bytes()));
  }
  return Status::OK();
}

}  // namespace

PublishedVersion::PublishedVersion() = default;
PublishedVersion::~PublishedVersion() = default;
PublishedModel::~PublishedModel() = default;

const proto::ModelManifest& PublishedVersion::top() const { return manifests.back(); }

std::string PublishedVersion::top_manifest_path() const {
  return publish_dir + "/" + folders.back() + "/" + kManifestFile;
}

Status FindPublishedVersion(const std::string& publish_dir, uint64_t version,
                            PublishedVersion* out) {
  std::vector<std::string> folders;
  PEPNET_RETURN_IF_ERROR(ListVersions(publish_dir, &folders));
  if (folders.empty()) return Status::NotFound("no model version under " + publish_dir);
  size_t at = folders.size() - 1;
  if (version != 0) {
    auto it = std::lower_bound(folders.begin(), folders.end(), VersionFolder(version));
    if (it == folders.end() || *it != VersionFolder(version)) {
      return Status::NotFound("no version " + std::to_string(version) + " under " + publish_dir);
    }
    at = static_cast<size_t>(it - folders.begin());
  }
  // Only the chain's manifests are read, from the version back to its base: a broken
  // folder outside it (an old version half removed, a refused one, a stray copy) does not
  // stop the load of a version that does not need it.
  std::vector<std::string> chain_folders;
  std::vector<proto::ModelManifest> chain;
  for (;;) {
    const std::string dir = publish_dir + "/" + folders[at];
    proto::ModelManifest m;
    PEPNET_RETURN_IF_ERROR(ReadManifest(dir, &m));
    // The chain is found by version number: a manifest must be the folder's version.
    if (VersionFolder(m.version()) != folders[at]) {
      return Status::Corruption(dir + "/" + kManifestFile + ": version " +
                                std::to_string(m.version()) + " in folder " + folders[at]);
    }
    chain_folders.insert(chain_folders.begin(), folders[at]);
    chain.insert(chain.begin(), std::move(m));
    const proto::ModelManifest& top = chain.back();
    const proto::ModelManifest& here = chain.front();
    if (here.version() == top.base_version()) {
      if (!here.is_base()) {
        return Status::NotFound("version " + std::to_string(top.version()) +
                                " needs base version " + std::to_string(top.base_version()) +
                                ", absent from " + publish_dir);
      }
      break;
    }
    // A delta applies to the version just before it in the folder.
    if (here.is_base()) {
      return Status::Corruption(folders[at] + ": a base, but version " +
                                std::to_string(top.version()) + " applies to base version " +
                                std::to_string(top.base_version()));
    }
    const std::string parent = VersionFolder(here.parent_version());
    if (here.parent_version() < top.base_version() ||
        !std::binary_search(folders.begin(), folders.begin() + at, parent)) {
      return Status::NotFound("version " + std::to_string(top.version()) + " needs " +
                              (here.parent_version() == top.base_version()
                                   ? "base version " + std::to_string(top.base_version())
                                   : "version " + std::to_string(here.parent_version()) +
                                         " (of its chain to base " +
                                         std::to_string(top.base_version()) + ")") +
                              ", absent from " + publish_dir);
    }
    if (parent != folders[at - 1]) {
      return Status::Corruption(folders[at] + ": parent version " +
                                std::to_string(here.parent_version()) + " is not " +
                                folders[at - 1]);
    }
    --at;
  }
  out->publish_dir = publish_dir;
  out->folders = std::move(chain_folders);
  out->manifests = std::move(chain);
  return Status::OK();
}

Status LoadPublishedVersion(const PublishedVersion& v, PublishedModel* out) {
  const proto::ModelManifest& top = v.top();
  // Serving holds every shard's rows in one table: the per-shard caps do not apply (a
  // pull of a new key must not evict a loaded row). Admission stays: a key without a
  // row reads zeros, as on the servers. Serving never pushes, so the admission filter
  // never counts anything: the smallest one does, whatever size the servers had.
  TableOptions table_options = TableOptionsFor(top.model(), top.table_seed());
  for (SlotOptions& slot : table_options.slots) slot.eviction.max_rows = 0;
  table_options.admission_filter_bytes = uint64_t{1} << table_options.partition_bits;
  PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(table_options, &out->table));
  for (size_t i = 0; i < v.manifests.size(); ++i) {
    const proto::ModelManifest& m = v.manifests[i];
    PEPNET_RETURN_IF_ERROR(ReadVersionRows(
        v.publish_dir + "/" + v.folders[i], m,
        [&](uint64_t key, const std::string& path) {
          return out->table->Erase(key).WithContext(path);
        },
        [&](uint64_t key, const float* w, uint32_t dim, const std::string& path) {
          return out->table->SetWeights(key, w, dim).WithContext(path);
        }));
    out->versions_applied.push_back(m.version());
  }
  PEPNET_RETURN_IF_ERROR(ReadDenseFile(v.publish_dir + "/" + v.folders.back() + "/" + kDenseFile,
                                       top.dense_floats(), top.dense_checksum(), &out->dense));
  out->manifest.reset(new proto::ModelManifest(top));
  return Status::OK();
}

Status ReadVersionRows(
    const std::string& version_dir, const proto::ModelManifest& manifest,
    const std::function<Status(uint64_t, const std::string&)>& on_deleted,
    const std::function<Status(uint64_t, const float*, uint32_t, const std::string&)>& on_row) {
  const std::string folder = version_dir.substr(version_dir.find_last_of('/') + 1);
  for (const proto::RowFile& f : manifest.rows()) {
    const std::string path = version_dir + "/" + f.path();
    PEPNET_RETURN_IF_ERROR(CheckRowFileSize(path, f));
    RowFileInfo info;
    PEPNET_RETURN_IF_ERROR(ReadRowFile(
        path, f.checksum(), [&](uint64_t key) { return on_deleted(key, path); },
        [&](uint64_t key, const float* w, uint32_t dim) { return on_row(key, w, dim, path); },
        &info));
    if (info.rows != f.rows() || info.deleted != f.deleted()) {
      return Status::Corruption(folder + "/" + f.path() + ": " + std::to_string(info.rows) +
                                " rows and " + std::to_string(info.deleted) +
                                " deleted keys, the manifest says " + std::to_string(f.rows()) +
                                " and " + std::to_string(f.deleted()));
    }
  }
  return Status::OK();
}

Status LoadPublishedModel(const std::string& publish_dir, uint64_t version, PublishedModel* out) {
  PublishedVersion v;
  PEPNET_RETURN_IF_ERROR(FindPublishedVersion(publish_dir, version, &v));
  return LoadPublishedVersion(v, out);
}

Status ReadDenseFile(const std::string& path, uint64_t floats, uint64_t checksum,
                     std::vector<float>* out) {
  Fd file{OpenForReading(path)};
  if (file.fd < 0) return Status::NotFound("cannot read " + path + ": " + strerror(errno));
  uint64_t size = 0;
  PEPNET_RETURN_IF_ERROR(RegularFileSize(file.fd, path, &size));
  if (floats > kMaxDenseFloats) {
    return Status::Corruption(path + ": " + std::to_string(floats) +
                              " dense floats asked for, over the limit of " +
                              std::to_string(kMaxDenseFloats));
  }
  if (size != 4 * floats) {
    return Status::Corruption(path + ": " + std::to_string(size) + " bytes, not " +
                              std::to_string(floats) + " floats");
  }
  out->resize(floats);
  char* p = reinterpret_cast<char*>(out->data());
  for (uint64_t done = 0; done < size;) {
    const ssize_t got = read(file.fd, p + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return Status::IoError("cannot read " + path + ": " + strerror(errno));
    if (got == 0)
      return Status::Corruption(path + ": shorter than its " + std::to_string(size) +
                                " bytes (it changed while read)");
    done += static_cast<uint64_t>(got);
  }
  if (ChecksumOf(out->data(), size) != checksum) {
    return Status::Corruption(path + ": checksum mismatch (the file changed after publish)");
  }
  for (uint64_t i = 0; i < floats; ++i) {
    if (!std::isfinite((*out)[i])) {
      return Status::Corruption(path + ": dense parameter " + std::to_string(i) + " is " +
                                std::to_string((*out)[i]) + ", not finite");
    }
  }
  return Status::OK();
}

}  // namespace pepnet
