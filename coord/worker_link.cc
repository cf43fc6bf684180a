#include "coord/worker_link.h"

namespace pepnet {

WorkerLink::~WorkerLink() {
  channel_->Close();
  if (reader_.joinable()) reader_.join();
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
