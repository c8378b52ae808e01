// The inner loops of the block-quantized linear kernels (no torch here: quant.cpp is the glue).
// See quant.cpp for the formats.
#pragma once

#include <cstdint>

#include "vec.h"

namespace asynclm {

constexpr int kBlock = 32;
constexpr int kRowTile = 4;  // rows of x sharing one unpacked weight block

constexpr int kChunks = kBlock / kLanes;

struct Q8_0 {
  static constexpr int kBytes = kBlock;
  static inline void unpack(const uint8_t* p, vfloat* w) {
    for (int c = 0; c < kChunks; ++c) w[c] = from_i8(reinterpret_cast<const int8_t*>(p) + c * kLanes);
  }
};

struct Q4_1 {
  static constexpr int kBytes = kBlock / 2;
  static inline void unpack(const uint8_t* p, vfloat* w) { from_u4(p, w); }
};

// sum_b mins[b] * xsum[b]: the block minimums' share of a q4_1 product.
inline float min_term(const float* mins, const float* xsum, int64_t nblocks) {
  vfloat acc = splat(0.f);
  int64_t b = 0;
  for (; b + kLanes <= nblocks; b += kLanes) acc = fma(load(mins + b), load(xsum + b), acc);
  float s = hsum(acc);
  for (; b < nblocks; ++b) s += mins[b] * xsum[b];
  return s;
}

// out[r] = dot(x[r], dequantized weight row) for `Rows` rows of x (stride ldx).
template <class Format, int Rows>
inline void dot_rows(const float* x, int64_t ldx, const uint8_t* wq, const float* scale,
                     const float* mins, const float* xsum, int64_t nblocks, float* out,
                     int64_t ldo) {
  vfloat acc[Rows];
  for (int r = 0; r < Rows; ++r) acc[r] = splat(0.f);
  vfloat w[kChunks];
  for (int64_t b = 0; b < nblocks; ++b) {
    Format::unpack(wq + b * Format::kBytes, w);
    const vfloat d = splat(scale[b]);
    for (int r = 0; r < Rows; ++r) {
      const float* xb = x + r * ldx + b * kBlock;
      // two independent chains per block, so the FMA latency overlaps
      vfloat even = splat(0.f), odd = splat(0.f);
      for (int c = 0; c < kChunks; c += 2) {
        even = fma(load(xb + c * kLanes), w[c], even);
        odd = fma(load(xb + (c + 1) * kLanes), w[c + 1], odd);
      }
      acc[r] = fma(add(even, odd), d, acc[r]);
    }
  }
  for (int r = 0; r < Rows; ++r) {
    float s = hsum(acc[r]);
    if (mins != nullptr) s += min_term(mins, xsum + r * nblocks, nblocks);
    out[r * ldo] = s;
  }
}

}  // namespace asynclm
