// Fuzz target: the row file reader (publish/row_file.h) feeding a serving table, as
// LoadPublishedVersion does: deleted keys erased, rows set. The expected checksum is
// the input's own, so that a file the fuzzer makes can pass every check.
//
// Input: a row file ("PEPROWS2" or "PEPROWS1" ...).
#include <cmath>
#include <memory>
#include <string>

#include "common/checksum.h"
#include "ps/embedding_table.h"
#include "publish/row_file.h"
#include "tests/fuzz/fuzz_util.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "row file: %s\n", what.c_str());
  abort();
}

// The slots of the published test model (tests/publish_util.h), dims 4 and 8.
TableOptions ServingOptions() {
  TableOptions o;
  o.partition_bits = 1;
  for (uint32_t id : {1u, 2u, 3u}) {
    SlotOptions s;
    s.id = id;
    s.dim = id == 1 ? 4 : 8;
    o.slots.push_back(s);
  }
  return o;
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  static fuzz::MemFile* const file = new fuzz::MemFile("rows");
  static const TableOptions options = ServingOptions();
  file->Set(data, size);
  std::unique_ptr<EmbeddingTable> table;
  fuzz::Require(EmbeddingTable::Create(options, &table, /*hash_salt=*/1), "table");
  uint64_t rows = 0, deleted = 0;
  RowFileInfo info;
  Status st = ReadRowFile(
      file->path(), ChecksumOf(data, size),
      [&](uint64_t key) {
        ++deleted;
        return table->Erase(key);
      },
      [&](uint64_t key, const float* w, uint32_t dim) {
        for (uint32_t i = 0; i < dim; ++i) Expect(std::isfinite(w[i]), "a non-finite weight");
        ++rows;
        return table->SetWeights(key, w, dim);
      },
      &info);
  if (st.ok()) {
    Expect(info.rows == rows && info.deleted == deleted, "counts differ from the callbacks");
    Expect(info.bytes == size && info.checksum == ChecksumOf(data, size), "bytes or checksum");
  }
  return 0;
}
