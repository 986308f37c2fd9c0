// Torch-free conversions between the floating-point storage types of safetensors files and
// float32, for tools and tests that read or write weights without LibTorch.
//
// Bit layouts (sign | exponent | mantissa):
//   F32  1 | 8 | 23   bias 127
//   BF16 1 | 8 |  7   bias 127  -- the top 16 bits of an F32: same range, 8 bits of precision
//   F16  1 | 5 | 10   bias 15   -- max finite 65504, smallest normal 2^-14, subnormals down to 2^-24
// To F32 every BF16/F16 value is exact (incl. F16 subnormals, +-inf, NaN). From F32 the result is
// rounded to nearest, ties to even (as torch and numpy do); F16 overflows to +-inf (anything at
// or above 65520 in magnitude), values below half the smallest subnormal become +-0, and NaN stays
// a quiet NaN with its sign.
// Pointers need not be aligned: elements are read and written with memcpy, so a pointer into a
// safetensors memory map whose header was not padded to 8 bytes is fine.
#pragma once
#include <cstdint>

#include "more/core/safetensors.h"

namespace more {

// Scalar conversions (bit patterns in uint16_t).
float Bf16ToF32(uint16_t bits);
float F16ToF32(uint16_t bits);
uint16_t F32ToBf16(float f);  // round to nearest even
uint16_t F32ToF16(float f);   // round to nearest even

// in: n elements of `src` -> out: n floats. Floating types F32/F16/BF16/F64 convert as above
// (F64 rounds to nearest float); integer and BOOL types are converted by value.
void ConvertToF32(DType src, const void* in, float* out, int64_t n);
// in: n floats -> out: n elements of `dst`. `dst` must be F32, F16, BF16 or F64; any other type
// throws more::Error.
void ConvertFromF32(DType dst, const float* in, void* out, int64_t n);

}  // namespace more
