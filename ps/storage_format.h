// The key/value layout of a shard's RocksDB database; docs/storage-format.md describes
// it beside these constants. Everything of one table partition sits under one key prefix,
// so a commit writes the partitions one after another in key order (one sorted file, one
// partition in memory at a time) and a load reads them in parallel by prefix.
//
//   "I"                                  ShardIdentity (proto), written at creation
//   "P" part:be16 "d" pass:be32 seq:be32 8-byte key: the pass's deleted-key log, in order
//   "P" part:be16 "f"                    the partition's admission-filter counters
//   "P" part:be16 "r" key:be64           a row: id:u32 pass_ends:u32 RowMeta weights acc
//   "S"                                  ShardState (proto): the committed pass and image
//   "C"                                  CommitInfo (proto): the last commit's figures
//
// Integers in keys are big-endian, so byte order is numeric order; values are
// little-endian, as the rows lie in memory.
#ifndef PEPNET_PS_STORAGE_FORMAT_H_
#define PEPNET_PS_STORAGE_FORMAT_H_

#include <cstdint>
#include <cstring>
#include <string>

namespace pepnet {
namespace storage {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "row values are stored as they lie");

constexpr uint32_t kFormatVersion = 1;
constexpr char kIdentityKey[] = "I";
constexpr char kStateKey[] = "S";
constexpr char kCommitInfoKey[] = "C";
constexpr char kPartitionTag = 'P';
constexpr char kDeletedTag = 'd';
constexpr char kFilterTag = 'f';
constexpr char kRowTag = 'r';
// Bytes before a row's RowLayout body: its place (row id) and the pass ends before its
// write.
constexpr size_t kRowValueHeader = 8;
// 'P', partition, tag.
constexpr size_t kPartitionKeyPrefix = 4;

inline void AppendBigEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

inline uint64_t ReadBigEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// "P" partition tag: the prefix of one kind of a partition's entries.
inline std::string PartitionKey(uint32_t partition, char tag) {
  std::string k(1, kPartitionTag);
  AppendBigEndian(&k, partition, 2);
  k.push_back(tag);
  return k;
}

inline std::string RowKey(uint32_t partition, uint64_t key) {
  std::string k = PartitionKey(partition, kRowTag);
  AppendBigEndian(&k, key, 8);
  return k;
}

inline std::string DeletedKeyKey(uint32_t partition, uint32_t pass, uint32_t seq) {
  std::string k = PartitionKey(partition, kDeletedTag);
  AppendBigEndian(&k, pass, 4);
  AppendBigEndian(&k, seq, 4);
  return k;
}

// The first key past every entry of `partition`.
inline std::string PartitionEnd(uint32_t partition) {
  std::string k(1, kPartitionTag);
  AppendBigEndian(&k, partition + 1, 2);
  return k;
}

// Row value: header, then the row's bytes after its key.
inline void EncodeRowValue(uint32_t id, uint32_t pass_ends, const char* body, size_t n,
                           std::string* out) {
  out->resize(kRowValueHeader + n);
  std::memcpy(&(*out)[0], &id, 4);
  std::memcpy(&(*out)[4], &pass_ends, 4);
  std::memcpy(&(*out)[kRowValueHeader], body, n);
}

}  // namespace storage
}  // namespace pepnet

#endif  // PEPNET_PS_STORAGE_FORMAT_H_
