// Small helpers over the HDF5 C API shared by the shard writer and reader (internal to data/).
//
// Debian's serial HDF5 is not thread-safe: every HDF5 call in this project must hold
// Hdf5Mutex() (a recursive mutex, so helpers may nest). Hdf5Init() turns off HDF5's automatic
// error printing (per thread); failures are turned into more::Error carrying the text of the HDF5
// error stack (Hdf5ErrorText) instead.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace more::h5 {

// The one lock around every HDF5 call of the process.
std::recursive_mutex& Hdf5Mutex();

// Silences HDF5's default error printer for the calling thread. This build of HDF5 keeps its
// error settings per thread (H5_HAVE_THREADSAFE), so a thread that never called this (the
// loader's prefetch thread) would print "HDF5-DIAG" blocks before the trainer's own message.
// Call with the lock held; Lock does it for every thread that takes the lock.
void Hdf5Init();

// Holds Hdf5Mutex() and makes sure the calling thread's HDF5 error printer is off.
class Lock {
 public:
  explicit Lock(std::recursive_mutex& m) : guard_(m) { Hdf5Init(); }

 private:
  std::lock_guard<std::recursive_mutex> guard_;
};

// The messages of the current HDF5 error stack ("func: desc; ..."), then clears it.
std::string Hdf5ErrorText();

// Owns one HDF5 identifier (file, group, dataset, dataspace, datatype, attribute, plist) and
// releases it with H5Idec_ref. The caller holds Hdf5Mutex() while it is destroyed.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  ~Id() { Reset(); }
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void Reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Throws more::Error("<what>: <HDF5 error stack>") unless `id` is valid; returns it owned.
Id Check(hid_t id, const std::string& what);
// Throws more::Error unless `status` >= 0.
void Check(herr_t status, const std::string& what);

// Attributes on an object (file root or group). Strings are fixed-length UTF-8 on write;
// both fixed- and variable-length strings are accepted on read (h5py writes the latter).
void WriteAttr(hid_t obj, const std::string& name, const std::string& value);
void WriteAttr(hid_t obj, const std::string& name, int64_t value);
bool HasAttr(hid_t obj, const std::string& name);
std::string ReadStringAttr(hid_t obj, const std::string& name, const std::string& where);
int64_t ReadIntAttr(hid_t obj, const std::string& name, const std::string& where);

// Current dimensions of a dataset.
std::vector<hsize_t> Dims(hid_t dataset, const std::string& where);

}  // namespace more::h5
