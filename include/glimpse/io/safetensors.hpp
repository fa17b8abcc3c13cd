#pragma once
// safetensors: memory-mapped reading, directory checkpoints, atomic writing; one idea per
// header (safetensors_header, safetensors_file, checkpoint, safetensors_writer), all four here.
//
// A checkpoint is untrusted input. `safetensors_file` validates the whole
// header when it opens a file (structure, dtypes, shapes, offsets, sizes,
// overlaps), so every later access is in bounds by construction and a hostile
// file costs at most one glimpse::error — never a crash, an out-of-bounds read
// or an allocation larger than the file itself. Tensor data is only mapped,
// not read: opening a 16 GB checkpoint touches the headers and nothing else.
//
// POSIX only (open/mmap). Tensor bytes are taken as little-endian, as the
// format specifies and as every platform glimpse targets stores them.

#include "glimpse/io/checkpoint.hpp"
#include "glimpse/io/safetensors_file.hpp"
#include "glimpse/io/safetensors_header.hpp"
#include "glimpse/io/safetensors_writer.hpp"
