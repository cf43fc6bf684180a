#include "worker/pass_source.h"

#include <dirent.h>
#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace pepnet {

std::vector<std::string> ListFolder(const std::string& dir, bool want_dirs) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.empty() || name[0] == '.' || name == "_SUCCESS") continue;
      struct stat st;
      if (stat((dir + "/" + name).c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode) == want_dirs) out.push_back(name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status PassSource::Resume(const std::vector<std::string>& done) {
  taken_ = 0;
  done_.clear();
  for (size_t i = 0; i < done.size(); ++i) {
    const std::string& folder = done[i];
    if (o_.pass_root.empty()) {
      if (i >= o_.passes.size() || o_.passes[i] != folder) {
        return Status::InvalidArgument(
            "the run committed '" + folder + "' as its pass " + std::to_string(i + 1) +
            ", but --passes lists " +
            (i < o_.passes.size() ? "'" + o_.passes[i] + "'" : std::string("no such pass")));
      }
    } else {
      const std::string prefix = o_.pass_root + "/";
      if (folder.compare(0, prefix.size(), prefix) != 0) {
        return Status::InvalidArgument("the run committed '" + folder + "' as its pass " +
                                       std::to_string(i + 1) + ", which is not under --pass_root " +
                                       o_.pass_root);
      }
      done_.insert(folder.substr(prefix.size()));
    }
    ++taken_;
  }
  return Status::OK();
}

std::string PassSource::Next() {
  if (o_.max_passes > 0 && taken_ >= o_.max_passes) return "";
  if (o_.pass_root.empty()) {
    if (taken_ >= static_cast<int>(o_.passes.size())) return "";
    return o_.passes[taken_++];
  }
  const auto start = std::chrono::steady_clock::now();
  bool logged = false;
  for (;;) {
    for (const std::string& name : ListFolder(o_.pass_root, true)) {
      if (done_.count(name) || (!done_.empty() && name < *done_.rbegin())) continue;
      const std::string dir = o_.pass_root + "/" + name;
      struct stat st;
      if (stat((dir + "/_SUCCESS").c_str(), &st) != 0) break;  // passes run in name order
      done_.insert(name);
      ++taken_;
      return dir;
    }
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (o_.idle_timeout_s > 0 && waited >= o_.idle_timeout_s) {
      LOG(INFO) << "no new pass under " << o_.pass_root << " for " << o_.idle_timeout_s
                << " s; finishing";
      return "";
    }
    if (!logged) {
      LOG(INFO) << "waiting for the next pass folder (with _SUCCESS) under " << o_.pass_root;
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o_.poll_ms));
  }
}

std::vector<std::string> PassSource::FilesOf(const std::string& folder) {
  return ListFolder(folder, false);
}

std::vector<std::string> PassSource::ShareOf(const std::vector<std::string>& files, int index,
                                             int count) {
  std::vector<std::string> out;
  for (size_t i = 0; i < files.size(); ++i) {
    if (static_cast<int>(i % count) == index) out.push_back(files[i]);
  }
  return out;
}

}  // namespace pepnet
