// h5poke: HDF5 surgery on a shard for the bad-input tests (tests/integration/bad_input.sh).
//   h5poke set FILE DATASET ROW COL VALUE   write one int32 element through HDF5 (checksums
//                                           stay valid: the bad value itself is the damage)
//   h5poke chunk FILE DATASET               print "<file offset> <bytes>" of the dataset's first
//                                           stored chunk (to damage it on disk, bypassing HDF5)
//   h5poke dump FILE DATASET                print an integer or float dataset, one row per line (values
//                                           space-separated): a reader independent of ShardSet
//   h5poke attr FILE NAME                   print a root attribute (an integer or a fixed-length string)
#include <hdf5.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "h5poke: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (argc < 4) return Fail("usage: h5poke set FILE DATASET ROW COL VALUE | chunk FILE DATASET | dump FILE DATASET | attr FILE NAME");
  const std::string cmd = argv[1];
  if (cmd == "attr") {
    const hid_t f = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return Fail(std::string("cannot open ") + argv[2]);
    const hid_t a = H5Aopen(f, argv[3], H5P_DEFAULT);
    if (a < 0) return Fail(std::string("no attribute ") + argv[3]);
    const hid_t type = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
      std::string text(H5Tget_size(type), '\0');
      if (H5Aread(a, type, text.data()) < 0) rc = Fail("read failed");
      std::printf("%s\n", text.c_str());
    } else if (H5Tget_class(type) == H5T_INTEGER) {
      long long v = 0;
      if (H5Aread(a, H5T_NATIVE_LLONG, &v) < 0) rc = Fail("read failed");
      std::printf("%lld\n", v);
    } else {
      rc = Fail("attribute is neither an integer nor a fixed-length string");
    }
    H5Tclose(type);
    H5Aclose(a);
    H5Fclose(f);
    return rc;
  }
  const bool write = cmd == "set";
  const hid_t f = H5Fopen(argv[2], write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return Fail(std::string("cannot open ") + argv[2]);
  const hid_t ds = H5Dopen2(f, argv[3], H5P_DEFAULT);
  if (ds < 0) return Fail(std::string("no dataset ") + argv[3]);
  int rc = 0;
  if (write && argc == 7) {
    const hid_t space = H5Dget_space(ds);
    const int rank = H5Sget_simple_extent_ndims(space);
    hsize_t start[2] = {std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10)};
    hsize_t count[2] = {1, 1};
    const int value = std::atoi(argv[6]);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
    const hid_t mem = H5Screate_simple(rank, count, nullptr);
    if (H5Dwrite(ds, H5T_NATIVE_INT32, mem, space, H5P_DEFAULT, &value) < 0) rc = Fail("write failed");
    H5Sclose(mem);
    H5Sclose(space);
  } else if (cmd == "chunk") {
    hsize_t offset[2] = {0, 0}, size = 0;
    unsigned mask = 0;
    haddr_t addr = 0;
    const hid_t space = H5Dget_space(ds);
    if (H5Dget_chunk_info(ds, space, 0, offset, &mask, &addr, &size) < 0) rc = Fail("no chunk info");
    else std::printf("%llu %llu\n", static_cast<unsigned long long>(addr), static_cast<unsigned long long>(size));
    H5Sclose(space);
  } else if (cmd == "dump") {
    const hid_t space = H5Dget_space(ds);
    hsize_t dims[2] = {0, 1};
    const int rank = H5Sget_simple_extent_dims(space, dims, nullptr);
    if (rank == 1) dims[1] = 1;
    const hid_t type = H5Dget_type(ds);
    const bool is_float = H5Tget_class(type) == H5T_FLOAT;
    H5Tclose(type);
    std::vector<long long> v(dims[0] * dims[1]);
    std::vector<double> d(is_float ? v.size() : 0);
    const herr_t read = v.empty() ? 0
                        : is_float ? H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.data())
                                   : H5Dread(ds, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    if (read < 0) {
      rc = Fail("read failed");
    } else {
      for (hsize_t r = 0; r < dims[0]; ++r)
        for (hsize_t c = 0; c < dims[1]; ++c) {
          const size_t i = r * dims[1] + c;
          if (is_float) std::printf("%.9g", d[i]);
          else std::printf("%lld", v[i]);
          std::printf(c + 1 < dims[1] ? " " : "\n");
        }
    }
    H5Sclose(space);
  } else {
    rc = Fail("bad arguments");
  }
  H5Dclose(ds);
  H5Fclose(f);
  return rc;
}
