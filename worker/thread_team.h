// ThreadTeam: runs one function on a fixed team of threads (the caller is member 0) and
// waits for all of them: the fork-join the trainer needs a few times per batch, without
// creating threads per batch.
//
// Run() must be called from one thread at a time (the team's owner); the function it runs
// is called concurrently with member indices 0..size()-1.
#ifndef PEPNET_WORKER_THREAD_TEAM_H_
#define PEPNET_WORKER_THREAD_TEAM_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pepnet {

class ThreadTeam {
 public:
  explicit ThreadTeam(int size);
  ~ThreadTeam();
  ThreadTeam(const ThreadTeam&) = delete;
  ThreadTeam& operator=(const ThreadTeam&) = delete;

  int size() const { return static_cast<int>(helpers_.size()) + 1; }

  // Calls fn(i) on member i for every i and returns when all calls have returned.
  void Run(const std::function<void(int)>& fn);

 private:
  void HelperLoop(int member);

  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  unsigned long generation_ = 0;
  int running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> helpers_;
};

// [begin, end) of member `i`'s share when `n` items are split over `members` as evenly as
// possible, in order.
inline std::pair<size_t, size_t> ShareOf(size_t n, int members, int i) {
  return {n * i / members, n * (i + 1) / members};
}

}  // namespace pepnet

#endif  // PEPNET_WORKER_THREAD_TEAM_H_
