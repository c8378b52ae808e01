// The vector unit the kernels are written in: 16 floats (AVX-512), 8 (AVX2 + FMA), or a plain
// loop over 8 (any other CPU; the compiler vectorizes it as it can). Built with -march=native,
// so the branch taken is the CPU's own.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace asynclm {

#if defined(__AVX512F__) && defined(__AVX512BW__)
constexpr int kLanes = 16;
typedef __m512 vfloat;
inline vfloat load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, vfloat v) { _mm512_storeu_ps(p, v); }
inline vfloat splat(float v) { return _mm512_set1_ps(v); }
inline vfloat fma(vfloat a, vfloat b, vfloat c) { return _mm512_fmadd_ps(a, b, c); }
inline vfloat add(vfloat a, vfloat b) { return _mm512_add_ps(a, b); }
inline vfloat sub(vfloat a, vfloat b) { return _mm512_sub_ps(a, b); }
inline vfloat mul(vfloat a, vfloat b) { return _mm512_mul_ps(a, b); }
inline vfloat div(vfloat a, vfloat b) { return _mm512_div_ps(a, b); }
inline vfloat vmax(vfloat a, vfloat b) { return _mm512_max_ps(a, b); }
inline vfloat vmin(vfloat a, vfloat b) { return _mm512_min_ps(a, b); }
inline float hsum(vfloat v) { return _mm512_reduce_add_ps(v); }
inline float hmax(vfloat v) { return _mm512_reduce_max_ps(v); }
inline vfloat round_even(vfloat v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline vfloat pow2(vfloat n) {  // 2^n for integral n in the normal range
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
inline vfloat from_i8(const int8_t* p) {  // 16 int8
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}
inline void from_u4(const uint8_t* p, vfloat* w) {  // 16 bytes -> 32 values in [0, 15]
  const __m128i v = _mm_loadu_si128((const __m128i*)p), mask = _mm_set1_epi8(15);
  w[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v, mask)));
  w[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), mask)));
}
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kLanes = 8;
typedef __m256 vfloat;
inline vfloat load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, vfloat v) { _mm256_storeu_ps(p, v); }
inline vfloat splat(float v) { return _mm256_set1_ps(v); }
inline vfloat fma(vfloat a, vfloat b, vfloat c) { return _mm256_fmadd_ps(a, b, c); }
inline vfloat add(vfloat a, vfloat b) { return _mm256_add_ps(a, b); }
inline vfloat sub(vfloat a, vfloat b) { return _mm256_sub_ps(a, b); }
inline vfloat mul(vfloat a, vfloat b) { return _mm256_mul_ps(a, b); }
inline vfloat div(vfloat a, vfloat b) { return _mm256_div_ps(a, b); }
inline vfloat vmax(vfloat a, vfloat b) { return _mm256_max_ps(a, b); }
inline vfloat vmin(vfloat a, vfloat b) { return _mm256_min_ps(a, b); }
inline float hsum(vfloat v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
inline float hmax(vfloat v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
inline vfloat round_even(vfloat v) {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline vfloat pow2(vfloat n) {  // 2^n for integral n in the normal range
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
inline vfloat from_i8(const int8_t* p) {  // 8 int8
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
}
inline void from_u4(const uint8_t* p, vfloat* w) {  // 16 bytes -> 32 values in [0, 15]
  // each int32 lane gets one byte, i.e. two values: q[j] (low nibble) and q[j + 16] (high)
  const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p));
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p + 8)));
  const __m256i mask = _mm256_set1_epi32(15);
  w[0] = _mm256_cvtepi32_ps(_mm256_and_si256(a, mask));
  w[1] = _mm256_cvtepi32_ps(_mm256_and_si256(b, mask));
  w[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(a, 4));
  w[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
}
#else
constexpr int kLanes = 8;
struct vfloat {
  float v[kLanes];
};
template <class F>
inline vfloat lanes(F f) {
  vfloat r;
  for (int i = 0; i < kLanes; ++i) r.v[i] = f(i);
  return r;
}
inline vfloat load(const float* p) {
  vfloat r;
  std::memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void store(float* p, vfloat v) { std::memcpy(p, v.v, sizeof v.v); }
inline vfloat splat(float x) {
  return lanes([&](int) { return x; });
}
inline vfloat fma(vfloat a, vfloat b, vfloat c) {
  return lanes([&](int i) { return a.v[i] * b.v[i] + c.v[i]; });
}
inline vfloat add(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] + b.v[i]; });
}
inline vfloat sub(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] - b.v[i]; });
}
inline vfloat mul(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] * b.v[i]; });
}
inline vfloat div(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] / b.v[i]; });
}
inline vfloat vmax(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] > b.v[i] ? a.v[i] : b.v[i]; });
}
inline vfloat vmin(vfloat a, vfloat b) {
  return lanes([&](int i) { return a.v[i] < b.v[i] ? a.v[i] : b.v[i]; });
}
inline float hsum(vfloat a) {
  float s = 0.f;
  for (float e : a.v) s += e;
  return s;
}
inline float hmax(vfloat a) {
  float m = a.v[0];
  for (float e : a.v) m = e > m ? e : m;
  return m;
}
inline vfloat round_even(vfloat v) {
  return lanes([&](int i) { return std::nearbyint(v.v[i]); });
}
inline vfloat pow2(vfloat n) {
  return lanes([&](int i) { return std::ldexp(1.f, static_cast<int>(n.v[i])); });
}
inline vfloat from_i8(const int8_t* p) {
  return lanes([&](int i) { return static_cast<float>(p[i]); });
}
inline void from_u4(const uint8_t* p, vfloat* w) {
  for (int i = 0; i < 16; ++i) {
    w[i / kLanes].v[i % kLanes] = p[i] & 15;
    w[2 + i / kLanes].v[i % kLanes] = p[i] >> 4;
  }
}
#endif

// exp(x) to about 1 ulp (Cephes' expf): x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial.
inline vfloat vexp(vfloat x) {
  x = vmin(vmax(x, splat(-87.3f)), splat(88.3f));
  const vfloat n = round_even(mul(x, splat(1.44269504088896341f)));
  vfloat r = fma(n, splat(-0.693359375f), x);
  r = fma(n, splat(2.12194440e-4f), r);
  vfloat p = splat(1.9875691500e-4f);
  p = fma(p, r, splat(1.3981999507e-3f));
  p = fma(p, r, splat(8.3334519073e-3f));
  p = fma(p, r, splat(4.1665795894e-2f));
  p = fma(p, r, splat(1.6666665459e-1f));
  p = fma(p, r, splat(5.0000001201e-1f));
  p = fma(p, mul(r, r), add(r, splat(1.f)));
  return mul(p, pow2(n));
}

}  // namespace asynclm
