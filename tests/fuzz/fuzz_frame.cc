// Fuzz target: the frame prefix decoder (common/frame.h) and the protobuf headers that
// follow it, as a shard server and a client read them.
//
// Input: bytes as they arrive on a connection: frames one after another, each a 12-byte
// prefix (magic, header length, payload length), the header, the payload.
#include <cstring>
#include <string>

#include "common/frame.h"
#include "proto/ps.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace pepnet {
namespace {

// Properties of the decoder; a violation is a finding.
void Expect(bool ok, const char* what) {
  if (ok) return;
  fprintf(stderr, "frame decoder: %s\n", what);
  abort();
}

// One frame; false when the connection would close (a bad prefix, a truncated frame).
bool ReadFrame(fuzz::InputReader* in, uint64_t max_frame_bytes) {
  if (in->left() < kFramePrefixBytes) return false;
  const std::string prefix = in->Bytes(kFramePrefixBytes);
  FramePrefix fp;
  if (!DecodeFramePrefix(prefix.data(), max_frame_bytes, &fp).ok()) return false;
  Expect(fp.header_len <= kMaxHeaderBytes, "a header over kMaxHeaderBytes passed");
  Expect(uint64_t{fp.header_len} + fp.payload_len <= max_frame_bytes,
         "a frame over the limit passed");
  char again[kFramePrefixBytes];
  EncodeFramePrefix(fp.header_len, fp.payload_len, again);
  Expect(std::memcmp(again, prefix.data(), kFramePrefixBytes) == 0,
         "encoding the decoded lengths gives another prefix");
  if (in->left() < fp.header_len) return false;
  const std::string header = in->Bytes(fp.header_len);
  proto::RequestHeader request;
  if (request.ParseFromString(header)) {
    proto::RequestHeader back;
    Expect(back.ParseFromString(request.SerializeAsString()), "a parsed request does not reparse");
    Expect(back.SerializeAsString() == request.SerializeAsString(),
           "a request changes through a round trip");
  }
  // Clients read replies through the same decoder.
  proto::ResponseHeader reply;
  reply.ParseFromString(header);
  if (in->left() < fp.payload_len) return false;
  PayloadBuffer payload;
  payload.Resize(fp.payload_len);
  if (fp.payload_len > 0) std::memcpy(payload.data(), in->data(), fp.payload_len);
  Expect(reinterpret_cast<uintptr_t>(payload.data()) % 8 == 0, "payload not 8-byte aligned");
  in->Bytes(fp.payload_len);
  return true;
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The server's default limit, and a small one so that the limit itself is reached.
  for (uint64_t max_frame_bytes : {pepnet::kDefaultMaxFrameBytes, uint64_t{64}}) {
    pepnet::fuzz::InputReader in(data, size);
    for (int frames = 0; frames < 64 && pepnet::ReadFrame(&in, max_frame_bytes); ++frames) {
    }
  }
  return 0;
}
