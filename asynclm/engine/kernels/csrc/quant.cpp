// Linear layers on block-quantized weights, for the few rows of decoding.
//
// Weights are stored per output row in blocks of 32 inputs, as llama.cpp's GGUF formats do:
//   q8_0: w = d * q, q int8 in [-127, 127];            32 bytes + one float scale per block
//   q4_1: w = d * q + m, q uint4 in [0, 15];          16 bytes + scale and min per block
//         (byte j of a block holds q[j] in its low nibble and q[j + 16] in its high one)
// Activations stay float32: y[r, n] = sum_b d[n, b] * dot(x[r, b], q[n, b]) + m[n, b] * sum(x[r, b])
// is the float32 product with the dequantized weight up to summation order. Decoding reads
// every weight once per token, so a weight of 4-5 bits instead of 32 is read 6-8x faster.
//
// Built with -march=native on the machine that runs it: AVX-512 or AVX2 intrinsics where the
// CPU has them, else a plain loop the compiler vectorizes as it can.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "quant_kernels.h"

namespace asynclm {
namespace {

template <class Format>
void rows_of(const float* x, int64_t rows, int64_t ldx, const uint8_t* wq, const float* scale,
             const float* mins, const float* xsum, int64_t nblocks, float* out, int64_t ldo) {
  for (int64_t r0 = 0; r0 < rows; r0 += kRowTile) {
    const float* xr = x + r0 * ldx;
    const float* xs = xsum == nullptr ? nullptr : xsum + r0 * nblocks;
    float* o = out + r0 * ldo;
    switch (std::min<int64_t>(kRowTile, rows - r0)) {
      case 1: dot_rows<Format, 1>(xr, ldx, wq, scale, mins, xs, nblocks, o, ldo); break;
      case 2: dot_rows<Format, 2>(xr, ldx, wq, scale, mins, xs, nblocks, o, ldo); break;
      case 3: dot_rows<Format, 3>(xr, ldx, wq, scale, mins, xs, nblocks, o, ldo); break;
      default: dot_rows<Format, 4>(xr, ldx, wq, scale, mins, xs, nblocks, o, ldo); break;
    }
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                  int64_t bytes_per_block) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "x must be a contiguous float32 [rows, in_features] tensor");
  TORCH_CHECK(x.size(1) % kBlock == 0, "in_features must be a multiple of 32");
  const int64_t nblocks = x.size(1) / kBlock;
  TORCH_CHECK(qweight.is_contiguous() && qweight.dim() == 2 &&
                  qweight.size(1) == nblocks * bytes_per_block,
              "qweight must be contiguous [out_features, blocks * bytes per block]");
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous() &&
                  scales.size(0) == qweight.size(0) && scales.size(1) == nblocks,
              "scales must be contiguous float32 [out_features, blocks]");
}

template <class Format>
at::Tensor block_linear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                        const c10::optional<at::Tensor>& mins,
                        const c10::optional<at::Tensor>& bias) {
  check_inputs(x, qweight, scales, Format::kBytes);
  const int64_t rows = x.size(0), nblocks = x.size(1) / kBlock, n_out = qweight.size(0);
  auto y = at::empty({rows, n_out}, x.options());
  const float* xp = x.data_ptr<float>();
  std::vector<float> xsum;
  const float* minp = nullptr;
  if (mins.has_value()) {
    TORCH_CHECK(mins->sizes() == scales.sizes() && mins->is_contiguous() &&
                    mins->scalar_type() == at::kFloat,
                "mins must be contiguous float32 like scales");
    minp = mins->data_ptr<float>();
    xsum.resize(rows * nblocks);
    for (int64_t i = 0; i < rows * nblocks; ++i) {
      float s = 0.f;
      for (int k = 0; k < kBlock; ++k) s += xp[i * kBlock + k];
      xsum[i] = s;
    }
  }
  const uint8_t* qp = static_cast<const uint8_t*>(qweight.data_ptr());
  const float* sp = scales.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float* xs = xsum.empty() ? nullptr : xsum.data();
  const int64_t row_bytes = nblocks * Format::kBytes;
  at::parallel_for(0, n_out, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      rows_of<Format>(xp, rows, x.size(1), qp + n * row_bytes, sp + n * nblocks,
                      minp == nullptr ? nullptr : minp + n * nblocks, xs, nblocks, yp + n,
                      n_out);
  });
  if (bias.has_value()) y.add_(*bias);
  return y;
}

at::Tensor q8_0_linear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                       const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(qweight.scalar_type() == at::kChar, "q8_0 weights are int8");
  return block_linear<Q8_0>(x, qweight, scales, c10::nullopt, bias);
}

at::Tensor q4_1_linear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scales,
                       const at::Tensor& mins, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(qweight.scalar_type() == at::kByte, "q4_1 weights are uint8 (two per byte)");
  return block_linear<Q4_1>(x, qweight, scales, mins, bias);
}

}  // namespace
}  // namespace asynclm

TORCH_LIBRARY_FRAGMENT(asynclm, m) {
  m.def("q8_0_linear(Tensor x, Tensor qweight, Tensor scales, Tensor? bias=None) -> Tensor",
        &asynclm::q8_0_linear);
  m.def(
      "q4_1_linear(Tensor x, Tensor qweight, Tensor scales, Tensor mins, Tensor? bias=None) "
      "-> Tensor",
      &asynclm::q4_1_linear);
}
