// Helpers shared by the libFuzzer targets of tests/fuzz (docs/fuzzing.md): the readers
// under test take paths, so an input is handed to them as a file that lives in memory,
// and a harness that finds its own setup broken stops at once.
#ifndef PEPNET_TESTS_FUZZ_FUZZ_UTIL_H_
#define PEPNET_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/status.h"

// Every undefined behaviour stops the run as a crash, with its stack. Defined here, in
// the one header every target (one file each) includes.
extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:print_stacktrace=1"; }

namespace pepnet {
namespace fuzz {

// A broken harness is not a finding: say why and stop (libFuzzer reports the abort).
inline void Require(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "fuzz harness: %s\n", what.c_str());
  abort();
}
inline void Require(const Status& st, const std::string& what) {
  Require(st.ok(), what + ": " + st.ToString());
}

// A file in memory (memfd) that readers open by path, /proc/self/fd/N: each Set
// replaces its content, and every open starts at its first byte.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(memfd_create(name, MFD_CLOEXEC)) {
    Require(fd_ >= 0, "memfd_create");
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  void Set(const uint8_t* data, size_t size) {
    Require(ftruncate(fd_, 0) == 0, "ftruncate");
    for (size_t done = 0; done < size;) {
      const ssize_t n = pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      Require(n > 0, "pwrite");
      done += static_cast<size_t>(n);
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// A directory of its own under $TMPDIR (or /tmp), removed with its content when the
// object goes (at exit, for the static one a harness keeps): for readers that take
// folders, such as a publish folder of model versions.
class TempDirectory {
 public:
  explicit TempDirectory(const char* tag) {
    const char* base = getenv("TMPDIR");
    path_ = std::string(base && *base ? base : "/tmp") + "/pepnet_fuzz_" + tag + ".XXXXXX";
    Require(mkdtemp(&path_[0]) != nullptr, "mkdtemp " + path_);
  }
  ~TempDirectory() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Replaces a file's content, without the fsync of the durable writers: a fuzzer
// rewrites it thousands of times a second.
inline void WriteWholeFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = fopen(path.c_str(), "wb");
  Require(f != nullptr, "cannot write " + path);
  Require(size == 0 || fwrite(data, 1, size, f) == size, "cannot write " + path);
  Require(fclose(f) == 0, "cannot write " + path);
}

// Reads little-endian fields off the front of an input; past its end every read is 0
// and ok() turns false.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  template <typename T>
  T Get() {
    T v{};
    if (left_ < sizeof(T)) {
      ok_ = false;
      left_ = 0;
      return v;
    }
    __builtin_memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    left_ -= sizeof(T);
    return v;
  }
  // Up to `n` bytes (fewer at the end of the input).
  std::string Bytes(size_t n) {
    n = n < left_ ? n : left_;
    std::string out(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    left_ -= n;
    return out;
  }
  const uint8_t* data() const { return p_; }
  size_t left() const { return left_; }
  bool ok() const { return ok_; }

 private:
  const uint8_t* p_;
  size_t left_;
  bool ok_ = true;
};

}  // namespace fuzz
}  // namespace pepnet

#endif  // PEPNET_TESTS_FUZZ_FUZZ_UTIL_H_
