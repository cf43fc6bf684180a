#include "serve/serving_table.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>

#include "common/hash.h"
#include "proto/model_config.pb.h"
#include "ps/row_layout.h"
#include "ps/table_config.h"

namespace pepnet {
namespace {
constexpr uint32_t kEmpty = UINT32_MAX;
constexpr size_t kMinIndex = 16;
}  // namespace

struct ServingTable::Slot {
  uint32_t dim = 0;
  bool admission = false;
  float init_range = 0;
  std::vector<uint64_t> keys;   // by row number
  std::vector<float> weights;   // row r at r * dim
  std::vector<uint32_t> index;  // row numbers, kEmpty where free; a power of two long
  size_t mask = 0;

  size_t Home(uint64_t key) const { return Mix64(key) & mask; }

  // The index position holding the key's row, or the free position where it would go.
  size_t Position(uint64_t key) const {
    size_t i = Home(key);
    while (index[i] != kEmpty && keys[index[i]] != key) i = (i + 1) & mask;
    return i;
  }

  // An index of `size` positions for the current rows.
  std::vector<uint32_t> IndexOf(size_t size) const {
    std::vector<uint32_t> built(size, kEmpty);
    const size_t m = size - 1;
    for (uint32_t r = 0; r < keys.size(); ++r) {
      size_t i = Mix64(keys[r]) & m;
      while (built[i] != kEmpty) i = (i + 1) & m;
      built[i] = r;
    }
    return built;
  }
  static bool Fits(size_t rows, size_t index_size) { return rows * 5 <= index_size * 4; }

  void Grow() {
    index = IndexOf(std::max(kMinIndex, index.size() * 2));
    mask = index.size() - 1;
  }

  void Set(uint64_t key, const float* w) {
    if (!Fits(keys.size() + 1, index.size())) Grow();
    const size_t i = Position(key);
    if (index[i] == kEmpty) {
      index[i] = static_cast<uint32_t>(keys.size());
      keys.push_back(key);
      weights.insert(weights.end(), w, w + dim);
    } else {
      std::memcpy(weights.data() + size_t{index[i]} * dim, w, 4 * size_t{dim});
    }
  }

