#include "more/data/hdf5_util.h"

#include <vector>

#include <fmt/format.h>

#include "more/core/error.h"

namespace more::h5 {

std::recursive_mutex& Hdf5Mutex() {
  static std::recursive_mutex mutex;
  return mutex;
}

void Hdf5Init() {
  static std::once_flag once;
  std::call_once(once, [] { H5open(); });
  thread_local bool silenced = false;  // HDF5's error settings are per thread
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

namespace {
herr_t CollectError(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n >= 4) return 0;  // the innermost few entries say what went wrong
  if (!out->empty()) *out += "; ";
  *out += std::string(e->func_name ? e->func_name : "?") + ": " + (e->desc ? e->desc : "?");
  return 0;
}
}  // namespace

std::string Hdf5ErrorText() {
  std::string text;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, CollectError, &text);
  H5Eclear2(H5E_DEFAULT);
  return text.empty() ? "no HDF5 error message" : "HDF5: " + text;
}

void Id::Reset() {
  if (id_ >= 0) {
    if (H5Iis_valid(id_) > 0) H5Idec_ref(id_);
    id_ = H5I_INVALID_HID;
  }
}

Id Check(hid_t id, const std::string& what) {
  if (id < 0) throw Error(what + ": " + Hdf5ErrorText());
  return Id(id);
}

void Check(herr_t status, const std::string& what) {
  if (status < 0) throw Error(what + ": " + Hdf5ErrorText());
}

void WriteAttr(hid_t obj, const std::string& name, const std::string& value) {
  Id type = Check(H5Tcopy(H5T_C_S1), "H5Tcopy");
  Check(H5Tset_size(type.get(), std::max<size_t>(1, value.size())), "H5Tset_size");
  Check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
  Check(H5Tset_cset(type.get(), H5T_CSET_UTF8), "H5Tset_cset");
  Id space = Check(H5Screate(H5S_SCALAR), "H5Screate");
  Id attr = Check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  "cannot create attribute '" + name + "'");
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  Check(H5Awrite(attr.get(), type.get(), buf.data()), "cannot write attribute '" + name + "'");
}

void WriteAttr(hid_t obj, const std::string& name, int64_t value) {
  Id space = Check(H5Screate(H5S_SCALAR), "H5Screate");
  Id attr = Check(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                  "cannot create attribute '" + name + "'");
  Check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), "cannot write attribute '" + name + "'");
}

bool HasAttr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

namespace {
// An attribute the shards write is one value. H5Aread fills the whole dataspace, so an array
// attribute (a damaged or foreign file) would overrun the one-value buffer: refused first.
void RequireOneValue(hid_t attr, const std::string& name, const std::string& where) {
  Id space = Check(H5Aget_space(attr), where + ": attribute '" + name + "'");
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n != 1)
    throw Error(fmt::format("{}: attribute '{}' holds {} values, expected one", where, name, n),
                "the file was not written by shard_data build (or is damaged)");
}
}  // namespace

std::string ReadStringAttr(hid_t obj, const std::string& name, const std::string& where) {
  if (!HasAttr(obj, name))
    throw Error(where + ": missing attribute '" + name + "'",
                "the file was not written by shard_data build (or by an incompatible version)");
  Id attr = Check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where + ": cannot open attribute '" + name + "'");
  Id type = Check(H5Aget_type(attr.get()), where + ": attribute '" + name + "'");
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw Error(where + ": attribute '" + name + "' is not a string");
  RequireOneValue(attr.get(), name, where);
  if (H5Tis_variable_str(type.get()) > 0) {
    Id mem = Check(H5Tcopy(H5T_C_S1), "H5Tcopy");
    Check(H5Tset_size(mem.get(), H5T_VARIABLE), "H5Tset_size");
    Check(H5Tset_cset(mem.get(), H5Tget_cset(type.get())), "H5Tset_cset");
    char* str = nullptr;
    Check(H5Aread(attr.get(), mem.get(), &str), where + ": cannot read attribute '" + name + "'");
    std::string out = str ? str : "";
    H5free_memory(str);
    return out;
  }
  const size_t size = H5Tget_size(type.get());
  std::vector<char> buf(size + 1, '\0');
  Check(H5Aread(attr.get(), type.get(), buf.data()), where + ": cannot read attribute '" + name + "'");
  return std::string(buf.data());  // stops at the first NUL (null-padded / null-terminated)
}

int64_t ReadIntAttr(hid_t obj, const std::string& name, const std::string& where) {
  if (!HasAttr(obj, name))
    throw Error(where + ": missing attribute '" + name + "'",
                "the file was not written by shard_data build (or by an incompatible version)");
  Id attr = Check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where + ": cannot open attribute '" + name + "'");
  Id type = Check(H5Aget_type(attr.get()), where + ": attribute '" + name + "'");
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw Error(where + ": attribute '" + name + "' is not an integer");
  RequireOneValue(attr.get(), name, where);
  int64_t value = 0;
  Check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), where + ": cannot read attribute '" + name + "'");
  return value;
}

std::vector<hsize_t> Dims(hid_t dataset, const std::string& where) {
  Id space = Check(H5Dget_space(dataset), where + ": cannot get dataspace");
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw Error(where + ": bad dataspace: " + Hdf5ErrorText());
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) Check(H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr), where + ": dims");
  return dims;
}

}  // namespace more::h5
