// Row files (publish/row_file.h): what is written reads back, and every damaged or
// hostile file is refused with its name and the byte at fault.
#include "publish/row_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "common/checksum.h"
#include "ps/embedding_table.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

// A row file's bytes, built field by field.
class RowBytes {
 public:
  explicit RowBytes(const char* magic = "PEPROWS2") { bytes_.append(magic, 8); }
  RowBytes& U64(uint64_t v) { return Raw(&v, 8); }
  RowBytes& U32(uint32_t v) { return Raw(&v, 4); }
  RowBytes& F32(float v) { return Raw(&v, 4); }
  RowBytes& Raw(const void* p, size_t n) {
    bytes_.append(static_cast<const char*>(p), n);
    return *this;
  }
  const std::string& bytes() const { return bytes_; }
  uint64_t checksum() const { return ChecksumOf(bytes_.data(), bytes_.size()); }

 private:
  std::string bytes_;
};

class RowFileTest : public ::testing::Test {
 protected:
  // Reads `bytes` as a row file with `checksum` (default: the right one).
  Status Read(const RowBytes& b, const uint64_t* checksum = nullptr) {
    const std::string path = dir_.File("rows-0.bin");
    testing::WriteFile(path, b.bytes());
    rows_.clear();
    deleted_.clear();
    return ReadRowFile(
        path, checksum ? *checksum : b.checksum(),
        [&](uint64_t key) {
          deleted_.push_back(key);
          return Status::OK();
        },
        [&](uint64_t key, const float* w, uint32_t dim) {
          rows_[key].assign(w, w + dim);
          return Status::OK();
        },
        &info_);
  }

  void ExpectCorrupt(const RowBytes& b, const std::string& fragment) {
    Status st = Read(b);
    EXPECT_EQ(st.code(), Status::kCorruption) << st.ToString();
    EXPECT_EQ(st.message().rfind(dir_.File("rows-0.bin") + ": ", 0), 0u) << st.message();
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  }

  testing::TempDir dir_;
  std::map<uint64_t, std::vector<float>> rows_;
  std::vector<uint64_t> deleted_;
  RowFileInfo info_;
};

TEST_F(RowFileTest, WrittenRowsReadBack) {
  TableOptions o;
  SlotOptions slot;
  slot.id = 1;
  slot.dim = 4;
  o.slots = {slot};
  std::unique_ptr<EmbeddingTable> table;
  ASSERT_TRUE(EmbeddingTable::Create(o, &table).ok());
  const float w[4] = {1, -2, 3, -4};
  for (uint64_t id = 0; id < 10; ++id) {
    ASSERT_TRUE(table->SetWeights(testing::TestKey(1, id), w, 4).ok());
  }
  const std::string path = dir_.File("written.bin");
  RowFileInfo written;
  ASSERT_TRUE(WriteRowFile(Env::Default(), *table, true, 0, path, &written).ok());
  EXPECT_EQ(written.rows, 10u);
  uint64_t rows = 0;
  Status st = ReadRowFile(
      path, written.checksum, [](uint64_t) { return Status::OK(); },
      [&](uint64_t, const float* got, uint32_t dim) {
        EXPECT_EQ(dim, 4u);
        EXPECT_EQ(std::memcmp(got, w, sizeof(w)), 0);
        ++rows;
        return Status::OK();
      },
      &info_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(rows, 10u);
  EXPECT_EQ(info_.checksum, written.checksum);
  EXPECT_EQ(info_.bytes, written.bytes);
}

TEST_F(RowFileTest, ReadsRowsAndDeletedKeys) {
  RowBytes b;
  b.U64(2).U64(11).U64(12);              // two deleted keys
  b.U64(5).U32(2).F32(0.5f).F32(-1.5f);  // one row of dim 2
  b.U64(1);                              // footer
  ASSERT_TRUE(Read(b).ok());
  EXPECT_EQ(deleted_, std::vector<uint64_t>({11, 12}));
  EXPECT_EQ(rows_[5], std::vector<float>({0.5f, -1.5f}));
  EXPECT_EQ(info_.rows, 1u);
  EXPECT_EQ(info_.deleted, 2u);
}

// 0 is a checksum like any other: a manifest that says 0 does not turn the check off.
TEST_F(RowFileTest, TheChecksumIsAlwaysCompared) {
  RowBytes b;
  b.U64(0).U64(5).U32(1).F32(1.0f).U64(1);
  const uint64_t zero = 0, wrong = b.checksum() ^ 1;
  for (const uint64_t* checksum : {&zero, &wrong}) {
    Status st = Read(b, checksum);
    EXPECT_EQ(st.code(), Status::kCorruption);
    EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st.message();
  }
  EXPECT_TRUE(Read(b).ok());
}

TEST_F(RowFileTest, NonFiniteWeightsAreRefused) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    RowBytes b;
    b.U64(0).U64(0x0040000000000007ull).U32(3).F32(1).F32(bad).F32(2).U64(1);
    ExpectCorrupt(b, "row of key 0x0040000000000007: weight 1 is ");
    ExpectCorrupt(b, "not finite, at byte 40");
  }
}

TEST_F(RowFileTest, DamagedFilesAreRefused) {
  ExpectCorrupt(RowBytes("PEPROWS9").U64(0).U64(0), "bad magic");
  ExpectCorrupt(RowBytes().U32(0), "bad magic or too short");
  ExpectCorrupt(RowBytes().U64(uint64_t{1} << 61).U64(0), "deleted-key count larger than the file");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(0).U64(0), "row dim 0");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(70000).F32(1).U64(1), "row dim 70000");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(4).F32(1).U64(1), "truncated row");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(1).F32(1).U64(2), "footer says 2 rows, read 1");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(1).F32(1).Raw("0123456789", 10),
                "truncated row header");
  ExpectCorrupt(RowBytes().U64(0).U64(5).U32(1).F32(1), "truncated footer");
}

TEST_F(RowFileTest, AFifoIsRefusedWithoutWaiting) {
  const std::string fifo = dir_.File("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Status st = ReadRowFile(
      fifo, 0, [](uint64_t) { return Status::OK(); },
      [](uint64_t, const float*, uint32_t) { return Status::OK(); }, &info_);
  EXPECT_EQ(st.message(), fifo + ": not a regular file");
}

TEST_F(RowFileTest, AMissingFileIsNotFound) {
  Status st = ReadRowFile(
      dir_.File("absent.bin"), 0, [](uint64_t) { return Status::OK(); },
      [](uint64_t, const float*, uint32_t) { return Status::OK(); }, &info_);
  EXPECT_EQ(st.code(), Status::kNotFound);
  EXPECT_NE(st.message().find(dir_.File("absent.bin")), std::string::npos);
}

}  // namespace
}  // namespace pepnet
