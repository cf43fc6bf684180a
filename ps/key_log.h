// KeyLog: an append-only list of keys kept in fixed 4 KiB blocks, so it grows a block at
// a time (never copying itself, never doubling) and its bytes are known exactly: what
// the memory limit needs from the log of deleted keys.
//
// Not thread-safe: a table partition owns one and uses it under its lock.
#ifndef PEPNET_PS_KEY_LOG_H_
#define PEPNET_PS_KEY_LOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace pepnet {

class KeyLog {
 public:
  // Appends a key; returns the bytes this allocated (0 or a block, and maybe a bigger
  // block directory), as BlockBytes counts them.
  uint64_t Add(uint64_t key);
  // At least what the next Add allocates: 0 while the last block has room.
  uint64_t NextAddBytesBound() const;
  // Drops every key and frees every block; returns the bytes freed.
  uint64_t Clear();

  size_t size() const { return size_; }
  uint64_t bytes() const { return bytes_; }

  template <typename Fn>
  void ForEach(Fn fn) const {
    for (size_t i = 0; i < size_; ++i) fn(blocks_[i / kBlockKeys][i % kBlockKeys]);
  }

 private:
  // 4096 bytes with glibc's 8-byte header: 511 keys.
  static constexpr size_t kBlockKeys = 511;

  std::vector<std::unique_ptr<uint64_t[]>> blocks_;
  size_t size_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_PS_KEY_LOG_H_
