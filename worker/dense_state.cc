#include "worker/dense_state.h"

#include <cstring>

#include "common/checksum.h"

namespace pepnet {
namespace {

constexpr char kMagic[8] = {'P', 'E', 'P', 'D', 'E', 'N', 'S', '1'};
constexpr size_t kHeader = 8 + 8 + 8;

}  // namespace

std::string EncodeDenseState(const DenseState& s) {
  const uint64_t n = s.params.size();
  std::string out;
  out.reserve(kHeader + 12 * n + 8);
  out.append(kMagic, 8);
  out.append(reinterpret_cast<const char*>(&n), 8);
  out.append(reinterpret_cast<const char*>(&s.step), 8);
  for (const std::vector<float>* part : {&s.params, &s.m, &s.v}) {
    out.append(reinterpret_cast<const char*>(part->data()), 4 * n);
  }
  const uint64_t sum = ChecksumOf(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&sum), 8);
  return out;
}

Status DecodeDenseState(const std::string& bytes, const std::string& source, DenseState* out) {
  if (bytes.size() < kHeader + 8 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    return Status::Corruption(source + ": not a dense checkpoint (bad magic or too short)");
  }
  uint64_t n;
  std::memcpy(&n, bytes.data() + 8, 8);
  if (n > (bytes.size() - kHeader - 8) / 12 || kHeader + 12 * n + 8 != bytes.size()) {
    return Status::Corruption(source + ": " + std::to_string(bytes.size()) + " bytes for " +
                              std::to_string(n) + " dense floats");
  }
  uint64_t sum;
  std::memcpy(&sum, bytes.data() + bytes.size() - 8, 8);
  if (ChecksumOf(bytes.data(), bytes.size() - 8) != sum) {
    return Status::Corruption(source + ": checksum mismatch");
  }
  std::memcpy(&out->step, bytes.data() + 16, 8);
  const char* p = bytes.data() + kHeader;
  for (std::vector<float>* part : {&out->params, &out->m, &out->v}) {
    part->resize(n);
    std::memcpy(part->data(), p, 4 * n);
    p += 4 * n;
  }
  return Status::OK();
}

}  // namespace pepnet
