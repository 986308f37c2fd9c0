#include "more/core/dtype_convert.h"

#include <bit>
#include <cstring>

#include <fmt/format.h>

#include "more/core/error.h"

namespace more {

namespace {

template <typename T>
T Load(const void* base, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(base) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}

template <typename T>
void Store(void* base, int64_t i, T v) {
  std::memcpy(static_cast<unsigned char*>(base) + i * static_cast<int64_t>(sizeof(T)), &v, sizeof(T));
}

template <typename T>
void CastAll(const void* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(Load<T>(in, i));
}

}  // namespace

float Bf16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));  // inf / NaN
  // normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits)
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t F32ToBf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: keep sign and top payload, force quiet
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  // round to nearest even on the 16 dropped bits; a carry into the exponent is correct
  // (including overflow of the largest values to inf)
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t F32ToF16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs > 0x7F800000u)  // NaN: quiet, keep the top of the payload
    return static_cast<uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu));
  if (abs >= 0x477FF000u)  // >= 65520 (incl. inf): rounds past 65504 -> inf
    return static_cast<uint16_t>(sign | 0x7C00u);
  if (abs < 0x38800000u) {  // below 2^-14: F16 subnormal or zero
    if (abs <= 0x33000000u) return sign;  // <= 2^-25: half the smallest subnormal, ties to 0
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // value / 2^-24 = mant >> shift; shift in [14, 24]
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | r);
  }
  // normal: rebias exponent 127 -> 15 and round away 13 mantissa bits to nearest even
  uint32_t r = (abs - (112u << 23)) >> 13;
  const uint32_t rem = abs & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

void ConvertToF32(DType src, const void* in, float* out, int64_t n) {
  switch (src) {
    case DType::kF32: std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::kF64: CastAll<double>(in, out, n); return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToF32(Load<uint16_t>(in, i));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(Load<uint16_t>(in, i));
      return;
    case DType::kI64: CastAll<int64_t>(in, out, n); return;
    case DType::kI32: CastAll<int32_t>(in, out, n); return;
    case DType::kI16: CastAll<int16_t>(in, out, n); return;
    case DType::kI8: CastAll<int8_t>(in, out, n); return;
    case DType::kU8: CastAll<uint8_t>(in, out, n); return;
    case DType::kBool:
      for (int64_t i = 0; i < n; ++i) out[i] = Load<uint8_t>(in, i) != 0 ? 1.0f : 0.0f;
      return;
  }
  throw Error(fmt::format("ConvertToF32: unknown dtype code {}", static_cast<int>(src)));
}

void ConvertFromF32(DType dst, const float* in, void* out, int64_t n) {
  switch (dst) {
    case DType::kF32: std::memcpy(out, in, static_cast<size_t>(n) * sizeof(float)); return;
    case DType::kF64:
      for (int64_t i = 0; i < n; ++i) Store<double>(out, i, static_cast<double>(in[i]));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) Store<uint16_t>(out, i, F32ToBf16(in[i]));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) Store<uint16_t>(out, i, F32ToF16(in[i]));
      return;
    default:
      throw Error(fmt::format("ConvertFromF32: cannot convert float32 to {}", DTypeName(dst)),
                  "only F32, F16, BF16 and F64 are supported as targets");
  }
}

}  // namespace more
