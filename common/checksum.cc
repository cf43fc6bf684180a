#include "common/checksum.h"

#include "common/hash.h"

namespace pepnet {

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

uint64_t ChecksumOf(const void* data, size_t n) {
  FileChecksum sum;
  sum.Update(static_cast<const char*>(data), n);
  return sum.Final();
}

}  // namespace pepnet
