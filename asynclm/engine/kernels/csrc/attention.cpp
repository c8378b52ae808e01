// Causal attention of new tokens over one contiguous run of the KV pool, in float32: prefill,
// and chunked prefill continuing a sequence whose slots are contiguous.
//
// A flash-attention loop written for this decoder's shapes. Work items are (kv head, block of
// query positions); a block stacks the queries of every head sharing the kv head, so each key
// block loaded is used by all of them (grouped-query attention without copying keys). For each
// key block: scores by a register-tiled product against the keys laid out transposed (a vector
// holds one component of several keys), the online softmax (running max and sum per row), and
// the values accumulated by a second register-tiled product. Key blocks past a query block's
// causal limit are never visited. Items are taken largest first from a shared counter, so the
// threads stay busy although later positions see more keys.
//
// The arithmetic is float32 throughout, as in torch's flash attention (the results agree up to
// summation order); `asynclm.engine.attention` keeps torch's kernel as the reference and for
// every layout this one does not cover.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "vec.h"

namespace asynclm {
namespace {

// query rows per register tile: 4 x 4 accumulators of 32 zmm registers; 2 x 4 of 16 ymm ones
constexpr int kTileRows = kLanes >= 16 ? 4 : 2;
constexpr int kTileVecs = 4;   // vectors per tile row: keys of a score tile, dims of a value tile
constexpr int64_t kKeys = kTileVecs * kLanes;  // keys per block
constexpr int64_t kPositions = 16;             // query positions per work item

struct Shape {
  int64_t n;         // queries
  int64_t len;       // keys in the run
  int64_t heads;     // query heads
  int64_t group;     // query heads per kv head
  int64_t dim;       // head dim
  int64_t padded;    // len rounded up to a whole key block (the transposed keys' row length)
  int64_t kv_row;    // floats between two slots of the pool (kv_heads * dim)
  float scale;
  const int64_t* seen;  // [n]: query p sees the keys [0, seen[p]) of the run
};

// The keys of kv head g transposed block by block: kt[g][block][d][j] = component d of key
// block * kKeys + j (zeros past the run). One block is one contiguous tile: rows of a whole
// transposed run would lie a power of two apart and fight over the same cache sets.
void transpose_keys(const float* keys, const Shape& s, int64_t kv_heads, float* kt) {
  const int64_t blocks = s.padded / kKeys;
  at::parallel_for(0, kv_heads * blocks, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / blocks, j0 = i % blocks * kKeys, count = std::min(kKeys, s.len - j0);
      float* tile = kt + i * s.dim * kKeys;
      for (int64_t d = 0; d < s.dim; ++d) {
        const float* k = keys + j0 * s.kv_row + g * s.dim + d;
        float* row = tile + d * kKeys;
        for (int64_t j = 0; j < count; ++j) row[j] = k[j * s.kv_row];
        std::fill(row + count, row + kKeys, 0.f);
      }
    }
  });
}

