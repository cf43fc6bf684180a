#include "common/text_proto.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <fstream>
#include <sstream>

namespace pepnet {
namespace {

class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  explicit FirstError(std::string source) : source_(std::move(source)) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!first_.empty()) return;
    // Errors found after parsing (a missing required field) have no position.
    first_ = line < 0 ? source_ + ": " + message
                      : source_ + ":" + std::to_string(line + 1) + ":" +
                            std::to_string(column + 1) + ": " + message;
  }
  const std::string& first() const { return first_; }

 private:
  std::string source_;
  std::string first_;
};

}  // namespace

Status ParseTextProto(const std::string& text, const std::string& source,
                      google::protobuf::Message* message) {
  google::protobuf::TextFormat::Parser parser;
  FirstError errors(source);
  parser.RecordErrorsTo(&errors);
  if (parser.ParseFromString(text, message)) return Status::OK();
  return Status::InvalidArgument(errors.first().empty() ? source + ": unparsable" : errors.first());
}

Status ReadFileToString(const std::string& path, const std::string& what, std::string* out) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot open " + what + " " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  *out = buf.str();
  return Status::OK();
}

}  // namespace pepnet
