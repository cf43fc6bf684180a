#include "publish/row_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/checksum.h"
#include "common/hash.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/manifest.h"

namespace pepnet {
namespace {

constexpr char kMagic[8] = {'P', 'E', 'P', 'R', 'O', 'W', 'S', '2'};
// The first format, without the deleted-key section; still read.
constexpr char kMagicV1[8] = {'P', 'E', 'P', 'R', 'O', 'W', 'S', '1'};
constexpr uint32_t kMaxDim = 1 << 16;

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) fclose(f);
  }
};
using File = std::unique_ptr<FILE, FileCloser>;

}  // namespace

namespace {

// Appends through a buffer, so that a row costs a copy, not a write call.
class BufferedFile {
 public:
  explicit BufferedFile(WritableFile* file) : file_(file) { buffer_.reserve(kBytes); }
  void Put(const void* data, size_t n) {
    if (n == 0) return;  // an empty vector's data() may be null
    sum_.Update(static_cast<const char*>(data), n);
    bytes_ += n;
    buffer_.append(static_cast<const char*>(data), n);
    if (buffer_.size() >= kBytes) Flush();
  }
  Status Finish() {
    Flush();
    return status_;
  }
  uint64_t bytes() const { return bytes_; }
  uint64_t checksum() const { return sum_.Final(); }

 private:
  static constexpr size_t kBytes = 1 << 20;
  void Flush() {
    if (status_.ok() && !buffer_.empty()) status_ = file_->Append(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  WritableFile* file_;
  std::string buffer_;
  FileChecksum sum_;
  uint64_t bytes_ = 0;
  Status status_;
};

std::string UniqueSuffix() {
  std::random_device rd;
  char suffix[24];
  snprintf(suffix, sizeof(suffix), "%08x%08x", rd(), rd());
  return suffix;
}

}  // namespace

Status WriteRowFile(Env* env, const EmbeddingTable& table, bool all, uint32_t pass,
                    const std::string& path, RowFileInfo* info) {
  // A name of its own: two writers of one path never share a temporary file.
  const std::string tmp = path + ".tmp." + UniqueSuffix();
  std::unique_ptr<WritableFile> file;
  PEPNET_RETURN_IF_ERROR(env->NewWritableFile(tmp, &file));
  BufferedFile out(file.get());
  out.Put(kMagic, sizeof(kMagic));
  std::vector<uint64_t> deleted;
  if (!all) table.ForEachDeletedKey([&](uint64_t key) { deleted.push_back(key); });
  const uint64_t num_deleted = deleted.size();
  out.Put(&num_deleted, 8);
  out.Put(deleted.data(), 8 * deleted.size());
  uint64_t rows = 0;
  auto put_row = [&](uint64_t key, const float* weights, uint32_t dim, const RowMeta&) {
    out.Put(&key, 8);
    out.Put(&dim, 4);
    out.Put(weights, 4 * size_t{dim});
    ++rows;
  };
  if (all) {
    table.ForEachRow(put_row);
  } else {
    table.ForEachRowChangedIn(pass, put_row);
  }
  out.Put(&rows, 8);
  Status st = out.Finish();
  if (st.ok()) st = file->Sync();
  const Status closed = file->Close();
  if (st.ok()) st = closed;
  if (st.ok()) st = env->RenameFile(tmp, path);
  if (st.ok()) st = env->SyncDir(DirName(path));
  if (!st.ok()) {
    env->RemoveFile(tmp);
    return st;
  }
  info->rows = rows;
  info->deleted = num_deleted;
  info->bytes = out.bytes();
  info->checksum = out.checksum();
  return Status::OK();
}

void AddRowFile(uint32_t shard, const RowFileInfo& info, proto::ModelManifest* manifest) {
  proto::RowFile* f = manifest->add_rows();
  f->set_shard(shard);
  f->set_path(RowFileName(shard));
  f->set_rows(info.rows);
  f->set_bytes(info.bytes);
  f->set_checksum(info.checksum);
  f->set_deleted(info.deleted);
  manifest->set_total_rows(manifest->total_rows() + info.rows);
  manifest->set_total_deleted(manifest->total_deleted() + info.deleted);
}

Status ReadRowFile(const std::string& path, uint64_t expected_checksum,
                   const std::function<Status(uint64_t)>& on_deleted,
                   const std::function<Status(uint64_t, const float*, uint32_t)>& on_row,
                   RowFileInfo* info) {
  // Opened without blocking and refused unless a regular file: a FIFO in its place
  // would otherwise wait for a writer forever.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Status::NotFound("cannot read " + path + ": " + strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status::Corruption(path + ": not a regular file");
  }
  File f(fdopen(fd, "rb"));
  if (!f) {
    close(fd);
    return Status::IoError("cannot read " + path + ": " + strerror(errno));
  }
  const long size = static_cast<long>(st.st_size);
  FileChecksum sum;
  uint64_t offset = 0;
  auto get = [&](void* out, size_t n) {
    if (fread(out, 1, n, f.get()) != n) return false;
    sum.Update(static_cast<const char*>(out), n);
    offset += n;
    return true;
  };
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption(path + ": " + what + " at byte " + std::to_string(offset));
  };
  char magic[8];
  if (size < 16 || !get(magic, 8) ||
      (std::memcmp(magic, kMagic, 8) != 0 && std::memcmp(magic, kMagicV1, 8) != 0)) {
    return corrupt("not a row file (bad magic or too short)");
  }
  uint64_t num_deleted = 0;
  if (std::memcmp(magic, kMagic, 8) == 0 &&
      (!get(&num_deleted, 8) || num_deleted > (static_cast<uint64_t>(size) - 16) / 8)) {
    return corrupt("deleted-key count larger than the file");
  }
  for (uint64_t i = 0; i < num_deleted; ++i) {
    uint64_t key;
    if (!get(&key, 8)) return corrupt("truncated deleted keys");
    PEPNET_RETURN_IF_ERROR(on_deleted(key));
  }
  std::vector<float> weights;
  uint64_t rows = 0;
  while (offset + 8 < static_cast<uint64_t>(size)) {
    uint64_t key;
    uint32_t dim;
    if (!get(&key, 8) || !get(&dim, 4)) return corrupt("truncated row header");
    if (dim == 0 || dim > kMaxDim) return corrupt("row dim " + std::to_string(dim));
    weights.resize(dim);
    if (!get(weights.data(), 4 * size_t{dim})) return corrupt("truncated row");
    for (uint32_t i = 0; i < dim; ++i) {
      if (!std::isfinite(weights[i])) {
        return corrupt("row of key " + FormatKey(key) + ": weight " + std::to_string(i) + " is " +
                       std::to_string(weights[i]) + ", not finite,");
      }
    }
    PEPNET_RETURN_IF_ERROR(on_row(key, weights.data(), dim));
    ++rows;
  }
  uint64_t count = 0;
  if (!get(&count, 8)) return corrupt("truncated footer");
  if (count != rows) {
    return corrupt("footer says " + std::to_string(count) + " rows, read " + std::to_string(rows));
  }
  info->rows = rows;
  info->deleted = num_deleted;
  info->bytes = offset;
  info->checksum = sum.Final();
  if (info->checksum != expected_checksum) {
    return Status::Corruption(path + ": checksum mismatch (the file changed after publish)");
  }
  return Status::OK();
}

}  // namespace pepnet
