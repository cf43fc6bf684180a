// Row files: the embedding rows of one shard in a published model version
// (docs/publish-format.md). Layout, little-endian:
//   "PEPROWS2"                      8-byte magic
//   uint64 deleted count D, then D uint64 deleted keys (always 0 in a base)
//   per row: uint64 key, uint32 dim, dim float32 weights
//   uint64 row count                 footer
// The checksum (FileChecksum) covers every byte of the file.
#ifndef PEPNET_PS_ROW_FILE_H_
#define PEPNET_PS_ROW_FILE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"

namespace pepnet {

class EmbeddingTable;

// A 64-bit checksum of a byte stream, fed in pieces of any size.
class FileChecksum {
 public:
  void Update(const char* data, size_t n);
  uint64_t Final() const;

 private:
  uint64_t state_ = 0x6a09e667f3bcc908ULL;
  uint64_t carry_ = 0;
  int carry_bytes_ = 0;
  uint64_t length_ = 0;
};

struct RowFileInfo {
  uint64_t rows = 0;
  uint64_t deleted = 0;
  uint64_t bytes = 0;
  uint64_t checksum = 0;
};

// Writes the table's rows to `path` (through `path`.tmp and a rename): all of them (a
// base), or only those created or updated in `pass` and the keys deleted in it (a delta).
Status WriteRowFile(const EmbeddingTable& table, bool all, uint32_t pass, const std::string& path,
                    RowFileInfo* info);

// Reads a row file, calling on_deleted(key) per deleted key and then on_row(key,
// weights, dim) per row (stopping at the first error either returns).
// Corruption naming the file for a bad magic, a truncated file, a row count that does not
// match, or a checksum other than `expected_checksum` (0 = not checked).
Status ReadRowFile(const std::string& path, uint64_t expected_checksum,
                   const std::function<Status(uint64_t)>& on_deleted,
                   const std::function<Status(uint64_t, const float*, uint32_t)>& on_row,
                   RowFileInfo* info);

// Checksum of a whole file.
Status ChecksumFile(const std::string& path, uint64_t* checksum, uint64_t* bytes);

}  // namespace pepnet

#endif  // PEPNET_PS_ROW_FILE_H_
