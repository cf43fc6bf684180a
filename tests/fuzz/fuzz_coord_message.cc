// Fuzz target: the conversation between workers and the pass coordinator
// (proto/cluster.proto) as each side reads it: frames off a real socket through
// FrameChannel::Receive, with the coordinator's limit on a hello for the first one;
// CoordMessage parsing; then what each side decodes from the message it received: a
// worker's predictions merged into the pass metrics and summarized (AUC, GAUC,
// logloss), the dense state of an END_PASS or of a welcome (worker/dense_state.h).
//
// Input: the bytes one peer sends, frames one after another (common/frame.h), read by
// the other end of a socket pair.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/frame_channel.h"
#include "proto/cluster.pb.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/dense_state.h"
#include "worker/metrics.h"

namespace pepnet {
namespace {

// The coordinator's bound on a first message (coord/worker_acceptor.h).
constexpr uint64_t kMaxHelloBytes = 1 << 20;

// A socket whose peer has sent `data` and closed its side: reads never block.
std::unique_ptr<FrameChannel> ChannelHolding(const uint8_t* data, size_t size) {
  int fds[2];
  fuzz::Require(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
  const int buffer = 4 << 20;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  // What does not fit in the socket's buffer is cut: the input is that much shorter.
  for (size_t done = 0; done < size;) {
    const ssize_t n = send(fds[0], data + done, size - done, MSG_NOSIGNAL);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fds[0]);
  return std::make_unique<FrameChannel>(fds[1]);
}

// What the coordinator does with a worker's END_PASS body.
void EndPass(const proto::CoordMessage& m, const PayloadBuffer& payload) {
  if (m.prediction_bytes() > payload.size()) return;
  PassMetrics metrics({"like", "forward", "follow"}, 3);
  if (metrics.MergeSerialized(payload.data(), m.prediction_bytes()).ok()) {
    metrics.ToJson(m.pass());
    metrics.ToText(m.pass());
  }
  DenseState dense;
  const std::string rest(payload.data() + m.prediction_bytes(),
                         payload.size() - m.prediction_bytes());
  DecodeDenseState(rest, "worker 0's dense state", &dense);
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  std::unique_ptr<FrameChannel> channel = ChannelHolding(data, size);
  std::string header;
  PayloadBuffer payload;
  for (int frames = 0; frames < 16; ++frames) {
    const uint64_t limit = frames == 0 ? kMaxHelloBytes : kDefaultMaxFrameBytes;
    if (!channel->Receive(&header, &payload, 0, limit).ok()) break;
    proto::CoordMessage m;
    if (!m.ParseFromString(header)) break;  // both sides drop the peer
    switch (m.type()) {
      case proto::COORD_HELLO:
        // From the coordinator: a durable run's welcome carries the committed dense state.
        if (m.durable() && m.pass() > 0) {
          DenseState dense;
          DecodeDenseState(std::string(payload.data(), payload.size()),
                           "the coordinator's dense state", &dense);
        }
        break;
      case proto::COORD_END_PASS:
        EndPass(m, payload);
        break;
      default:
        // BEGIN_PASS, STEP, FAIL, ABORT: their fields are compared, not decoded.
        m.DebugString();
        break;
    }
  }
  return 0;
}
