// FaultEnv: the real file system with faults on demand, for tests of what durable code
// does when the disk fails under it.
//  - FailWrites(path_part): every write to a path containing `path_part` (all paths for
//    "") fails as a full disk does, RocksDB's own files included (Env::CheckWrite).
//  - StopAt(step): the step point `step` fails, and so does every file operation after
//    it, as if the process had died there; the files keep what was synced (and more, as
//    a real crash may).
// Thread-safe.
#ifndef PEPNET_TESTS_FAULT_ENV_H_
#define PEPNET_TESTS_FAULT_ENV_H_

#include <atomic>
#include <mutex>
#include <set>
#include <string>

#include "common/env.h"

namespace pepnet {
namespace testing {

class FaultEnv : public EnvWrapper {
 public:
  FaultEnv() : EnvWrapper(Env::Default()) {}

  void FailWrites(const std::string& path_part) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_writes_ = true;
    fail_part_ = path_part;
  }
  void StopAt(const std::string& step) {
    std::lock_guard<std::mutex> lock(mu_);
    stop_at_ = step;
  }
  void Heal() {
    std::lock_guard<std::mutex> lock(mu_);
    fail_writes_ = false;
    stopped_ = false;
    stop_at_.clear();
  }
  bool stopped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
  }
  // The step points reached so far.
  std::set<std::string> steps() const {
    std::lock_guard<std::mutex> lock(mu_);
    return steps_;
  }

  Status CheckWrite(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    return Refused(path);
  }
  Status StepPoint(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    steps_.insert(name);
    if (stopped_) return Dead();
    if (name == stop_at_) {
      stopped_ = true;
      return Status::IoError("stopped at " + name + " (injected)");
    }
    return Status::OK();
  }

  Status NewWritableFile(const std::string& path, std::unique_ptr<WritableFile>* out) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      PEPNET_RETURN_IF_ERROR(Refused(path));
    }
    std::unique_ptr<WritableFile> file;
    PEPNET_RETURN_IF_ERROR(EnvWrapper::NewWritableFile(path, &file));
    out->reset(new CheckedFile(this, path, std::move(file)));
    return Status::OK();
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    PEPNET_RETURN_IF_ERROR(CheckWrite(to));
    return EnvWrapper::RenameFile(from, to);
  }
  Status CreateDir(const std::string& path) override {
    PEPNET_RETURN_IF_ERROR(CheckWrite(path));
    return EnvWrapper::CreateDir(path);
  }
  Status SyncDir(const std::string& path) override {
    PEPNET_RETURN_IF_ERROR(CheckWrite(path));
    return EnvWrapper::SyncDir(path);
  }
  Status RemoveFile(const std::string& path) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return Dead();
    }
    return EnvWrapper::RemoveFile(path);
  }

 private:
  class CheckedFile : public WritableFile {
   public:
    CheckedFile(FaultEnv* env, std::string path, std::unique_ptr<WritableFile> file)
        : env_(env), path_(std::move(path)), file_(std::move(file)) {}
    Status Append(const void* data, size_t n) override {
      PEPNET_RETURN_IF_ERROR(env_->CheckWrite(path_));
      return file_->Append(data, n);
    }
    Status Sync() override {
      PEPNET_RETURN_IF_ERROR(env_->CheckWrite(path_));
      return file_->Sync();
    }
    Status Close() override { return file_->Close(); }

   private:
    FaultEnv* env_;
    const std::string path_;
    std::unique_ptr<WritableFile> file_;
  };

  Status Dead() const { return Status::IoError("the process stopped at " + stop_at_); }
  // Under mu_.
  Status Refused(const std::string& path) const {
    if (stopped_) return Dead();
    if (fail_writes_ && path.find(fail_part_) != std::string::npos) {
      return Status::IoError("cannot write " + path + ": No space left on device (injected)");
    }
    return Status::OK();
  }

  mutable std::mutex mu_;
  bool fail_writes_ = false;
  std::string fail_part_;
  std::string stop_at_;
  bool stopped_ = false;
  std::set<std::string> steps_;
};

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_FAULT_ENV_H_
