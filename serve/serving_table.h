// ServingTable: the embedding rows of a served model, weights only (no AdaGrad state, no
// show/click counters, no pass numbers): per slot, the rows' keys and weights in two dense
// arrays and an open-addressing index (linear probing) of 4-byte row numbers. A row costs
// 8 + 4 * dim bytes, plus 5 to 10 bytes of index (it doubles at 80% load), plus the
// arrays' spare room: none after a load (Fit), at most a quarter more after deltas have
// added rows. bytes() counts every allocated byte.
//
// A key the model lacks reads what pepnet_predict reads for it (docs/publish-format.md):
// in a slot with admission zeros, otherwise the weights a server would create it with,
// from (key, table_seed). Reading never adds a row, so requests cannot grow the table.
//
// Thread safety: const methods may run concurrently with each other; Set and Erase need
// exclusive access (serve/live_model.h holds the lock). The slots' layout (DimOf) never
// changes after Create, so DimOf needs no lock at all.
#ifndef PEPNET_SERVE_SERVING_TABLE_H_
#define PEPNET_SERVE_SERVING_TABLE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}

class ServingTable {
 public:
  // An empty table for `model`'s slots, whose absent keys start from `table_seed`.
  static Status Create(const proto::ModelConfig& model, uint64_t table_seed,
                       std::unique_ptr<ServingTable>* out);
  ~ServingTable();
  ServingTable(const ServingTable&) = delete;
  ServingTable& operator=(const ServingTable&) = delete;

  // The dim of the key's slot; 0 if the model has no such slot.
  uint32_t DimOf(uint64_t key) const;

  // Inserts or replaces the key's row. InvalidArgument for a key of no slot of the model
  // or a dim other than its slot's.
  Status Set(uint64_t key, const float* weights, uint32_t dim);
  // Room for the rows that Set calls for `keys` will add, made without changing what
  // readers see: the one writer builds the larger arrays and index (copying the table)
  // beside the live ones, outside any lock, and Install swaps them in, in time that does
  // not grow with the table. Set then never reallocates for those keys, so an update
  // holds the write lock for time that grows with its rows only.
  class Reservation {
   public:
    Reservation();
    ~Reservation();
    Reservation(Reservation&&);

   private:
    friend class ServingTable;
    struct Part;
    std::vector<Part> parts_;  // by slot; empty parts change nothing
  };
  Reservation Reserve(const uint64_t* keys, size_t n) const;
  // Swaps the reservation's arrays in; the old ones are left in it, to be freed after the
  // lock is released.
  void Install(Reservation* reservation);
  // Removes the key's row, if it has one.
  void Erase(uint64_t key);
  // Writes the key's DimOf floats to `out` (the key must be of a slot of the model).
  void Read(uint64_t key, float* out) const;
  bool Contains(uint64_t key) const;

  // Drops the arrays' spare room (a copy: for a table not yet live, after a load).
  void Fit();

  uint64_t rows() const;
  uint64_t bytes() const;

 private:
  struct Slot;
  ServingTable() = default;
  Slot* SlotOf(uint64_t key) const;

  uint32_t slot_bits_ = 0;
  uint64_t seed_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<int32_t> slot_index_;  // by slot id: index into slots_, or -1
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_SERVING_TABLE_H_
