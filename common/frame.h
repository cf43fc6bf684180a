// Framing of messages between clients and pepnet_ps. Layout (docs/wire-format.md):
//
//   offset 0   uint32 magic        kFrameMagic, little-endian
//   offset 4   uint32 header_len   bytes of the protobuf header that follows
//   offset 8   uint32 payload_len  bytes of packed payload after the header
//   offset 12  header  (RequestHeader or ResponseHeader, proto/ps.proto)
//   then       payload (keys as uint64, values/shows/clicks as float32, little-endian)
#ifndef PEPNET_COMMON_FRAME_H_
#define PEPNET_COMMON_FRAME_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace pepnet {

constexpr uint32_t kFrameMagic = 0x53504550;  // "PEPS"
constexpr size_t kFramePrefixBytes = 12;
// Headers are small control messages; a bigger one is a corrupt or hostile frame.
constexpr uint32_t kMaxHeaderBytes = 1 << 20;
// Default cap on header + payload; servers and clients take it from options.
constexpr uint64_t kDefaultMaxFrameBytes = 256ull << 20;

// Socket send/receive buffers asked for on both ends (the kernel caps them at
// net.core.wmem_max / rmem_max).
constexpr int kSocketBufferBytes = 4 << 20;

// Room kept for the protobuf header when sizing payloads against a frame limit.
constexpr uint64_t kHeaderAllowance = 4096;

struct FramePrefix {
  uint32_t header_len = 0;
  uint32_t payload_len = 0;
};

void EncodeFramePrefix(uint32_t header_len, uint32_t payload_len, char* out);

// Corruption for a bad magic, InvalidArgument for a header or frame over its limit.
Status DecodeFramePrefix(const char* in, uint64_t max_frame_bytes, FramePrefix* out);

// A byte buffer whose data is 8-byte aligned, so payload keys and floats can be read
// in place. Growing does not zero the bytes (they are about to be overwritten by a
// socket read or a memcpy), and the capacity is reused across frames.
class PayloadBuffer {
 public:
  void Resize(size_t bytes) {
    const size_t words = (bytes + 7) / 8;
    if (words > capacity_words_) {
      words_.reset(new uint64_t[words]);
      capacity_words_ = words;
    }
    size_ = bytes;
  }
  char* data() { return reinterpret_cast<char*>(words_.get()); }
  const char* data() const { return reinterpret_cast<const char*>(words_.get()); }
  size_t size() const { return size_; }
  size_t capacity_bytes() const { return capacity_words_ * 8; }
  void Release() {
    words_.reset();
    capacity_words_ = size_ = 0;
  }

 private:
  std::unique_ptr<uint64_t[]> words_;
  size_t capacity_words_ = 0;
  size_t size_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_FRAME_H_