// scores[r][0, kKeys) = q_r . key j of the block, for R query rows (kt: the block's tile).
template <int R>
inline void score_tile(const float* const* q, const float* kt, int64_t ldk, int64_t dim,
                       float* scores) {
  vfloat acc[R][kTileVecs];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kTileVecs; ++v) acc[r][v] = splat(0.f);
  for (int64_t d = 0; d < dim; ++d) {
    const float* k = kt + d * ldk;
    vfloat kv[kTileVecs];
    for (int v = 0; v < kTileVecs; ++v) kv[v] = load(k + v * kLanes);
    for (int r = 0; r < R; ++r) {
      const vfloat qd = splat(q[r][d]);
      for (int v = 0; v < kTileVecs; ++v) acc[r][v] = fma(qd, kv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kTileVecs; ++v) store(scores + r * kKeys + v * kLanes, acc[r][v]);
}

// out[r][0, dim) += sum_j p[r][j] * value j, for R rows over `keys` keys of the block.
template <int R>
inline void value_tile(const float* p, int64_t keys, const float* values, int64_t ldv,
                       int64_t dim, float* out) {
  for (int64_t d0 = 0; d0 < dim; d0 += kTileVecs * kLanes) {
    vfloat acc[R][kTileVecs];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kTileVecs; ++v) acc[r][v] = load(out + r * dim + d0 + v * kLanes);
    for (int64_t j = 0; j < keys; ++j) {
      const float* vrow = values + j * ldv + d0;
      vfloat vv[kTileVecs];
      for (int v = 0; v < kTileVecs; ++v) vv[v] = load(vrow + v * kLanes);
      for (int r = 0; r < R; ++r) {
        const vfloat pj = splat(p[r * kKeys + j]);
        for (int v = 0; v < kTileVecs; ++v) acc[r][v] = fma(pj, vv[v], acc[r][v]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kTileVecs; ++v) store(out + r * dim + d0 + v * kLanes, acc[r][v]);
  }
}

template <class F>
inline void by_tiles(int64_t rows, F&& f) {  // f(first row, R) over tiles of kTileRows rows
  int64_t r = 0;
  for (; r + kTileRows <= rows; r += kTileRows) f(r, std::integral_constant<int, kTileRows>{});
  for (; r < rows; ++r) f(r, std::integral_constant<int, 1>{});
}

// One row's online-softmax update for a block: the scores become probabilities (0 where the
// row sees no key), the running max/sum move, the row's output is rescaled. False: the row sees
// nothing of this block.
inline bool softmax_block(float* s, int64_t seen, float scale, float& top, float& total,
                          float* out, int64_t dim) {
  if (seen <= 0) {
    std::fill(s, s + kKeys, 0.f);
    return false;
  }
  float block_top = -INFINITY;
  if (seen == kKeys) {
    vfloat m = load(s);
    for (int64_t j = kLanes; j < kKeys; j += kLanes) m = vmax(m, load(s + j));
    block_top = hmax(m) * scale;
  } else {
    for (int64_t j = 0; j < seen; ++j) block_top = std::max(block_top, s[j] * scale);
  }
  const float next = std::max(top, block_top);
  const float shrink = top == -INFINITY ? 0.f : std::exp(top - next);
  const vfloat vs = splat(scale), vn = splat(next);
  vfloat sum = splat(0.f);
  for (int64_t j = 0; j < kKeys; j += kLanes) {
    const vfloat e = vexp(sub(mul(load(s + j), vs), vn));
    store(s + j, e);
  }
  std::fill(s + seen, s + kKeys, 0.f);
  for (int64_t j = 0; j < kKeys; j += kLanes) sum = add(sum, load(s + j));
  total = total * shrink + hsum(sum);
  top = next;
  if (shrink != 1.f) {
    const vfloat vk = splat(shrink);
    for (int64_t d = 0; d < dim; d += kLanes) store(out + d, mul(load(out + d), vk));
  }
  return true;
}

struct Scratch {
  std::vector<float> scores, out, top, total;
  std::vector<const float*> rows;
  explicit Scratch(int64_t rows_, int64_t dim)
      : scores(rows_ * kKeys), out(rows_ * dim), top(rows_), total(rows_), rows(rows_) {}
};

// Work item: kv head g, query positions [p0, p1). `lse` (if given) [n, heads] gets each row's
// log-sum-exp of its scaled scores (-inf where it sees no key; its output is then 0).
void attend_block(const float* q, const float* kt, const float* values, const Shape& s,
                  int64_t g, int64_t p0, int64_t p1, Scratch& w, float* out, float* lse) {
  const int64_t span = p1 - p0, rows = s.group * span, width = s.heads * s.dim;
  for (int64_t h = 0; h < s.group; ++h)
    for (int64_t i = 0; i < span; ++i)
      w.rows[h * span + i] = q + (p0 + i) * width + (g * s.group + h) * s.dim;
  std::fill(w.out.begin(), w.out.begin() + rows * s.dim, 0.f);
  std::fill(w.top.begin(), w.top.begin() + rows, -INFINITY);
  std::fill(w.total.begin(), w.total.begin() + rows, 0.f);
  const float* ktg = kt + g * s.dim * s.padded;
  const float* vg = values + g * s.dim;
  const int64_t last = *std::max_element(s.seen + p0, s.seen + p1);
  for (int64_t j0 = 0; j0 < last; j0 += kKeys) {
    by_tiles(rows, [&](int64_t r, auto R) {
      score_tile<decltype(R)::value>(w.rows.data() + r, ktg + j0 * s.dim, kKeys, s.dim,
                                     w.scores.data() + r * kKeys);
    });
    int64_t used = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t seen = s.seen[p0 + r % span] - j0;
      if (softmax_block(w.scores.data() + r * kKeys, std::min(seen, kKeys), s.scale, w.top[r],
                        w.total[r], w.out.data() + r * s.dim, s.dim))
        used = std::max(used, std::min(seen, kKeys));
    }
    by_tiles(rows, [&](int64_t r, auto R) {
      value_tile<decltype(R)::value>(w.scores.data() + r * kKeys, used, vg + j0 * s.kv_row, s.kv_row, s.dim,
                    w.out.data() + r * s.dim);
    });
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t h = g * s.group + r / span, p = p0 + r % span;
    float* o = out + p * width + h * s.dim;
    const float* acc = w.out.data() + r * s.dim;
    const float total = w.total[r];
    const vfloat inv = splat(total > 0.f ? 1.f / total : 0.f);
    for (int64_t d = 0; d < s.dim; d += kLanes) store(o + d, mul(load(acc + d), inv));
    if (lse != nullptr) lse[p * s.heads + h] = total > 0.f ? w.top[r] + std::log(total) : -INFINITY;
  }
}

struct Run {
  Shape shape;
  const float* keys;
  const float* values;
};

// The run [lo, hi) of `layer` for queries q [n, H*D], checked.
Run run_of(const at::Tensor& q, const at::Tensor& kv, int64_t layer, int64_t lo, int64_t hi,
           int64_t kv_heads, double scale) {
  TORCH_CHECK(q.scalar_type() == at::kFloat && q.is_contiguous() && q.dim() == 2,
              "q must be a contiguous float32 [tokens, heads * head_dim] tensor");
  TORCH_CHECK(kv.scalar_type() == at::kFloat && kv.is_contiguous() && kv.dim() == 5,
              "kv must be the contiguous float32 pool [layers, 2, slots, kv_heads, head_dim]");
  const int64_t dim = kv.size(4), n = q.size(0), len = hi - lo;
  TORCH_CHECK(kv.size(3) == kv_heads && q.size(1) % dim == 0, "q and kv disagree on head_dim");
  const int64_t heads = q.size(1) / dim;
  TORCH_CHECK(heads % kv_heads == 0, "heads must be a multiple of kv_heads");
  TORCH_CHECK(dim % (kTileVecs * kLanes) == 0, "head_dim must be a multiple of ",
              kTileVecs * kLanes);
  TORCH_CHECK(layer >= 0 && layer < kv.size(0), "layer out of range");
  TORCH_CHECK(lo >= 0 && hi <= kv.size(2) && len >= 1 && n >= 1,
              "the run [lo, hi) must be a non-empty range of the pool");
  const Shape s{n, len, heads, heads / kv_heads, dim, (len + kKeys - 1) / kKeys * kKeys,
                kv_heads * dim, static_cast<float>(scale), nullptr};
  const int64_t slots = kv.size(2);
  const float* base = kv.data_ptr<float>();
  return {s, base + (layer * 2 * slots + lo) * s.kv_row,
          base + ((layer * 2 + 1) * slots + lo) * s.kv_row};
}

// Every query over the run, each seeing its prefix `s.seen`; out [n, H*D], lse [n, H] or null.
void attend(const at::Tensor& q, const Run& run, float* out, float* lse) {
  const Shape& s = run.shape;
  const int64_t kv_heads = s.heads / s.group;
  std::vector<float> kt(kv_heads * s.dim * s.padded);
  transpose_keys(run.keys, s, kv_heads, kt.data());
  const int64_t blocks = (s.n + kPositions - 1) / kPositions, items = kv_heads * blocks;
  std::atomic<int64_t> next{0};
  const float* qp = q.data_ptr<float>();
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    Scratch w(s.group * kPositions, s.dim);
    for (int64_t i; (i = next.fetch_add(1)) < items;) {
      const int64_t g = i / blocks, b = blocks - 1 - i % blocks;  // a head at a time, most keys first
      const int64_t p0 = b * kPositions, p1 = std::min(s.n, p0 + kPositions);
      attend_block(qp, kt.data(), run.values, s, g, p0, p1, w, out, lse);
    }
  });
}

