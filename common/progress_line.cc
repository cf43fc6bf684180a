#include "common/progress_line.h"

#include <unistd.h>

namespace pepnet {
namespace {

std::string Count(double n) {
  char buf[32];
  if (n >= 1e6) {
    snprintf(buf, sizeof(buf), "%.2fM", n / 1e6);
  } else if (n >= 1e4) {
    snprintf(buf, sizeof(buf), "%.1fk", n / 1e3);
  } else {
    snprintf(buf, sizeof(buf), "%.0f", n);
  }
  return buf;
}

}  // namespace

ProgressLine::ProgressLine(FILE* out, double interval_s)
    : out_(out), terminal_(isatty(fileno(out)) == 1), interval_s_(interval_s) {
  if (interval_s_ < 0) interval_s_ = terminal_ ? 2 : 30;
}

void ProgressLine::BeginPass(uint32_t pass, const std::string& name, uint64_t expected,
                             bool exact) {
  pass_ = pass;
  name_ = name;
  expected_ = expected;
  exact_ = exact;
  start_ = last_ = std::chrono::steady_clock::now();
}

std::string ProgressLine::Format(uint32_t pass, const std::string& name, uint64_t samples,
                                 uint64_t expected, bool exact, double seconds, double loss) {
  const double rate = seconds > 0 ? samples / seconds : 0;
  std::string text = "progress: pass " + std::to_string(pass) + " (" + name +
                     "): " + std::to_string(samples) + " samples";
  if (expected > 0) text += std::string(" of ") + (exact ? "" : "~") + std::to_string(expected);
  char buf[160];
  snprintf(buf, sizeof(buf), ", %s samples/s, loss %.4f, %.0f s", Count(rate).c_str(), loss,
           seconds);
  text += buf;
  if (expected > samples && rate > 0) {
    snprintf(buf, sizeof(buf), ", ETA %.0f s", (expected - samples) / rate);
    text += buf;
  }
  return text;
}

void ProgressLine::Update(uint64_t samples, double loss) {
  if (interval_s_ <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_).count() < interval_s_) return;
  last_ = now;
  const std::string text = Format(pass_, name_, samples, expected_, exact_,
                                  std::chrono::duration<double>(now - start_).count(), loss);
  if (terminal_) {
    fprintf(out_, "\r\033[K%s", text.c_str());
    drawn_ = true;
  } else {
    fprintf(out_, "%s\n", text.c_str());
  }
  fflush(out_);
}

void ProgressLine::Clear() {
  if (!drawn_) return;
  fprintf(out_, "\r\033[K");
  fflush(out_);
  drawn_ = false;
}

}  // namespace pepnet
