#include "common/status.h"

namespace pepnet {

Status::Status(Code code, std::string message) {
  if (code != kOk) state_.reset(new State{code, std::move(message)});
}

Status::Status(const Status& other) : state_(other.state_ ? new State(*other.state_) : nullptr) {}

Status& Status::operator=(const Status& other) {
  if (this != &other) state_.reset(other.state_ ? new State(*other.state_) : nullptr);
  return *this;
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return state_ ? state_->message : kEmpty;
}

const char* StatusCodeName(Status::Code code) {
  switch (code) {
    case Status::kOk:
      return "OK";
    case Status::kInvalidArgument:
      return "InvalidArgument";
    case Status::kNotFound:
      return "NotFound";
    case Status::kUnavailable:
      return "Unavailable";
    case Status::kDeadlineExceeded:
      return "DeadlineExceeded";
    case Status::kInternal:
      return "Internal";
    case Status::kCorruption:
      return "Corruption";
    case Status::kResourceExhausted:
      return "ResourceExhausted";
    case Status::kIoError:
      return "IoError";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code())) + ": " + state_->message;
}

Status Status::WithContext(const std::string& prefix) const {
  if (ok()) return *this;
  return Status(code(), prefix + ": " + state_->message);
}

}  // namespace pepnet
