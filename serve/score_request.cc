#include "serve/score_request.h"

#include <nlohmann/json.hpp>

#include <string_view>
#include <unordered_map>
#include <vector>

#include "proto/model_config.pb.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/sample_encoder.h"

namespace pepnet {

// A SAX handler: the body is checked and encoded as it is read, without building a
// document, and every refusal names where it is.
class ScoreRequestParser::Handler : public nlohmann::json_sax<nlohmann::json> {
 public:
  Handler(const proto::ModelConfig* config, size_t max_samples)
      : config_(config), max_samples_(max_samples), encoder_(config), cells_(*config) {
    auto use = [&](const std::string& name) -> Column& {
      auto it = column_index_.find(name);
      if (it != column_index_.end()) return columns_[it->second];
      column_index_.emplace(name, columns_.size());
      columns_.emplace_back();
      columns_.back().name = name;
      return columns_.back();
    };
    for (int s = 0; s < config->slot_size(); ++s) {
      Column& c = use(SlotColumn(*config, s));
      c.slots.push_back(s);
      c.multi |= config->slot(s).multi_valued();
    }
    // Label columns are known (a ranking service may send the logged row as it is) and
    // ignored: serving has no labels.
    for (int t = 0; t < config->task_size(); ++t) use(TaskColumn(*config, t));
    use(config->data().domain_column()).domain = true;
    if (config->data().has_user_column()) use(config->data().user_column()).user = true;
    for (const std::string& name : config->data().column()) use(name);
    separator_ = config->data().multi_value_separator()[0];
  }

  Status Parse(const std::string& body, Batch* batch) {
    batch->Reset(config_->slot_size());
    batch_ = batch;
    state_ = kTop;
    error_ = Status::OK();
    sample_ = 0;
    seen_samples_ = false;
    if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
      return Status::InvalidArgument("empty body: expected {\"samples\": [...]}");
    }
    const bool ok = nlohmann::json::sax_parse(body, this);
    if (!error_.ok()) return error_;
    if (!ok || state_ != kDone) return Status::InvalidArgument("malformed JSON");
    if (batch->size == 0) return Status::InvalidArgument("samples: no sample");
    return Status::OK();
  }

