#include "common/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pepnet {
namespace {

Status IoError(const std::string& what, const std::string& path, int err) {
  const std::string text = what + " " + path + ": " + strerror(err);
  return err == ENOENT ? Status::NotFound(text) : Status::IoError(text);
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) close(fd_);
  }

  Status Append(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t wrote = write(fd_, p, n);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return IoError("cannot write", path_, errno);
      }
      p += wrote;
      n -= static_cast<size_t>(wrote);
    }
    return Status::OK();
  }

  Status Sync() override {
    if (fdatasync(fd_) != 0) return IoError("cannot sync", path_, errno);
    return Status::OK();
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && close(fd) != 0) return IoError("cannot close", path_, errno);
    return Status::OK();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixEnv : public Env {
 public:
  Status NewWritableFile(const std::string& path, std::unique_ptr<WritableFile>* out) override {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("cannot create", path, errno);
    out->reset(new PosixWritableFile(path, fd));
    return Status::OK();
  }

  Status ReadFile(const std::string& path, std::string* contents) override {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot read", path, errno);
    contents->clear();
    char buffer[1 << 16];
    for (;;) {
      const ssize_t got = read(fd, buffer, sizeof(buffer));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        const int err = errno;
        close(fd);
        return IoError("cannot read", path, err);
      }
      if (got == 0) break;
      contents->append(buffer, static_cast<size_t>(got));
    }
    close(fd);
    return Status::OK();
  }

  Status FileExists(const std::string& path) override {
    if (access(path.c_str(), F_OK) == 0) return Status::OK();
    return IoError("cannot find", path, errno);
  }

  Status GetFileSize(const std::string& path, uint64_t* bytes) override {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return IoError("cannot stat", path, errno);
    *bytes = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }

  Status GetChildren(const std::string& dir, std::vector<std::string>* names) override {
    names->clear();
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return IoError("cannot list", dir, errno);
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") names->push_back(name);
    }
    closedir(d);
    return Status::OK();
  }

  Status CreateDir(const std::string& path) override {
    if (mkdir(path.c_str(), 0755) == 0) return Status::OK();
    const int err = errno;
    struct stat st;
    if (err == EEXIST && stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return Status::OK();
    return IoError("cannot create the folder", path, err);
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (rename(from.c_str(), to.c_str()) != 0) {
      return IoError("cannot rename " + from + " to", to, errno);
    }
    return Status::OK();
  }

  Status RemoveFile(const std::string& path) override {
    if (unlink(path.c_str()) != 0) return IoError("cannot remove", path, errno);
    return Status::OK();
  }

  Status RemoveDir(const std::string& path) override {
    if (rmdir(path.c_str()) != 0) return IoError("cannot remove the folder", path, errno);
    return Status::OK();
  }

  Status SyncDir(const std::string& path) override {
    const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return IoError("cannot open the folder", path, errno);
    const int rc = fsync(fd);
    const int err = errno;
    close(fd);
    if (rc != 0) return IoError("cannot sync the folder", path, err);
    return Status::OK();
  }
};

class CrashAtEnv : public EnvWrapper {
 public:
  CrashAtEnv(Env* target, std::string point, int count)
      : EnvWrapper(target), point_(std::move(point)), remaining_(count) {}

  Status StepPoint(const std::string& name) override {
    if (name == point_ && remaining_.fetch_sub(1) == 1) {
      // What a power cut or an OOM kill does: no destructors, no flushing.
      fprintf(stderr, "crash_at: stopping at %s\n", name.c_str());
      fflush(stderr);
      kill(getpid(), SIGKILL);
    }
    return EnvWrapper::StepPoint(name);
  }

 private:
  const std::string point_;
  std::atomic<int> remaining_;
};

}  // namespace

Env* Env::Default() {
  static PosixEnv* env = new PosixEnv;  // never destroyed: used until the process ends
  return env;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status WriteFileDurably(Env* env, const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  std::unique_ptr<WritableFile> file;
  PEPNET_RETURN_IF_ERROR(env->NewWritableFile(tmp, &file));
  Status st = file->Append(data.data(), data.size());
  if (st.ok()) st = file->Sync();
  Status closed = file->Close();
  if (st.ok()) st = closed;
  if (!st.ok()) {
    env->RemoveFile(tmp);
    return st;
  }
  PEPNET_RETURN_IF_ERROR(env->RenameFile(tmp, path));
  return env->SyncDir(DirName(path));
}

Status CreateDirs(Env* env, const std::string& path) {
  if (path.empty() || env->FileExists(path).ok()) return Status::OK();
  const std::string parent = DirName(path);
  if (parent != path && parent != "." && parent != "/") {
    PEPNET_RETURN_IF_ERROR(CreateDirs(env, parent));
  }
  return env->CreateDir(path);
}

Status RemoveTree(Env* env, const std::string& path) {
  if (env->FileExists(path).code() == Status::kNotFound) return Status::OK();
  std::vector<std::string> children;
  if (!env->GetChildren(path, &children).ok()) return env->RemoveFile(path);  // not a folder
  for (const std::string& name : children) {
    PEPNET_RETURN_IF_ERROR(RemoveTree(env, path + "/" + name));
  }
  return env->RemoveDir(path);
}

std::unique_ptr<Env> NewCrashAtEnv(Env* target, const std::string& spec, Status* error) {
  const size_t colon = spec.rfind(':');
  std::string point = spec;
  int count = 1;
  if (colon != std::string::npos) {
    point = spec.substr(0, colon);
    const std::string n = spec.substr(colon + 1);
    if (n.empty() || n.size() > 6 || n.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(n) < 1) {
      *error = Status::InvalidArgument("--crash_at=" + spec + ": want NAME or NAME:COUNT");
      return nullptr;
    }
    count = std::stoi(n);
  }
  if (point.empty()) {
    *error = Status::InvalidArgument("--crash_at=" + spec + ": empty step name");
    return nullptr;
  }
  return std::make_unique<CrashAtEnv>(target, point, count);
}

}  // namespace pepnet
