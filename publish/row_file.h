// Row files: the embedding rows of one shard in a published model version
// (docs/publish-format.md). Layout, little-endian:
//   "PEPROWS2"                      8-byte magic
//   uint64 deleted count D, then D uint64 deleted keys (always 0 in a base)
//   per row: uint64 key, uint32 dim, dim float32 weights
//   uint64 row count                 footer
// The checksum (FileChecksum, common/checksum.h) covers every byte of the file.
#ifndef PEPNET_PUBLISH_ROW_FILE_H_
#define PEPNET_PUBLISH_ROW_FILE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "common/env.h"
#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelManifest;
}
class EmbeddingTable;

struct RowFileInfo {
  uint64_t rows = 0;
  uint64_t deleted = 0;
  uint64_t bytes = 0;
  uint64_t checksum = 0;
};

// Writes the table's rows to `path`: all of them (a base), or only those created or
// updated in `pass` and the keys deleted in it (a delta). Durably: through `path`.tmp,
// fsync, rename and an fsync of the folder, every step checked; errors name the path.
Status WriteRowFile(Env* env, const EmbeddingTable& table, bool all, uint32_t pass,
                    const std::string& path, RowFileInfo* info);

// Lists shard `shard`'s row file (RowFileName) of `info` in `manifest`, and adds its rows
// and deleted keys to the manifest's totals.
void AddRowFile(uint32_t shard, const RowFileInfo& info, proto::ModelManifest* manifest);

// Reads a row file, calling on_deleted(key) per deleted key and then on_row(key,
// weights, dim) per row (stopping at the first error either returns).
// Corruption naming the file and the byte offset for a bad magic, a truncated file, a
// row dim of 0 or over 65536, a weight that is not finite (a NaN or an infinity would
// poison every score that reads the row), a row count that does not match the footer,
// or a checksum other than `expected_checksum`. The checksum is always compared, 0
// included: it is a value like any other, never "unchecked". It covers the whole file, so
// it is known only at the end: the callbacks have seen the rows by then, and a caller
// must drop what they built when the read fails.
Status ReadRowFile(const std::string& path, uint64_t expected_checksum,
                   const std::function<Status(uint64_t)>& on_deleted,
                   const std::function<Status(uint64_t, const float*, uint32_t)>& on_row,
                   RowFileInfo* info);

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_ROW_FILE_H_
