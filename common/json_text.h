// JSON text for the few places that write JSON lines by hand (the per-pass metrics line):
// a string quoted and escaped, a number with 6 significant digits or null.
#ifndef PEPNET_COMMON_JSON_TEXT_H_
#define PEPNET_COMMON_JSON_TEXT_H_

#include <string>

namespace pepnet {

std::string JsonString(const std::string& s);
std::string JsonNumber(double v);  // null when not finite

}  // namespace pepnet

#endif  // PEPNET_COMMON_JSON_TEXT_H_
