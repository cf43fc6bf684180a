// Fuzz target: the table config parser (ps/table_config.h). A config it accepts must
// format to a text that parses back to the same options, and build a table.
//
// Input: the text of a table config.
#include <memory>
#include <string>

#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "tests/fuzz/fuzz_util.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "table config: %s\n", what.c_str());
  abort();
}

// An admission filter may be configured up to 64 GiB for a big shard: a table is built
// only below this, so that the run measures the parser, not the allocator.
constexpr uint64_t kMaxFilterToBuild = 16 << 20;

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  TableOptions options;
  if (!ParseTableConfig(std::string(reinterpret_cast<const char*>(data), size), "fuzz.pbtxt",
                        &options)
           .ok()) {
    return 0;
  }
  const std::string text = FormatTableConfig(options);
  TableOptions back;
  Status st = ParseTableConfig(text, "formatted", &back);
  Expect(st.ok(), "its formatted text is refused: " + st.ToString());
  Expect(FormatTableConfig(back) == text, "its formatted text reads back to other options");
  if (options.admission_filter_bytes <= kMaxFilterToBuild) {
    std::unique_ptr<EmbeddingTable> table;
    st = EmbeddingTable::Create(options, &table, /*hash_salt=*/1);
    Expect(st.ok(), "a valid config builds no table: " + st.ToString());
  }
  return 0;
}