  void Erase(uint64_t key) {
    if (index.empty()) return;
    size_t i = Position(key);
    const uint32_t row = index[i];
    if (row == kEmpty) return;
    // The last row moves into the hole, so the arrays stay dense.
    const uint32_t last = static_cast<uint32_t>(keys.size() - 1);
    if (row != last) {
      index[Position(keys[last])] = row;
      keys[row] = keys[last];
      std::memcpy(weights.data() + size_t{row} * dim, weights.data() + size_t{last} * dim,
                  4 * size_t{dim});
    }
    keys.pop_back();
    weights.resize(weights.size() - dim);
    // Backward-shift deletion: entries after the hole whose home is not between the hole
    // and them move into it, so every probe sequence stays unbroken without tombstones.
    for (size_t j = (i + 1) & mask; index[j] != kEmpty; j = (j + 1) & mask) {
      const size_t home = Home(keys[index[j]]);
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      index[i] = index[j];
      i = j;
    }
    index[i] = kEmpty;
  }
};

ServingTable::~ServingTable() = default;

struct ServingTable::Reservation::Part {
  bool rows = false, index = false;  // what it replaces
  std::vector<uint64_t> keys;
  std::vector<float> weights;
  std::vector<uint32_t> index_entries;
};
ServingTable::Reservation::Reservation() = default;
ServingTable::Reservation::~Reservation() = default;
ServingTable::Reservation::Reservation(Reservation&&) = default;

ServingTable::Reservation ServingTable::Reserve(const uint64_t* keys, size_t n) const {
  std::vector<size_t> added(slots_.size(), 0);
  for (size_t k = 0; k < n; ++k) {
    const int32_t i = slot_index_[SlotOfKey(keys[k], slot_bits_)];
    if (i >= 0 && !Contains(keys[k])) ++added[i];  // a key repeated in `keys` counts twice
  }
  Reservation r;
  r.parts_.resize(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = *slots_[i];
    const size_t need = s.keys.size() + added[i];
    Reservation::Part& part = r.parts_[i];
    if (need > s.keys.capacity() || need * s.dim > s.weights.capacity()) {
      // Growth by a quarter, not doubling: the spare room is memory every row pays for,
      // and the copy is made outside the lock anyway.
      const size_t capacity = std::max(need, s.keys.capacity() + s.keys.capacity() / 4 + 1024);
      part.rows = true;
      part.keys.reserve(capacity);
      part.keys = s.keys;
      part.keys.reserve(capacity);
      part.weights.reserve(capacity * s.dim);
      part.weights = s.weights;
      part.weights.reserve(capacity * s.dim);
    }
    if (!Slot::Fits(need, s.index.size())) {
      size_t size = std::max(kMinIndex, s.index.size());
      while (!Slot::Fits(need, size)) size *= 2;
      part.index = true;
      part.index_entries = s.IndexOf(size);
    }
  }
  return r;
}

void ServingTable::Install(Reservation* r) {
  for (size_t i = 0; i < r->parts_.size() && i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    Reservation::Part& part = r->parts_[i];
    if (part.rows) {
      s.keys.swap(part.keys);
      s.weights.swap(part.weights);
    }
    if (part.index) {
      s.index.swap(part.index_entries);
      s.mask = s.index.size() - 1;
    }
  }
}

Status ServingTable::Create(const proto::ModelConfig& model, uint64_t table_seed,
                            std::unique_ptr<ServingTable>* out) {
  const TableOptions options = TableOptionsFor(model, table_seed);
  std::unique_ptr<ServingTable> t(new ServingTable());
  t->slot_bits_ = options.slot_bits;
  t->seed_ = options.seed;
  if (options.slot_bits == 0 || options.slot_bits > 16) {
    return Status::InvalidArgument("slot_bits " + std::to_string(options.slot_bits) +
                                   " outside [1, 16]");
  }
  t->slot_index_.assign(size_t{1} << options.slot_bits, -1);
  for (const SlotOptions& s : options.slots) {
    if (s.id >= t->slot_index_.size() || t->slot_index_[s.id] >= 0) {
      return Status::InvalidArgument("slot id " + std::to_string(s.id) +
                                     " repeated or over slot_bits");
    }
    auto slot = std::make_unique<Slot>();
    slot->dim = s.dim;
    slot->admission = s.eviction.admission();
    slot->init_range = s.adagrad.init_range;
    t->slot_index_[s.id] = static_cast<int32_t>(t->slots_.size());
    t->slots_.push_back(std::move(slot));
  }
  *out = std::move(t);
  return Status::OK();
}

ServingTable::Slot* ServingTable::SlotOf(uint64_t key) const {
  const int32_t i = slot_index_[SlotOfKey(key, slot_bits_)];
  return i < 0 ? nullptr : slots_[i].get();
}

uint32_t ServingTable::DimOf(uint64_t key) const {
  const Slot* s = SlotOf(key);
  return s ? s->dim : 0;
}

Status ServingTable::Set(uint64_t key, const float* weights, uint32_t dim) {
  Slot* s = SlotOf(key);
  if (s == nullptr) {
    return Status::InvalidArgument("key " + FormatKey(key) + " is of no slot of the model");
  }
  if (dim != s->dim) {
    return Status::InvalidArgument("key " + FormatKey(key) + ": a row of dim " +
                                   std::to_string(dim) + ", its slot's is " +
                                   std::to_string(s->dim));
  }
  s->Set(key, weights);
  return Status::OK();
}

void ServingTable::Erase(uint64_t key) {
  if (Slot* s = SlotOf(key)) s->Erase(key);
}

bool ServingTable::Contains(uint64_t key) const {
  const Slot* s = SlotOf(key);
  return s && !s->index.empty() && s->index[s->Position(key)] != kEmpty;
}

void ServingTable::Read(uint64_t key, float* out) const {
  const Slot* s = SlotOf(key);
  CHECK(s != nullptr) << "key " << FormatKey(key) << " of no slot";
  if (!s->index.empty()) {
    const uint32_t row = s->index[s->Position(key)];
    if (row != kEmpty) {
      std::memcpy(out, s->weights.data() + size_t{row} * s->dim, 4 * size_t{s->dim});
      return;
    }
  }
  if (s->admission) {
    std::memset(out, 0, 4 * size_t{s->dim});
  } else {
    RowLayout::InitWeights(key, seed_, s->dim, s->init_range, out);
  }
}

void ServingTable::Fit() {
  for (auto& s : slots_) {
    s->keys.shrink_to_fit();
    s->weights.shrink_to_fit();
  }
}

uint64_t ServingTable::rows() const {
  uint64_t n = 0;
  for (const auto& s : slots_) n += s->keys.size();
  return n;
}

uint64_t ServingTable::bytes() const {
  uint64_t n = sizeof(*this) + 4 * slot_index_.capacity();
  for (const auto& s : slots_) {
    n +=
        sizeof(Slot) + 8 * s->keys.capacity() + 4 * s->weights.capacity() + 4 * s->index.capacity();
  }
  return n;
}

}  // namespace pepnet
