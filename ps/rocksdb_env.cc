#include "ps/rocksdb_env.h"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include "common/env.h"

namespace pepnet {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus Ask(Env* env, const std::string& path) {
  const Status st = env->CheckWrite(path);
  if (st.ok()) return IOStatus::OK();
  IOStatus io = IOStatus::IOError(st.message());
  io.SetRetryable(false);
  return io;
}

class CheckedWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  CheckedWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::string path, Env* env)
      : FSWritableFileOwnerWrapper(std::move(file)), path_(std::move(path)), env_(env) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->Append(data, options, dbg) : st;
  }
  IOStatus Append(const Slice& data, const IOOptions& options,
                  const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->Append(data, options, info, dbg) : st;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->PositionedAppend(data, offset, options, dbg) : st;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const rocksdb::DataVerificationInfo& info,
                            IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->PositionedAppend(data, offset, options, info, dbg) : st;
  }
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->Sync(options, dbg) : st;
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path_);
    return st.ok() ? target()->Fsync(options, dbg) : st;
  }

 private:
  const std::string path_;
  Env* const env_;
};

class CheckedFileSystem : public rocksdb::FileSystemWrapper {
 public:
  CheckedFileSystem(const std::shared_ptr<rocksdb::FileSystem>& target, Env* env)
      : FileSystemWrapper(target), env_(env) {}
  const char* Name() const override { return "PepnetCheckedFileSystem"; }

  IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                           std::unique_ptr<rocksdb::FSWritableFile>* out,
                           IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path);
    if (st.ok()) st = target()->NewWritableFile(path, options, out, dbg);
    if (st.ok()) out->reset(new CheckedWritableFile(std::move(*out), path, env_));
    return st;
  }
  IOStatus ReopenWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                              std::unique_ptr<rocksdb::FSWritableFile>* out,
                              IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path);
    if (st.ok()) st = target()->ReopenWritableFile(path, options, out, dbg);
    if (st.ok()) out->reset(new CheckedWritableFile(std::move(*out), path, env_));
    return st;
  }
  IOStatus ReuseWritableFile(const std::string& path, const std::string& old_path,
                             const rocksdb::FileOptions& options,
                             std::unique_ptr<rocksdb::FSWritableFile>* out,
                             IODebugContext* dbg) override {
    IOStatus st = Ask(env_, path);
    if (st.ok()) st = target()->ReuseWritableFile(path, old_path, options, out, dbg);
    if (st.ok()) out->reset(new CheckedWritableFile(std::move(*out), path, env_));
    return st;
  }
  IOStatus RenameFile(const std::string& from, const std::string& to, const IOOptions& options,
                      IODebugContext* dbg) override {
    IOStatus st = Ask(env_, to);
    return st.ok() ? target()->RenameFile(from, to, options, dbg) : st;
  }
  IOStatus LinkFile(const std::string& from, const std::string& to, const IOOptions& options,
                    IODebugContext* dbg) override {
    IOStatus st = Ask(env_, to);
    return st.ok() ? target()->LinkFile(from, to, options, dbg) : st;
  }

 private:
  Env* const env_;
};

}  // namespace

std::unique_ptr<rocksdb::Env> NewRocksEnv(Env* env) {
  auto fs = std::make_shared<CheckedFileSystem>(rocksdb::FileSystem::Default(), env);
  return rocksdb::NewCompositeEnv(fs);
}

}  // namespace pepnet
