// Fuzz target: the dense parameter reader (ReadDenseFile, publish/published_model.h),
// with the float count a manifest would claim.
//
// Input: uint64 claimed float count (little-endian), then the content of dense.bin. The
// expected checksum is the content's own, so that every check can be passed.
#include <cmath>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "publish/published_model.h"
#include "tests/fuzz/fuzz_util.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "dense file: %s\n", what.c_str());
  abort();
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  static fuzz::MemFile* const file = new fuzz::MemFile("dense");
  fuzz::InputReader in(data, size);
  const uint64_t floats = in.Get<uint64_t>();
  if (!in.ok()) return 0;
  file->Set(in.data(), in.left());
  std::vector<float> out;
  if (!ReadDenseFile(file->path(), floats, ChecksumOf(in.data(), in.left()), &out).ok()) return 0;
  Expect(out.size() == floats && 4 * floats == in.left(), "size differs from the claim");
  for (float v : out) Expect(std::isfinite(v), "a non-finite parameter passed");
  return 0;
}
