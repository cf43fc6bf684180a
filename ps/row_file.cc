#include "ps/row_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "common/hash.h"
#include "ps/embedding_table.h"

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

void FileChecksum::Update(const char* data, size_t n) {
  length_ += n;
  for (size_t i = 0; i < n; ++i) {
    carry_ |= uint64_t{static_cast<unsigned char>(data[i])} << (8 * carry_bytes_);
    if (++carry_bytes_ == 8) {
      state_ = Mix64(state_ ^ carry_);
      carry_ = 0;
      carry_bytes_ = 0;
    }
  }
}

uint64_t FileChecksum::Final() const { return Mix64(Mix64(state_ ^ carry_) ^ length_); }

Status WriteRowFile(const EmbeddingTable& table, bool all, uint32_t pass, const std::string& path,
                    RowFileInfo* info) {
  const std::string tmp = path + ".tmp";
  File f(fopen(tmp.c_str(), "wb"));
  if (!f) return Status::Unavailable("cannot write " + tmp + ": " + strerror(errno));
  FileChecksum sum;
  bool ok = true;
  auto put = [&](const void* data, size_t n) {
    if (n == 0) return;  // an empty vector's data() may be null, which fwrite must not get
    sum.Update(static_cast<const char*>(data), n);
    ok = ok && fwrite(data, 1, n, f.get()) == n;
  };
  put(kMagic, sizeof(kMagic));
  std::vector<uint64_t> deleted;
  if (!all) table.ForEachDeletedKey([&](uint64_t key) { deleted.push_back(key); });
  const uint64_t num_deleted = deleted.size();
  put(&num_deleted, 8);
  put(deleted.data(), 8 * deleted.size());
  uint64_t rows = 0;
  const uint16_t p16 = static_cast<uint16_t>(pass);
  table.ForEachRow([&](uint64_t key, const float* weights, uint32_t dim, const RowMeta& meta) {
    if (!all && meta.created_pass != p16 && meta.last_update_pass != p16) return;
    put(&key, 8);
    put(&dim, 4);
    put(weights, 4 * size_t{dim});
    ++rows;
  });
  put(&rows, 8);
  ok = ok && fflush(f.get()) == 0;
  const long bytes = ftell(f.get());
  f.reset();
  if (!ok) return Status::Unavailable("cannot write " + tmp + ": " + strerror(errno));
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Unavailable("cannot rename " + tmp + ": " + strerror(errno));
  }
  info->rows = rows;
  info->deleted = num_deleted;
  info->bytes = static_cast<uint64_t>(bytes);
  info->checksum = sum.Final();
  return Status::OK();
}

Status ReadRowFile(const std::string& path, uint64_t expected_checksum,
                   const std::function<Status(uint64_t)>& on_deleted,
                   const std::function<Status(uint64_t, const float*, uint32_t)>& on_row,
                   RowFileInfo* info) {
  File f(fopen(path.c_str(), "rb"));
  if (!f) return Status::NotFound("cannot read " + path + ": " + strerror(errno));
  fseek(f.get(), 0, SEEK_END);
  const long size = ftell(f.get());
  fseek(f.get(), 0, SEEK_SET);
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
    PEPNET_RETURN_IF_ERROR(on_row(key, weights.data(), dim));
    ++rows;
  }
  uint64_t count;
  if (!get(&count, 8) || count != rows) {
    return corrupt("footer says " + std::to_string(count) + " rows, read " + std::to_string(rows));
  }
  info->rows = rows;
  info->deleted = num_deleted;
  info->bytes = offset;
  info->checksum = sum.Final();
  if (expected_checksum != 0 && info->checksum != expected_checksum) {
    return Status::Corruption(path + ": checksum mismatch (the file changed after publish)");
  }
  return Status::OK();
}

Status ChecksumFile(const std::string& path, uint64_t* checksum, uint64_t* bytes) {
  File f(fopen(path.c_str(), "rb"));
  if (!f) return Status::NotFound("cannot read " + path + ": " + strerror(errno));
  FileChecksum sum;
  char buffer[1 << 16];
  size_t n;
  *bytes = 0;
  while ((n = fread(buffer, 1, sizeof(buffer), f.get())) > 0) {
    sum.Update(buffer, n);
    *bytes += n;
  }
  *checksum = sum.Final();
  return Status::OK();
}

}  // namespace pepnet
