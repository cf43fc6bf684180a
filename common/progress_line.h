// The progress of a running pass for people: pass, samples done (and of how many, when
// known), samples/s, ETA, running loss. On a terminal it redraws one line in place; on a
// pipe or file it prints a plain line at a calm rate, so CI logs are not flooded. Lines
// start with "progress:", never with "pass N (", which belongs to the pass summary line
// scripts read. Not thread-safe: one thread reports.
#ifndef PEPNET_COMMON_PROGRESS_LINE_H_
#define PEPNET_COMMON_PROGRESS_LINE_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pepnet {

class ProgressLine {
 public:
  // Writes to `out` (borrowed; stderr in the binaries). `interval_s` between lines: < 0
  // picks 2 s on a terminal and 30 s otherwise; 0 shows nothing.
  ProgressLine(FILE* out, double interval_s);

  // A new pass: `expected` samples when known (0: unknown; the previous pass's size is a
  // fair guess in a stream of similar passes, shown as "~").
  void BeginPass(uint32_t pass, const std::string& name, uint64_t expected, bool exact);
  // Samples done and the running loss so far in the pass; prints when due.
  void Update(uint64_t samples, double loss);
  // Erases a redrawn line before other output (the pass summary), so it is not mixed in.
  void Clear();

  bool terminal() const { return terminal_; }
  // The text of a progress line for these figures (for tests).
  static std::string Format(uint32_t pass, const std::string& name, uint64_t samples,
                            uint64_t expected, bool exact, double seconds, double loss);

 private:
  FILE* const out_;
  const bool terminal_;
  double interval_s_;
  uint32_t pass_ = 0;
  std::string name_;
  uint64_t expected_ = 0;
  bool exact_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  bool drawn_ = false;  // a redrawn line is on the terminal
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_PROGRESS_LINE_H_