// q [n, H*D] (RoPE applied) of the last n of the keys in pool slots [lo, hi) of `layer`;
// query i sees the keys up to its own. Returns [n, H*D].
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& kv, int64_t layer, int64_t lo,
                            int64_t hi, int64_t kv_heads, double scale) {
  Run run = run_of(q, kv, layer, lo, hi, kv_heads, scale);
  const int64_t n = run.shape.n, len = run.shape.len;
  TORCH_CHECK(n <= len, "the run must hold at least the new tokens");
  std::vector<int64_t> seen(n);
  for (int64_t p = 0; p < n; ++p) seen[p] = len - n + p + 1;
  run.shape.seen = seen.data();
  auto out = at::empty(q.sizes(), q.options());
  attend(q, run, out.data_ptr<float>(), nullptr);
  return out;
}

// Queries q [n, H*D] over the keys in pool slots [lo, hi) of `layer`, query i seeing the first
// visible[i] of them (0: none). Returns (out [n, H*D], log-sum-exp [n, H]) for merging runs.
std::tuple<at::Tensor, at::Tensor> prefix_attention(const at::Tensor& q, const at::Tensor& kv,
                                                    int64_t layer, int64_t lo, int64_t hi,
                                                    int64_t kv_heads, double scale,
                                                    const at::Tensor& visible) {
  Run run = run_of(q, kv, layer, lo, hi, kv_heads, scale);
  TORCH_CHECK(visible.scalar_type() == at::kLong && visible.is_contiguous() &&
                  visible.numel() == run.shape.n,
              "visible must be a contiguous int64 [tokens] tensor");
  const int64_t* seen = visible.data_ptr<int64_t>();
  for (int64_t p = 0; p < run.shape.n; ++p)
    TORCH_CHECK(seen[p] >= 0 && seen[p] <= run.shape.len, "visible counts must lie in [0, keys]");
  run.shape.seen = seen;
  auto out = at::empty(q.sizes(), q.options());
  auto lse = at::empty({run.shape.n, run.shape.heads}, q.options());
  attend(q, run, out.data_ptr<float>(), lse.data_ptr<float>());
  return {out, lse};
}

}  // namespace
}  // namespace asynclm

TORCH_LIBRARY_FRAGMENT(asynclm, m) {
  m.def(
      "causal_attention(Tensor q, Tensor kv, int layer, int lo, int hi, int kv_heads, "
      "float scale) -> Tensor",
      &asynclm::causal_attention);
  m.def(
      "prefix_attention(Tensor q, Tensor kv, int layer, int lo, int hi, int kv_heads, "
      "float scale, Tensor visible) -> (Tensor, Tensor)",
      &asynclm::prefix_attention);
}
