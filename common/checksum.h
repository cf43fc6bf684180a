// FileChecksum: the 64-bit checksum of published files and of dense parameters
// (docs/publish-format.md, "Checksums"). Its value is part of the publish format: never
// change it.
#ifndef PEPNET_COMMON_CHECKSUM_H_
#define PEPNET_COMMON_CHECKSUM_H_

#include <cstddef>
#include <cstdint>

namespace pepnet {

// A checksum of a byte stream, fed in pieces of any size. Not thread-safe.
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

// The checksum of `n` bytes at `data`.
uint64_t ChecksumOf(const void* data, size_t n);

}  // namespace pepnet

#endif  // PEPNET_COMMON_CHECKSUM_H_
