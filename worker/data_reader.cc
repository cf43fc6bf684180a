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
#include "worker/model_config.h"
#include "worker/sample_encoder.h"

namespace pepnet {
namespace {

// Malformed lines logged per file; the rest are only counted.
constexpr int kLoggedPerFile = 10;
// The error rate is checked before a file ends once this many lines were read.
constexpr uint64_t kEarlyCheckLines = 1000;

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
};

DataReader::DataReader(const proto::ModelConfig* config, std::vector<std::string> files)
    : config_(config),
      files_(std::move(files)),
      encoder_(new SampleEncoder(config)),
      cells_(new SampleCells(*config)) {}

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
  columns_ = std::move(c);
  return Status::OK();
}

Status DataReader::ParseLine(const std::string& line, Batch* batch) {
  const char delim = config_->data().delimiter()[0];
  fields_.clear();
  size_t start = 0;
  while (true) {
    const size_t end = line.find(delim, start);
    const size_t stop = end == std::string::npos ? line.size() : end;
    fields_.emplace_back(line.data() + start, stop - start);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  const Columns& c = *columns_;
  if (fields_.size() != c.num_fields) {
    return Status::InvalidArgument("has " + std::to_string(fields_.size()) + " fields, expected " +
                                   std::to_string(c.num_fields));
  }
  SampleCells& cells = *cells_;
  for (size_t s = 0; s < c.slot.size(); ++s) cells.slot[s] = fields_[c.slot[s]];
  for (size_t t = 0; t < c.task.size(); ++t) cells.task[t] = fields_[c.task[t]];
  cells.domain = fields_[c.domain];
  cells.has_user = c.user >= 0;
  if (cells.has_user) cells.user = fields_[c.user];
  return encoder_->Append(cells, batch);
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