  bool null() override { return Scalar(nullptr, 0, "null"); }
  bool boolean(bool) override { return Fail(Where() + ": a boolean, expected a string or number"); }
  bool number_integer(number_integer_t v) override {
    const std::string text = std::to_string(v);
    return Scalar(text.data(), text.size(), "a number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    const std::string text = std::to_string(v);
    return Scalar(text.data(), text.size(), "a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    return Scalar(text.data(), text.size(), "a number");
  }
  bool string(string_t& text) override { return Scalar(text.data(), text.size(), "a string"); }
  bool binary(binary_t&) override { return Fail(Where() + ": binary data"); }

  bool start_object(std::size_t) override {
    switch (state_) {
      case kTop:
        state_ = kTopKey;
        return true;
      case kSamples:
        if (sample_ >= max_samples_) {
          return Fail("samples: more than " + std::to_string(max_samples_) +
                      " samples in one request (--max_samples_per_request)");
        }
        for (Column& c : columns_) c.set = false;
        state_ = kSampleKey;
        return true;
      default:
        return Fail(Where() + ": an object, expected " + Expected());
    }
  }
  bool key(string_t& name) override {
    if (state_ == kTopKey) {
      if (name != "samples") return Fail("unknown key '" + name + "' (expected \"samples\")");
      if (seen_samples_) return Fail("\"samples\" given twice");
      seen_samples_ = true;
      state_ = kSamplesValue;
      return true;
    }
    auto it = column_index_.find(name);
    if (it == column_index_.end()) {
      return Fail("samples[" + std::to_string(sample_) + "]: unknown column '" + name + "'");
    }
    column_ = &columns_[it->second];
    if (column_->set) {
      return Fail("samples[" + std::to_string(sample_) + "]: column '" + name + "' given twice");
    }
    column_->set = true;
    column_->text.clear();
    state_ = kValue;
    return true;
  }
  bool end_object() override {
    if (state_ == kTopKey) {
      if (!seen_samples_) return Fail("no \"samples\" key");
      state_ = kDone;
      return true;
    }
    // state_ == kSampleKey: the sample is whole.
    Status st = Encode();
    if (!st.ok()) return Fail("samples[" + std::to_string(sample_) + "]: " + st.message());
    ++sample_;
    state_ = kSamples;
    return true;
  }
  bool start_array(std::size_t) override {
    if (state_ == kSamplesValue) {
      state_ = kSamples;
      return true;
    }
    if (state_ != kValue) return Fail(Where() + ": an array, expected " + Expected());
    if (!column_->multi && !column_->ignored()) {
      return Fail(Where() + ": an array, but the column is single-valued");
    }
    state_ = kArray;
    return true;
  }
  bool end_array() override {
    if (state_ == kSamples) {
      state_ = kTopKey;
      return true;
    }
    state_ = kSampleKey;  // the end of a column's array
    return true;
  }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& e) override {
    if (error_.ok()) {
      std::string what = e.what();
      // "[json.exception.parse_error.101] parse error at line 1, column 9: ..."
      const size_t colon = what.find(": ");
      if (colon != std::string::npos) what = what.substr(colon + 2);
      error_ = Status::InvalidArgument("malformed JSON at byte " + std::to_string(position) + ": " +
                                       what);
    }
    return false;
  }

 private:
  enum State { kTop, kTopKey, kSamplesValue, kSamples, kSampleKey, kValue, kArray, kDone };
  struct Column {
    std::string name;
    std::vector<int> slots;
    bool domain = false, user = false, multi = false;
    bool set = false;  // in this sample
    std::string text;  // this sample's cell
    size_t values = 0;
    bool ignored() const { return slots.empty() && !domain && !user; }
  };

  bool Fail(const std::string& message) {
    if (error_.ok()) error_ = Status::InvalidArgument(message);
    return false;
  }
  std::string Where() const {
    if (state_ == kValue || state_ == kArray) {
      return "samples[" + std::to_string(sample_) + "]." + column_->name;
    }
    if (state_ == kSamples) return "samples[" + std::to_string(sample_) + "]";
    if (state_ == kSamplesValue) return "samples";
    return "the body";
  }
  std::string Expected() const {
    switch (state_) {
      case kTop:
        return "an object {\"samples\": [...]}";
      case kSamplesValue:
        return "an array of samples";
      case kSamples:
        return "a sample object";
      default:
        return "a string or number";
    }
  }

  bool Scalar(const char* text, size_t size, const char* what) {
    if (state_ == kValue) {
      if (text != nullptr) column_->text.assign(text, size);
      state_ = kSampleKey;
      return true;
    }
    if (state_ == kArray) {
      if (text == nullptr || size == 0) return true;  // a missing value among the values
      if (std::string_view(text, size).find(separator_) != std::string_view::npos) {
        return Fail(Where() + ": value '" + std::string(text, size) + "' holds the separator '" +
                    std::string(1, separator_) + "' (data.multi_value_separator)");
      }
      if (!column_->text.empty()) column_->text += separator_;
      column_->text.append(text, size);
      return true;
    }
    return Fail(Where() + ": " + what + ", expected " + Expected());
  }

  Status Encode() {
    for (Column& c : columns_) {
      if (!c.set) c.text.clear();
      for (int s : c.slots) cells_.slot[s] = c.text;
      if (c.domain) cells_.domain = c.text;
      if (c.user) cells_.user = c.text;
    }
    cells_.has_user = config_->data().has_user_column();
    if (!cells_.has_user) {
      for (int s = 0; s < config_->slot_size(); ++s) {
        if (config_->slot(s).role() == proto::USER) {
          cells_.has_user = true;
          cells_.user = cells_.slot[s];
          break;
        }
      }
    }
    return encoder_.Append(cells_, batch_);
  }

  const proto::ModelConfig* config_;
  const size_t max_samples_;
  SampleEncoder encoder_;
  SampleCells cells_;
  std::vector<Column> columns_;
  std::unordered_map<std::string, size_t> column_index_;
  char separator_ = '|';

  Batch* batch_ = nullptr;
  State state_ = kTop;
  Status error_;
  size_t sample_ = 0;
  bool seen_samples_ = false;
  Column* column_ = nullptr;
};

ScoreRequestParser::ScoreRequestParser(const proto::ModelConfig* config, size_t max_samples)
    : handler_(new Handler(config, max_samples)) {}

ScoreRequestParser::~ScoreRequestParser() = default;

Status ScoreRequestParser::Parse(const std::string& body, Batch* batch) {
  return handler_->Parse(body, batch);
}

}  // namespace pepnet
