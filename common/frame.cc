#include "common/frame.h"

#include <cstring>

namespace pepnet {
namespace {

void PutU32(uint32_t v, char* out) {
  unsigned char b[4] = {static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                        static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
  std::memcpy(out, b, 4);
}

uint32_t GetU32(const char* in) {
  const auto* b = reinterpret_cast<const unsigned char*>(in);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

}  // namespace

void EncodeFramePrefix(uint32_t header_len, uint32_t payload_len, char* out) {
  PutU32(kFrameMagic, out);
  PutU32(header_len, out + 4);
  PutU32(payload_len, out + 8);
}

Status DecodeFramePrefix(const char* in, uint64_t max_frame_bytes, FramePrefix* out) {
  uint32_t magic = GetU32(in);
  if (magic != kFrameMagic) {
    return Status::Corruption("bad frame magic 0x" + [&] {
      char buf[16];
      snprintf(buf, sizeof(buf), "%08x", magic);
      return std::string(buf);
    }());
  }
  out->header_len = GetU32(in + 4);
  out->payload_len = GetU32(in + 8);
  // An all-default protobuf message encodes to zero bytes, so 0 is a valid length.
  if (out->header_len > kMaxHeaderBytes) {
    return Status::InvalidArgument("frame header length " + std::to_string(out->header_len) +
                                   " over the maximum of " + std::to_string(kMaxHeaderBytes));
  }
  uint64_t total = uint64_t{out->header_len} + out->payload_len;
  if (total > max_frame_bytes) {
    return Status::InvalidArgument("frame of " + std::to_string(total) +
                                   " bytes exceeds the maximum of " +
                                   std::to_string(max_frame_bytes));
  }
  return Status::OK();
}

}  // namespace pepnet
