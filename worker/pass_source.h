// PassSource: where a worker's passes come from, in order: a list of pass folders, or a
// watched root whose sub-folders become ready when their _SUCCESS marker appears (taken
// in name order). A resumed run starts it after the passes already committed.
//
// Not thread-safe.
#ifndef PEPNET_WORKER_PASS_SOURCE_H_
#define PEPNET_WORKER_PASS_SOURCE_H_

#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {

struct PassSourceOptions {
  std::vector<std::string> passes;  // the folders, in order; or else
  std::string pass_root;            // the watched root
  int max_passes = 0;               // 0 = no limit (committed passes count)
  int idle_timeout_s = 0;           // watching: give up after this long without a pass
  int poll_ms = 500;                // watching: how often the root is scanned
};

class PassSource {
 public:
  explicit PassSource(PassSourceOptions options) : o_(std::move(options)) {}

  // Starts after `done`, the pass folders the run committed, in order (as Next returned
  // them). InvalidArgument if they are not the first passes of this source.
  Status Resume(const std::vector<std::string>& done);

  // The next pass folder, or "" when there is none (list exhausted, limit reached, or the
  // watch idled out). Watching, blocks until a folder is ready.
  std::string Next();

  // The data files of `folder` (sorted by name; _SUCCESS and hidden files excepted), and
  // those of them worker `index` of `count` trains: file i goes to worker i mod count.
  static std::vector<std::string> FilesOf(const std::string& folder);
  static std::vector<std::string> ShareOf(const std::vector<std::string>& files, int index,
                                          int count);

 private:
  const PassSourceOptions o_;
  int taken_ = 0;
  std::set<std::string> done_;  // watching: folder names taken
};

// The names in `dir` (no hidden entries, no _SUCCESS) that are folders (or not), sorted.
std::vector<std::string> ListFolder(const std::string& dir, bool want_dirs);

}  // namespace pepnet

#endif  // PEPNET_WORKER_PASS_SOURCE_H_
