#include "worker/data_reader.h"

#include <glog/logging.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "proto/model_config.pb.h"
#include "worker/feature_hash.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

// Malformed lines logged per file; the rest are only counted.
constexpr int kLoggedPerFile = 10;
// The error rate is checked before a file ends once this many lines were read.
constexpr uint64_t kEarlyCheckLines = 1000;

bool ParseDouble(const char* p, size_t n, double* out) {
  if (n == 0 || n > 63) return false;
  char buf[64];
  std::memcpy(buf, p, n);
  buf[n] = '\0';
  char* end;
  errno = 0;
  *out = std::strtod(buf, &end);
  return end == buf + n && errno == 0 && std::isfinite(*out);
}

}  // namespace

void Batch::Reset(size_t num_slots) {
  size = 0;
  slot_offsets.resize(num_slots);
  slot_keys.resize(num_slots);
  for (auto& o : slot_offsets) o.assign(1, 0);
  for (auto& k : slot_keys) k.clear();
  labels.clear();
  label_mask.clear();
  domain.clear();
  user.clear();
}

// A data file, plain or gzip (zlib reads both), read line by line.
class DataReader::File {
 public:
  explicit File(std::string path) : path_(std::move(path)) {}
  ~File() {
    if (gz_) gzclose(gz_);
  }
  Status Open() {
    gz_ = gzopen(path_.c_str(), "rb");
    if (gz_ == nullptr) return Status::NotFound("cannot open data file " + path_);
    gzbuffer(gz_, 1 << 17);
    return Status::OK();
  }
  // False at end of file; *error is set if reading failed. A line longer than
  // `max_bytes` is read to its end but not kept: *too_long says so and `line` holds its
  // first bytes only, so a line without an end cannot take the memory.
  bool ReadLine(size_t max_bytes, std::string* line, bool* too_long, Status* error) {
    line->clear();
    *too_long = false;
    char buf[1 << 14];
    bool any = false;
    while (gzgets(gz_, buf, sizeof(buf)) != nullptr) {
      any = true;
      const size_t n = std::strlen(buf);
      if (!*too_long) {
        line->append(buf, n);
        if (line->size() > max_bytes + 2) {  // + room for the line's own "\r\n"
          *too_long = true;
          line->resize(64);
        }
      }
      if (n > 0 && buf[n - 1] == '\n') break;
    }
    int err = 0;
    const char* msg = gzerror(gz_, &err);
    if (err != Z_OK && err != Z_BUF_ERROR) {
      *error = Status::Corruption(path_ + ": read error: " + msg);
      return false;
    }
    if (!any) return false;
    while (!*too_long && !line->empty() && (line->back() == '\n' || line->back() == '\r')) {
      line->pop_back();
    }
    if (!*too_long && line->size() > max_bytes) *too_long = true;
    ++line_number_;
    return true;
  }
  const std::string& path() const { return path_; }
  uint64_t line_number() const { return line_number_; }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
  uint64_t line_number_ = 0;
};

// Where each configured input sits in a file's lines.
struct DataReader::Columns {
  size_t num_fields = 0;
  std::vector<int> slot, task;
  int domain = -1, user = -1;
  std::unordered_map<std::string, uint32_t> domain_index;  // from data.domain_value
};

DataReader::DataReader(const proto::ModelConfig* config, std::vector<std::string> files)
    : config_(config), files_(std::move(files)) {}

DataReader::~DataReader() = default;

