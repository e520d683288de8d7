/*
 * The integer loops of Pillow's 8-bit BICUBIC resample (Resample.c, ImagingResampleHorizontal_8bpc
 * and ImagingResampleVertical_8bpc) for packed RGB, built by build.sh into resample.wasm (no JS
 * glue; SIMD where clang vectorises). The taps (first input, count, 22-bit fixed-point weights) are
 * computed by ../pillow-bicubic.ts exactly as Pillow computes them; only the multiply-adds run
 * here, in 32-bit integers as in Pillow, so the output is bit for bit the TypeScript port's.
 */
#include <stdint.h>
#include <stdlib.h>

#define EXPORT __attribute__((used, visibility("default")))
/* The native build (../../native/clip_native.c) defines this to compile the vertical pass for AVX2
   as well, chosen at load time: 2.3x faster there; the same integer results either way. */
#ifndef RS_CLONES
#define RS_CLONES
#endif
#define PRECISION_BITS (32 - 8 - 2)

static inline uint8_t clip8(int32_t in) {
  if (in >= (1 << (PRECISION_BITS + 8))) return 255;
  if (in <= 0) return 0;
  return (uint8_t)(in >> PRECISION_BITS);
}

EXPORT void *rs_malloc(size_t n) { return malloc(n); }
EXPORT void rs_free(void *p) { free(p); }

/* Input rows [first_row, last_row) of `src` (src_width pixels wide) → `out_width` pixels each. */
EXPORT void rs_horizontal(const uint8_t *src, int src_width, int first_row, int last_row,
                          int out_width, const int32_t *start, const int32_t *len,
                          const int32_t *weights, int stride, uint8_t *out) {
  const int half = 1 << (PRECISION_BITS - 1);
  for (int y = first_row; y < last_row; y++) {
    const uint8_t *row = src + (size_t)y * src_width * 3;
    for (int x = 0; x < out_width; x++) {
      const int32_t *k = weights + (size_t)x * stride;
      const uint8_t *p = row + (size_t)start[x] * 3;
      int32_t r = half, g = half, b = half;
      for (int t = 0, n = len[x]; t < n; t++, p += 3) {
        r += p[0] * k[t];
        g += p[1] * k[t];
        b += p[2] * k[t];
      }
      *out++ = clip8(r);
      *out++ = clip8(g);
      *out++ = clip8(b);
    }
  }
}

/* `src` holds rows of `row_bytes` starting at input row `first_row`; `out_height` rows out. */
EXPORT RS_CLONES void rs_vertical(const uint8_t *restrict src, int row_bytes, int first_row,
                        int out_height, const int32_t *start, const int32_t *len,
                        const int32_t *weights, int stride, int32_t *restrict acc,
                        uint8_t *restrict out) {
  const int half = 1 << (PRECISION_BITS - 1);
  for (int y = 0; y < out_height; y++) {
    const int32_t *k = weights + (size_t)y * stride;
    for (int c = 0; c < row_bytes; c++) acc[c] = half;
    for (int t = 0, n = len[y]; t < n; t++) {
      const uint8_t *row = src + (size_t)(start[y] - first_row + t) * row_bytes;
      const int32_t w = k[t];
      for (int c = 0; c < row_bytes; c++) acc[c] += row[c] * w;
    }
    for (int c = 0; c < row_bytes; c++) *out++ = clip8(acc[c]);
  }
}
