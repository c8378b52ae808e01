// Fused float32 ops of the decoder: one call where torch needs several.
//
// A decode step of a small model is a few thousand tiny ops; each torch op costs a few
// microseconds of dispatch, so the ops around the matrix products (norms, RoPE, the K/V write,
// attention over the paged pool, SiLU) cost as much as the products themselves. These kernels
// do each group in one call, with the same float32 arithmetic as the torch ops they replace (up
// to summation order): `asynclm.engine.kernels.ops` holds the torch versions they are tested
// against.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "vec.h"

namespace asynclm {
namespace {

constexpr int64_t kSerialWork = 1 << 15;  // below this many multiply-adds, no parallel region

void check_float(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.dim() == dim, name,
              " must be a contiguous float32 tensor of ", dim, " dimensions");
}

int64_t grain(int64_t work_per_item) { return std::max<int64_t>(1, kSerialWork / std::max<int64_t>(1, work_per_item)); }

// sum(v[i]^2) over n values
float sum_squares(const float* v, int64_t n) {
  vfloat acc = splat(0.f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const vfloat x = load(v + i);
    acc = fma(x, x, acc);
  }
  float s = hsum(acc);
  for (; i < n; ++i) s += v[i] * v[i];
  return s;
}

// out = v * rsqrt(mean(v^2) + eps) * w
void norm_row(const float* v, const float* w, float eps, int64_t n, float* out) {
  const float r = 1.f / std::sqrt(sum_squares(v, n) / static_cast<float>(n) + eps);
  const vfloat vr = splat(r);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) store(out + i, mul(mul(load(v + i), vr), load(w + i)));
  for (; i < n; ++i) out[i] = v[i] * r * w[i];
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_float(x, "x", 2);
  check_float(weight, "weight", 1);
  const int64_t rows = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.size(0) == n, "weight must have x's width");
  auto out = at::empty(x.sizes(), x.options());
  const float *xp = x.data_ptr<float>(), *wp = weight.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, grain(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) norm_row(xp + r * n, wp, static_cast<float>(eps), n, op + r * n);
  });
  return out;
}

// (x + residual, rms_norm(x + residual))
std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                                const at::Tensor& weight, double eps) {
  check_float(x, "x", 2);
  check_float(residual, "residual", 2);
  check_float(weight, "weight", 1);
  TORCH_CHECK(x.sizes() == residual.sizes(), "x and residual must have the same shape");
  const int64_t rows = x.size(0), n = x.size(1);
  TORCH_CHECK(weight.size(0) == n, "weight must have x's width");
  auto sum = at::empty(x.sizes(), x.options());
  auto normed = at::empty(x.sizes(), x.options());
  const float *xp = x.data_ptr<float>(), *rp = residual.data_ptr<float>(), *wp = weight.data_ptr<float>();
  float *sp = sum.data_ptr<float>(), *np = normed.data_ptr<float>();
  at::parallel_for(0, rows, grain(n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *a = xp + r * n, *b = rp + r * n;
      float* s = sp + r * n;
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes) store(s + i, add(load(a + i), load(b + i)));
      for (; i < n; ++i) s[i] = a[i] + b[i];
      norm_row(s, wp, static_cast<float>(eps), n, np + r * n);
    }
  });
  return {sum, normed};
}

// RoPE in the rotate-half convention: out[i] = x[i] cos[i] - x[i + h] sin[i] (i < h),
// x[i] cos[i] + x[i - h] sin[i] (i >= h), for h = dim / 2.
void rope_head(const float* x, const float* cos, const float* sin, int64_t dim, float* out) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    out[i] = x[i] * cos[i] - x[i + half] * sin[i];
    out[i + half] = x[i + half] * cos[i + half] + x[i] * sin[i + half];
  }
}