Status DataReader::OpenNextFile() {
  file_.reset(new File(files_[next_file_++]));
  PEPNET_RETURN_IF_ERROR(file_->Open());
  file_lines_ = file_malformed_ = 0;
  const proto::DataFormat& d = config_->data();
  std::vector<std::string> names(d.column().begin(), d.column().end());
  if (d.has_header()) {
    std::string header;
    Status error;
    bool too_long = false;
    if (!file_->ReadLine(d.max_line_bytes(), &header, &too_long, &error)) {
      return error.ok() ? Status::InvalidArgument(file_->path() + ": empty file, expected a header")
                        : error;
    }
    if (too_long) {
      return Status::InvalidArgument(file_->path() + ": the header is longer than " +
                                     "data.max_line_bytes=" + std::to_string(d.max_line_bytes()) +
                                     " bytes");
    }
    names.clear();
    size_t start = 0;
    const char delim = d.delimiter()[0];
    while (true) {
      const size_t end = header.find(delim, start);
      names.push_back(header.substr(start, end == std::string::npos ? end : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }
  auto c = std::make_unique<Columns>();
  c->num_fields = names.size();
  auto find = [&](const std::string& what, const std::string& name, int* index) {
    auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) {
      return Status::InvalidArgument(file_->path() + ": no column '" + name + "' (" + what +
                                     ") in " + (d.has_header() ? "the header" : "data.column"));
    }
    *index = static_cast<int>(it - names.begin());
    return Status::OK();
  };
  c->slot.resize(config_->slot_size());
  for (int s = 0; s < config_->slot_size(); ++s) {
    PEPNET_RETURN_IF_ERROR(
        find("slot '" + config_->slot(s).name() + "'", SlotColumn(*config_, s), &c->slot[s]));
  }
  c->task.resize(config_->task_size());
  for (int t = 0; t < config_->task_size(); ++t) {
    PEPNET_RETURN_IF_ERROR(
        find("task '" + config_->task(t).name() + "'", TaskColumn(*config_, t), &c->task[t]));
  }
  PEPNET_RETURN_IF_ERROR(find("data.domain_column", d.domain_column(), &c->domain));
  if (d.has_user_column()) {
    PEPNET_RETURN_IF_ERROR(find("data.user_column", d.user_column(), &c->user));
  } else {
    for (int s = 0; s < config_->slot_size(); ++s) {
      if (config_->slot(s).role() == proto::USER) {
        c->user = c->slot[s];
        break;
      }
    }
  }
  for (int i = 0; i < d.domain_value_size(); ++i) c->domain_index[d.domain_value(i)] = i;
  columns_ = std::move(c);
  return Status::OK();
}

Status DataReader::ParseLine(const std::string& line, Batch* batch) {
  const proto::DataFormat& d = config_->data();
  const char delim = d.delimiter()[0];
  fields_.clear();
  field_sizes_.clear();
  size_t start = 0;
  while (true) {
    const size_t end = line.find(delim, start);
    const size_t stop = end == std::string::npos ? line.size() : end;
    fields_.push_back(line.data() + start);
    field_sizes_.push_back(stop - start);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  const Columns& c = *columns_;
  if (fields_.size() != c.num_fields) {
    return Status::InvalidArgument("has " + std::to_string(fields_.size()) + " fields, expected " +
                                   std::to_string(c.num_fields));
  }
  // Everything is checked before anything is appended, so a bad line leaves no trace.
  const int num_tasks = config_->task_size();
  float labels[64];
  uint8_t mask[64];
  if (num_tasks > 64) return Status::InvalidArgument("more than 64 tasks");
  for (int t = 0; t < num_tasks; ++t) {
    const int f = c.task[t];
    mask[t] = field_sizes_[f] != 0;
    labels[t] = 0;
    double v;
    if (mask[t]) {
      if (!ParseDouble(fields_[f], field_sizes_[f], &v)) {
        return Status::InvalidArgument("label of task '" + config_->task(t).name() + "' is '" +
                                       std::string(fields_[f], field_sizes_[f]) +
                                       "', not a number");
      }
      labels[t] = v > 0 ? 1.0f : 0.0f;
    }
  }
  const std::string domain_text(fields_[c.domain], field_sizes_[c.domain]);
  uint32_t domain;
  if (!c.domain_index.empty()) {
    auto it = c.domain_index.find(domain_text);
    if (it == c.domain_index.end()) {
      return Status::InvalidArgument("domain '" + domain_text + "' is not in data.domain_value");
    }
    domain = it->second;
  } else {
    double v;
    if (!ParseDouble(domain_text.data(), domain_text.size(), &v) || v != std::floor(v) || v < 0 ||
        v >= config_->num_domains()) {
      return Status::InvalidArgument("domain '" + domain_text + "' is not an integer in [0, " +
                                     std::to_string(config_->num_domains()) + ")");
    }
    domain = static_cast<uint32_t>(v);
  }
  // Bucketed values are checked before keys are appended, for the same reason.
  const uint32_t slot_bits = config_->slot_bits();
  const char sep = d.multi_value_separator()[0];
  for (int s = 0; s < config_->slot_size(); ++s) {
    const proto::SlotSpec& spec = config_->slot(s);
    const int f = c.slot[s];
    if (spec.multi_valued() && !spec.has_bucketing()) {
      // Each value may become a row on the shards: a cell is capped like a line is.
      uint64_t values = 0;
      for (size_t p = 0; p <= field_sizes_[f];) {
        const char* hit =
            static_cast<const char*>(std::memchr(fields_[f] + p, sep, field_sizes_[f] - p));
        const size_t q = hit ? static_cast<size_t>(hit - fields_[f]) : field_sizes_[f];
        values += q > p;
        p = q + 1;
      }
      if (values > d.max_values_per_cell()) {
        return Status::InvalidArgument(
            "slot '" + spec.name() + "' has " + std::to_string(values) +
            " values, over data.max_values_per_cell=" + std::to_string(d.max_values_per_cell()));
      }
    }
    if (!spec.has_bucketing()) continue;
    double v;
    if (field_sizes_[f] != 0 && !ParseDouble(fields_[f], field_sizes_[f], &v)) {
      return Status::InvalidArgument("slot '" + spec.name() + "' value '" +
                                     std::string(fields_[f], field_sizes_[f]) +
                                     "' is not a number");
    }
  }
  for (int s = 0; s < config_->slot_size(); ++s) {
    const proto::SlotSpec& spec = config_->slot(s);
    const int f = c.slot[s];
    const char* cell = fields_[f];
    const size_t size = field_sizes_[f];
    std::vector<uint64_t>& keys = batch->slot_keys[s];
    if (size == 0) {
      // A missing value: no key for this slot.
    } else if (spec.has_bucketing()) {
      double v = 0;  // checked above
      ParseDouble(cell, size, &v);
      const proto::Bucketing& b = spec.bucketing();
      int64_t bucket;
      if (b.has_log_base()) {
        // The small nudge keeps exact powers (999 -> log10(1000) = 3) in their own bucket
        // despite rounding in the division.
        bucket =
            v < 0 ? -1
                  : static_cast<int64_t>(std::floor(std::log1p(v) / std::log(b.log_base()) + 1e-9));
      } else {
        bucket =
            std::upper_bound(b.boundary().begin(), b.boundary().end(), v) - b.boundary().begin();
      }
      scratch_ = "bucket:" + std::to_string(bucket);
      keys.push_back(FeatureKeyOf(spec.id(), scratch_.data(), scratch_.size(), slot_bits));
    } else if (spec.multi_valued()) {
      size_t p = 0;
      while (p <= size) {
        const char* hit = static_cast<const char*>(std::memchr(cell + p, sep, size - p));
        const size_t q = hit ? static_cast<size_t>(hit - cell) : size;
        if (q > p) keys.push_back(FeatureKeyOf(spec.id(), cell + p, q - p, slot_bits));
        p = q + 1;
      }
    } else {
      keys.push_back(FeatureKeyOf(spec.id(), cell, size, slot_bits));
    }
    batch->slot_offsets[s].push_back(static_cast<uint32_t>(keys.size()));
  }
  batch->labels.insert(batch->labels.end(), labels, labels + num_tasks);
  batch->label_mask.insert(batch->label_mask.end(), mask, mask + num_tasks);
  batch->domain.push_back(domain);
  batch->user.push_back(c.user < 0 ? 0 : HashBytes(fields_[c.user], field_sizes_[c.user]));
  ++batch->size;
  return Status::OK();
}

Status DataReader::CheckErrorRate(bool at_end) const {
  if (file_lines_ == 0 || (!at_end && file_lines_ < kEarlyCheckLines)) return Status::OK();
  const double rate = double(file_malformed_) / double(file_lines_);
  if (rate <= config_->data().max_error_rate()) return Status::OK();
  return Status::InvalidArgument(
      file_->path() + ": " + std::to_string(file_malformed_) + " of " +
      std::to_string(file_lines_) + " lines malformed, over data.max_error_rate=" +
      std::to_string(config_->data().max_error_rate()) + "; first: " + stats_.first_error);
}

Status DataReader::Next(size_t max_samples, Batch* batch, bool* done) {
  batch->Reset(config_->slot_size());
  *done = false;
  std::string line;
  while (batch->size < max_samples) {
    if (!file_) {
      if (next_file_ == files_.size()) {
        *done = true;
        return Status::OK();
      }
      PEPNET_RETURN_IF_ERROR(OpenNextFile());
    }
    Status read_error;
    bool too_long = false;
    if (!file_->ReadLine(config_->data().max_line_bytes(), &line, &too_long, &read_error)) {
      PEPNET_RETURN_IF_ERROR(read_error);
      PEPNET_RETURN_IF_ERROR(CheckErrorRate(/*at_end=*/true));
      file_.reset();
      continue;
    }
    if (line.empty()) continue;  // blank lines are not samples
    ++file_lines_;
    ++stats_.lines;
    Status st =
        too_long
            ? Status::InvalidArgument("the line is longer than data.max_line_bytes=" +
                                      std::to_string(config_->data().max_line_bytes()) + " bytes")
            : ParseLine(line, batch);
    if (st.ok()) {
      ++stats_.samples;
      continue;
    }
    ++file_malformed_;
    ++stats_.malformed;
    const std::string where = file_->path() + ":" + std::to_string(file_->line_number());
    if (stats_.first_error.empty()) stats_.first_error = where + ": " + st.message();
    if (file_malformed_ <= kLoggedPerFile) {
      LOG(WARNING) << "skipping malformed line " << where << ": " << st.message();
    }
    PEPNET_RETURN_IF_ERROR(CheckErrorRate(/*at_end=*/false));
  }
  return Status::OK();
}

}  // namespace pepnet
