// Env: the file-system operations of the durable parts (shard storage, the coordinator's
// record, published versions), behind one small interface, as leveldb's Env: tests put
// a fault-injecting Env in its place to fail a write (disk full, permission denied) or
// to stop the process between any two steps of a durable operation.
//
// Env::Default() is the real file system (POSIX) and lives for the whole process. Every
// method of it is thread-safe; a WritableFile is used by one thread at a time.
#ifndef PEPNET_COMMON_ENV_H_
#define PEPNET_COMMON_ENV_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(const void* data, size_t n) = 0;
  // Makes what was appended durable (fdatasync).
  virtual Status Sync() = 0;
  // Checked close: a write error reported late (NFS, a full disk) surfaces here.
  virtual Status Close() = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  static Env* Default();

  // Creates or truncates `path`.
  virtual Status NewWritableFile(const std::string& path, std::unique_ptr<WritableFile>* out) = 0;
  // NotFound if absent; other errors name the path.
  virtual Status ReadFile(const std::string& path, std::string* contents) = 0;
  // OK if present, NotFound if not.
  virtual Status FileExists(const std::string& path) = 0;
  virtual Status GetFileSize(const std::string& path, uint64_t* bytes) = 0;
  // Names in `dir` without "." and "..", in no particular order.
  virtual Status GetChildren(const std::string& dir, std::vector<std::string>* names) = 0;
  // OK when the folder exists already.
  virtual Status CreateDir(const std::string& path) = 0;
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // An empty folder.
  virtual Status RemoveDir(const std::string& path) = 0;
  // Makes the folder's entries (creations, renames, removals) durable.
  virtual Status SyncDir(const std::string& path) = 0;

  // A named point between two steps of a durable operation ("coord.after_commit_record").
  // The real file system passes; a test Env may stop the process here or fail the step.
  virtual Status StepPoint(const std::string& name) { return Status::OK(); }

  // Asked before every write of a file the Env does not write itself (RocksDB's own
  // files, which go through RocksDB's file system): a test Env refuses some, as a full
  // disk would. The real file system allows all.
  virtual Status CheckWrite(const std::string& path) { return Status::OK(); }
};

// Forwards every call to another Env (borrowed), for Envs that change a few of them.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  Status NewWritableFile(const std::string& path, std::unique_ptr<WritableFile>* out) override {
    return target_->NewWritableFile(path, out);
  }
  Status ReadFile(const std::string& path, std::string* contents) override {
    return target_->ReadFile(path, contents);
  }
  Status FileExists(const std::string& path) override { return target_->FileExists(path); }
  Status GetFileSize(const std::string& path, uint64_t* bytes) override {
    return target_->GetFileSize(path, bytes);
  }
  Status GetChildren(const std::string& dir, std::vector<std::string>* names) override {
    return target_->GetChildren(dir, names);
  }
  Status CreateDir(const std::string& path) override { return target_->CreateDir(path); }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  Status RemoveDir(const std::string& path) override { return target_->RemoveDir(path); }
  Status SyncDir(const std::string& path) override { return target_->SyncDir(path); }
  Status StepPoint(const std::string& name) override { return target_->StepPoint(name); }
  Status CheckWrite(const std::string& path) override { return target_->CheckWrite(path); }

 private:
  Env* target_;
};

// The folder part of a path ("." for a bare name).
std::string DirName(const std::string& path);

// Writes `data` to `path` so that a crash leaves either the old file or the whole new
// one: a temporary name beside it, fsync, rename, fsync of the folder. Errors name the
// path and the step that failed.
Status WriteFileDurably(Env* env, const std::string& path, const std::string& data);

// Creates `path` and its missing parents.
Status CreateDirs(Env* env, const std::string& path);

// Removes `path`, a file or a folder with everything in it; OK if absent.
Status RemoveTree(Env* env, const std::string& path);

// An Env that stops the process (SIGKILL to itself, as a crash would) the `count`-th
// time StepPoint(`point`) is reached, and otherwise forwards to `target`: for the
// --crash_at flag of the binaries, with which tests stop a process between two steps.
// `spec` is "NAME" or "NAME:COUNT". Returns nullptr and sets *error for a bad spec.
std::unique_ptr<Env> NewCrashAtEnv(Env* target, const std::string& spec, Status* error);

}  // namespace pepnet

#endif  // PEPNET_COMMON_ENV_H_