// q/k/v of T tokens from the fused projection: returns RoPE'd q [T, H*D]; writes RoPE'd k and v
// [KVH, D] of token t at slot slots[t] of layer `layer` of the pool kv [layers, 2, S, KVH, D].
at::Tensor rope_qkv(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin,
                    const at::Tensor& kv, int64_t layer, const at::Tensor& slots, int64_t heads,
                    int64_t kv_heads) {
  check_float(qkv, "qkv", 2);
  check_float(cos, "cos", 2);
  check_float(sin, "sin", 2);
  check_float(kv, "kv", 5);
  const int64_t tokens = qkv.size(0), dim = cos.size(1);
  TORCH_CHECK(dim % 2 == 0 && qkv.size(1) == (heads + 2 * kv_heads) * dim,
              "qkv must be [tokens, (heads + 2 kv_heads) * head_dim]");
  TORCH_CHECK(cos.size(0) == tokens && sin.sizes() == cos.sizes(), "cos/sin must be [tokens, head_dim]");
  TORCH_CHECK(kv.size(3) == kv_heads && kv.size(4) == dim && layer >= 0 && layer < kv.size(0),
              "kv must be [layers, 2, slots, kv_heads, head_dim]");
  TORCH_CHECK(slots.scalar_type() == at::kLong && slots.dim() == 1 && slots.size(0) == tokens &&
                  slots.is_contiguous(),
              "slots must be a contiguous int64 [tokens] tensor");
  const int64_t num_slots = kv.size(2), width = qkv.size(1), row = kv_heads * dim;
  auto q = at::empty({tokens, heads * dim}, qkv.options());
  const float *src = qkv.data_ptr<float>(), *cp = cos.data_ptr<float>(), *sp = sin.data_ptr<float>();
  const int64_t* slot = slots.data_ptr<int64_t>();
  float* keys = kv.data_ptr<float>() + (layer * 2) * num_slots * row;
  float* values = keys + num_slots * row;
  float* qp = q.data_ptr<float>();
  for (int64_t t = 0; t < tokens; ++t)
    TORCH_CHECK(slot[t] >= 0 && slot[t] < num_slots, "slot ", slot[t], " is outside the pool");
  at::parallel_for(0, tokens, grain(width), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float *x = src + t * width, *c = cp + t * dim, *s = sp + t * dim;
      for (int64_t h = 0; h < heads; ++h) rope_head(x + h * dim, c, s, dim, qp + t * heads * dim + h * dim);
      float* k = keys + slot[t] * row;
      for (int64_t g = 0; g < kv_heads; ++g) rope_head(x + (heads + g) * dim, c, s, dim, k + g * dim);
      std::memcpy(values + slot[t] * row, x + (heads + kv_heads) * dim, row * sizeof(float));
    }
  });
  return q;
}

