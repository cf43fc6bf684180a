// Reading configs written in protobuf text format. An unknown field, a type error or a
// missing required field is an error naming the file and, where known, the line.
#ifndef PEPNET_COMMON_TEXT_PROTO_H_
#define PEPNET_COMMON_TEXT_PROTO_H_

#include <string>

#include "common/status.h"

namespace google {
namespace protobuf {
class Message;
}
}  // namespace google

namespace pepnet {

// Parses `text` into `message`; errors start with `source` ("file:line:column: ...").
Status ParseTextProto(const std::string& text, const std::string& source,
                      google::protobuf::Message* message);

// The whole file; NotFound naming `what` and the path if it cannot be read.
Status ReadFileToString(const std::string& path, const std::string& what, std::string* out);

}  // namespace pepnet

#endif  // PEPNET_COMMON_TEXT_PROTO_H_
