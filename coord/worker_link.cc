#include "coord/worker_link.h"

namespace pepnet {

WorkerLink::~WorkerLink() {
  channel_->Close();
  if (reader_.joinable()) reader_.join();
}

Status WorkerLink::ReceiveFirst(proto::CoordMessage* m, int timeout_ms) {
  std::string header;
  PayloadBuffer payload;
  PEPNET_RETURN_IF_ERROR(channel_->Receive(&header, &payload, timeout_ms));
  if (!m->ParseFromString(header)) {
    return Status::Corruption("unparsable message from " + channel_->peer());
  }
  return Status::OK();
}

void WorkerLink::Start(std::mutex* mu, std::condition_variable* cv) {
  reader_ = std::thread([this, mu, cv] {
    std::string header;
    PayloadBuffer payload;
    for (;;) {
      Status st = channel_->Receive(&header, &payload);
      CoordEnvelope m;
      if (st.ok() && !m.header.ParseFromString(header)) {
        st = Status::Corruption("unparsable message from " + channel_->peer());
      }
      std::lock_guard<std::mutex> lock(*mu);
      if (!st.ok()) {
        error_ = st;
        cv->notify_all();
        return;
      }
      m.payload.assign(payload.data(), payload.size());
      queue_.push_back(std::move(m));
      cv->notify_all();
    }
  });
}

}  // namespace pepnet
