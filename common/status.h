// Status: the outcome of an operation that can fail for expected reasons (bad input,
// a dead peer, a timeout). Programmer errors use CHECK instead.
//
// Cheap when OK (no allocation). Copyable; not thread-safe to mutate concurrently.
#ifndef PEPNET_COMMON_STATUS_H_
#define PEPNET_COMMON_STATUS_H_

#include <memory>
#include <string>

namespace pepnet {

class Status {
 public:
  // Values match proto/ps.proto StatusCode so statuses cross the wire unchanged.
  enum Code {
    kOk = 0,
    kInvalidArgument = 1,
    kNotFound = 2,
    kUnavailable = 3,
    kDeadlineExceeded = 4,
    kInternal = 5,
    kCorruption = 6,
    kResourceExhausted = 7,
    // The local file system failed: a full disk, a denied permission. Unlike
    // Unavailable (a peer that is gone), retrying does not help until someone acts.
    kIoError = 8,
  };

  Status() = default;
  Status(Code code, std::string message);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) {
    return Status(kInvalidArgument, std::move(msg));
  }
  static Status NotFound(std::string msg) { return Status(kNotFound, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(kUnavailable, std::move(msg)); }
  static Status DeadlineExceeded(std::string msg) {
    return Status(kDeadlineExceeded, std::move(msg));
  }
  static Status Internal(std::string msg) { return Status(kInternal, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(kCorruption, std::move(msg)); }
  static Status ResourceExhausted(std::string msg) {
    return Status(kResourceExhausted, std::move(msg));
  }
  static Status IoError(std::string msg) { return Status(kIoError, std::move(msg)); }

  bool ok() const { return state_ == nullptr; }
  Code code() const { return state_ ? state_->code : kOk; }
  const std::string& message() const;

  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>" (OK stays OK).
  Status WithContext(const std::string& prefix) const;

 private:
  struct State {
    Code code;
    std::string message;
  };
  std::unique_ptr<State> state_;
};

const char* StatusCodeName(Status::Code code);

}  // namespace pepnet

#define PEPNET_RETURN_IF_ERROR(expr) \
  do {                               \
    ::pepnet::Status _st = (expr);   \
    if (!_st.ok()) return _st;       \
  } while (0)

#endif  // PEPNET_COMMON_STATUS_H_
