// Shard I/O umbrella: packing text into rows (packing.h), writing HDF5 shards
// (shard_writer.h) and reading them (shard_set.h). Layout: shard_format.h.
#pragma once
#include "more/data/packing.h"
#include "more/data/shard_format.h"
#include "more/data/shard_set.h"
#include "more/data/shard_writer.h"
