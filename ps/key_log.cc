#include "ps/key_log.h"

#include "ps/slot_shard.h"

namespace pepnet {

uint64_t KeyLog::Add(uint64_t key) {
  const uint64_t before = bytes_;
  if (size_ == blocks_.size() * kBlockKeys) {
    bytes_ -= VectorBytes(blocks_);
    blocks_.emplace_back(new uint64_t[kBlockKeys]);
    bytes_ += VectorBytes(blocks_) + BlockBytes(sizeof(uint64_t) * kBlockKeys);
  }
  blocks_[size_ / kBlockKeys][size_ % kBlockKeys] = key;
  ++size_;
  return bytes_ - before;
}

uint64_t KeyLog::NextAddBytesBound() const {
  if (size_ < blocks_.size() * kBlockKeys) return 0;
  // A block, and a directory that may have doubled (its old one is still counted until
  // freed, so the new one counts whole).
  const size_t slots = blocks_.empty() ? 1 : 2 * blocks_.size();
  return BlockBytes(sizeof(uint64_t) * kBlockKeys) + BlockBytes(sizeof(void*) * slots);
}

uint64_t KeyLog::Clear() {
  const uint64_t freed = bytes_;
  std::vector<std::unique_ptr<uint64_t[]>>().swap(blocks_);
  size_ = 0;
  bytes_ = 0;
  return freed;
}

}  // namespace pepnet
