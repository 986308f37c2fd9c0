// h5poke: HDF5 surgery on a shard for the bad-input tests (tests/integration/bad_input.sh).
//   h5poke set FILE DATASET ROW COL VALUE   write one int32 element through HDF5 (checksums
//                                           stay valid: the bad value itself is the damage)
//   h5poke chunk FILE DATASET               print "<file offset> <bytes>" of the dataset's first
//                                           stored chunk (to damage it on disk, bypassing HDF5)
#include <hdf5.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "h5poke: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (argc < 4) return Fail("usage: h5poke set FILE DATASET ROW COL VALUE | h5poke chunk FILE DATASET");
  const std::string cmd = argv[1];
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
  } else {
    rc = Fail("bad arguments");
  }
  H5Dclose(ds);
  H5Fclose(f);
  return rc;
}