float dot(const float* a, const float* b, int64_t n) {
  vfloat acc = splat(0.f);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = fma(load(a + i), load(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One query head over `len` keys at slots `index` of one kv head: softmax(q.K / sqrt d) V.
void attend_head(const float* q, const float* keys, const float* values, const int64_t* index,
                 int64_t len, int64_t stride, int64_t dim, float scale, float* scores, float* out) {
  float top = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    scores[j] = dot(q, keys + index[j] * stride, dim) * scale;
    top = std::max(top, scores[j]);
  }
  vfloat total = splat(0.f);
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes) {
    const vfloat e = vexp(sub(load(scores + j), splat(top)));
    store(scores + j, e);
    total = add(total, e);
  }
  float sum = hsum(total);
  for (; j < len; ++j) {
    scores[j] = std::exp(scores[j] - top);
    sum += scores[j];
  }
  std::fill(out, out + dim, 0.f);
  for (int64_t k = 0; k < len; ++k) {
    const float* v = values + index[k] * stride;
    const vfloat p = splat(scores[k]);
    int64_t i = 0;
    for (; i + kLanes <= dim; i += kLanes) store(out + i, fma(p, load(v + i), load(out + i)));
    for (; i < dim; ++i) out[i] += scores[k] * v[i];
  }
  const float inv = 1.f / sum;
  for (int64_t i = 0; i < dim; ++i) out[i] *= inv;
}

// Single-token attention of B sequences over their own keys in the pool, read in place:
// q [B, H*D]; index [B, L] (slots, padded); lengths [B] (keys each sequence sees).
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& kv, int64_t layer,
                            const at::Tensor& index, const at::Tensor& lengths, int64_t kv_heads,
                            double scale) {
  check_float(q, "q", 2);
  check_float(kv, "kv", 5);
  TORCH_CHECK(index.scalar_type() == at::kLong && index.is_contiguous() && index.dim() == 2 &&
                  index.size(0) == q.size(0),
              "index must be a contiguous int64 [batch, keys] tensor");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.is_contiguous() &&
                  lengths.numel() == q.size(0),
              "lengths must be a contiguous int64 [batch] tensor");
  const int64_t batch = q.size(0), dim = kv.size(4), heads = q.size(1) / dim;
  TORCH_CHECK(kv.size(3) == kv_heads && heads % kv_heads == 0 && heads * dim == q.size(1),
              "q must be [batch, heads * head_dim] with heads a multiple of kv_heads");
  TORCH_CHECK(layer >= 0 && layer < kv.size(0), "layer out of range");
  const int64_t num_slots = kv.size(2), width = index.size(1), stride = kv_heads * dim;
  const int64_t* idx = index.data_ptr<int64_t>();
  const int64_t* len = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(len[b] >= 1 && len[b] <= width, "every sequence needs 1..keys keys");
    for (int64_t j = 0; j < len[b]; ++j)
      TORCH_CHECK(idx[b * width + j] >= 0 && idx[b * width + j] < num_slots, "slot outside the pool");
  }
  auto out = at::empty(q.sizes(), q.options());
  const float* keys = kv.data_ptr<float>() + (layer * 2) * num_slots * stride;
  const float* values = keys + num_slots * stride;
  const float *qp = q.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t group = heads / kv_heads;
  at::parallel_for(0, batch * heads, grain(2 * width * dim), [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> scores;
    scores.resize(width);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / heads, h = i % heads, g = h / group;
      attend_head(qp + i * dim, keys + g * dim, values + g * dim, idx + b * width, len[b], stride,
                  dim, static_cast<float>(scale), scores.data(), op + i * dim);
    }
  });
  return out;
}

// silu(gu[:, :n]) * gu[:, n:] for gu [T, 2n]
at::Tensor silu_mul(const at::Tensor& gu) {
  check_float(gu, "gate_up", 2);
  TORCH_CHECK(gu.size(1) % 2 == 0, "gate_up must have an even width");
  const int64_t rows = gu.size(0), n = gu.size(1) / 2;
  auto out = at::empty({rows, n}, gu.options());
  const float* src = gu.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, rows, grain(4 * n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float *g = src + r * 2 * n, *u = g + n;
      float* o = dst + r * n;
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes) {
        const vfloat x = load(g + i);
        const vfloat silu = div(x, add(splat(1.f), vexp(sub(splat(0.f), x))));
        store(o + i, mul(silu, load(u + i)));
      }
      for (; i < n; ++i) o[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
    }
  });
  return out;
}

}  // namespace
}  // namespace asynclm

TORCH_LIBRARY_FRAGMENT(asynclm, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", &asynclm::rms_norm);
  m.def("add_rms_norm(Tensor x, Tensor residual, Tensor weight, float eps) -> (Tensor, Tensor)",
        &asynclm::add_rms_norm);
  m.def(
      "rope_qkv(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) kv, int layer, Tensor slots, "
      "int heads, int kv_heads) -> Tensor",
      &asynclm::rope_qkv);
  m.def(
      "decode_attention(Tensor q, Tensor kv, int layer, Tensor index, Tensor lengths, "
      "int kv_heads, float scale) -> Tensor",
      &asynclm::decode_attention);
  m.def("silu_mul(Tensor gate_up) -> Tensor", &asynclm::silu_mul);
}
