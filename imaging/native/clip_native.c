/*
 * The gpu-node's CPU-heavy preprocessing in native code, as a Node-API addon (see clip-native.ts):
 * the plain-JPEG decode and Pillow's BICUBIC multiply-adds. build.sh builds it into
 * clip-native.linux-x64.node with libjpeg-turbo linked in statically, its x86 SIMD included.
 *
 * Same bytes as the WASM builds, by construction:
 * - decode: the settings of ../jpeg/jpeg_wasm.c (ISLOW IDCT, fancy upsampling, RGB out, the same
 *   tolerated warnings) on the same libjpeg-turbo release; its SIMD routines for these settings
 *   are bit-exact with its C ones (checked against sharp once per process, clip-native.ts).
 * - resize: ../resample/wasm/resample.c itself, included below: integer arithmetic only.
 *
 * Why by hand: on the GPU host the WASM decode was most of a process's CPU per image, and WASM
 * has no SIMD build of libjpeg-turbo; sharp adds ~1 ms of pipeline per call; the libjpeg-turbo
 * bindings on npm decode with the fast, inexact IDCT (not the reference's bytes).
 *
 * Exports, all synchronous (0.1-0.3 ms an image: a thread-pool hop would cost more than it saves):
 *   decode(jpeg: Uint8Array, out: Uint8Array, memLimit: number, region?: Int32Array)
 *     -> { width, height, left, top, cols, rows } | { failure, message }
 *     packed RGB into `out`, or why not: `failure` is "corrupt", "unsupported" or "too_large" (it
 *     would not fit `out`, or libjpeg's buffers would pass memLimit bytes), `message` libjpeg's.
 *     `region` [x0, x1, y0, y1] asks only for those columns and rows (libjpeg-turbo's
 *     jpeg_crop_scanline and jpeg_skip_scanlines; it stops after the last row): `out` then holds
 *     `rows` rows of `cols` pixels from (left, top), which cover the region with a pixel to spare
 *     on each side, since the fancy upsamplers treat the edges of a crop as the image's edges.
 *     width and height are the whole image's. Only arguments of the wrong type throw (TypeError).
 *   horizontal(src, srcWidth, firstRow, lastRow, outWidth, start, len, weights, stride, out, simd?)
 *   vertical(src, rowBytes, firstRow, outHeight, start, len, weights, stride, acc, out, simd?)
 *     resample.c's two passes on typed arrays (no copies); bicubic-native.ts checks the bounds.
 *     The horizontal pass runs on AVX-512 (with VBMI and VNNI), else AVX2, else SSE4.1, else
 *     resample.c's scalar loop, the vertical pass on AVX-512 (VNNI), else AVX2, else resample.c's
 *     loop; `simd` (3, 2, 1 or 0) caps that choice. Every level gives the same bytes.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

/* AVX2 where the CPU has it (glibc's ifunc picks at load), SSE2 elsewhere. */
#define RS_CLONES __attribute__((target_clones("avx2", "default")))
#include "../resample/wasm/resample.c"

#include <immintrin.h>

/* Output pixel `x` of input row `y` by rs_horizontal's own scalar loop (one pixel's taps): the
   SIMD passes' edge cases. */
static inline void horizontal_pixel(const uint8_t *src, int src_width, int y, int x,
                                    const int32_t *start, const int32_t *len,
                                    const int32_t *weights, int stride, uint8_t *out) {
  rs_horizontal(src, src_width, y, y + 1, 1, start + x, len + x, weights + (size_t)x * stride,
                stride, out);
}

/* Taps 2j and 2j+1 of output pixel `x`, zero past its own taps, each 22-bit weight split into
   w = hi * 2048 + lo (lo in 0..2047, hi a 16-bit signed value) for 16-bit multiply-adds. */
static inline void split_pair(const int32_t *len, const int32_t *weights, int stride, int x,
                              int j, int16_t lo[2], int16_t hi[2]) {
  const int32_t *k = weights + (size_t)x * stride;
  for (int i = 0; i < 2; i++) {
    const int32_t w = 2 * j + i < len[x] ? k[2 * j + i] : 0;
    lo[i] = (int16_t)(w & 2047);
    hi[i] = (int16_t)(w >> 11);
  }
}

/*
 * rs_horizontal with SSSE3/SSE4.1's 16-bit multiply-adds: two taps of all three channels in one
 * `pmaddwd`. Each 22-bit weight is split into w = hi * 2048 + lo (lo in 0..2047, hi a 16-bit
 * signed value), the two partial sums are taken separately and recombined as hi_sum * 2048 +
 * lo_sum: exact integer arithmetic, so the same int32 sum as rs_horizontal and the same bytes.
 * About half its CPU. A pair of taps loads 8 bytes (up to 5 past the last tap's pixel, under a
 * zero weight); on the last row, outputs whose taps end within two pixels of the row's end take
 * the scalar loop so that nothing is read past the buffer.
 */
__attribute__((target("ssse3,sse4.1"))) static int horizontal_madd(
    const uint8_t *src, int src_width, int first_row, int last_row, int out_width,
    const int32_t *start, const int32_t *len, const int32_t *weights, int stride, uint8_t *out) {
  const int pairs = (stride + 1) / 2;
  __m128i *table = aligned_alloc(16, sizeof(__m128i) * 2 * (size_t)pairs * (size_t)out_width);
  if (!table) return 0;
  for (int x = 0; x < out_width; x++) {
    for (int j = 0; j < pairs; j++) {
      int16_t lo[2], hi[2];
      split_pair(len, weights, stride, x, j, lo, hi);
      __m128i *t = table + 2 * ((size_t)x * pairs + j);
      t[0] = _mm_setr_epi16(lo[0], lo[1], lo[0], lo[1], lo[0], lo[1], 0, 0);
      t[1] = _mm_setr_epi16(hi[0], hi[1], hi[0], hi[1], hi[0], hi[1], 0, 0);
    }
  }
  /* [r0 g0 b0 r1 g1 b1 . .] -> 16-bit lanes [r0 r1 g0 g1 b0 b1 0 0] */
  const __m128i order = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m128i half = _mm_set1_epi32(1 << (PRECISION_BITS - 1));
  for (int y = first_row; y < last_row; y++) {
    const uint8_t *row = src + (size_t)y * src_width * 3;
    const int last = y == last_row - 1;
    for (int x = 0; x < out_width; x++, out += 3) {
      const int n = len[x];
      if (last && start[x] + n + 2 > src_width) {
        horizontal_pixel(src, src_width, y, x, start, len, weights, stride, out);
        continue;
      }
      const uint8_t *p = row + (size_t)start[x] * 3;
      const __m128i *t = table + 2 * (size_t)x * pairs;
      __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
      for (int j = 0, m = (n + 1) / 2; j < m; j++, p += 6, t += 2) {
        const __m128i v = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)p), order);
        lo = _mm_add_epi32(lo, _mm_madd_epi16(v, t[0]));
        hi = _mm_add_epi32(hi, _mm_madd_epi16(v, t[1]));
      }
      const __m128i sum = _mm_add_epi32(_mm_add_epi32(half, lo), _mm_slli_epi32(hi, 11));
      // clip8 in SIMD: >> 22, then saturate to 0..255 (negative to 0, >= 256 to 255).
      const __m128i px = _mm_srai_epi32(sum, PRECISION_BITS);
      const int32_t rgb = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(px, px), px));
      memcpy(out, &rgb, 3);
    }
  }
  free(table);
  return 1;
}

/*
 * horizontal_madd on AVX2: two output pixels at once, one in each 128-bit lane, with the same
 * multiply-adds and the same exact hi/lo recombination. Every pixel's weights are padded with
 * zeros to `stride`, so both lanes take max(their pairs) steps; the extra loads lie under zero
 * weights. On the last row a pixel pair whose loads could pass the end of the buffer, and an odd
 * last pixel on every row, take the scalar loop. The horizontal pass was two thirds of the
 * 256-px resize (0.19 of 0.28 ms on the 2-core machine).
 */
__attribute__((target("avx2"))) static int horizontal_madd_avx2(
    const uint8_t *src, int src_width, int first_row, int last_row, int out_width,
    const int32_t *start, const int32_t *len, const int32_t *weights, int stride, uint8_t *out) {
  const int pairs = (stride + 1) / 2;
  const int duos = out_width / 2;
  __m256i *table = aligned_alloc(32, sizeof(__m256i) * 2 * (size_t)pairs * (size_t)(duos + 1));
  if (!table) return 0;
  int *steps = malloc(sizeof(int) * (size_t)(duos + 1));
  if (!steps) {
    free(table);
    return 0;
  }
  for (int d = 0; d < duos; d++) {
    int16_t lo[2][2], hi[2][2];
    for (int j = 0; j < pairs; j++) {
      for (int l = 0; l < 2; l++) split_pair(len, weights, stride, 2 * d + l, j, lo[l], hi[l]);
      __m256i *t = table + 2 * ((size_t)d * pairs + j);
      t[0] = _mm256_setr_epi16(lo[0][0], lo[0][1], lo[0][0], lo[0][1], lo[0][0], lo[0][1], 0, 0,
                               lo[1][0], lo[1][1], lo[1][0], lo[1][1], lo[1][0], lo[1][1], 0, 0);
      t[1] = _mm256_setr_epi16(hi[0][0], hi[0][1], hi[0][0], hi[0][1], hi[0][0], hi[0][1], 0, 0,
                               hi[1][0], hi[1][1], hi[1][0], hi[1][1], hi[1][0], hi[1][1], 0, 0);
    }
    const int m0 = (len[2 * d] + 1) / 2, m1 = (len[2 * d + 1] + 1) / 2;
    steps[d] = m0 > m1 ? m0 : m1;
  }
  /* per lane: [r0 g0 b0 r1 g1 b1 . .] -> 16-bit [r0 r1 g0 g1 b0 b1 0 0] */
  const __m256i order =
      _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1, 0, -1, 3, -1, 1,
                       -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
  for (int y = first_row; y < last_row; y++) {
    const uint8_t *row = src + (size_t)y * src_width * 3;
    const int last = y == last_row - 1;
    for (int d = 0; d < duos; d++, out += 6) {
      const int x0 = 2 * d, x1 = x0 + 1, m = steps[d];
      /* A lane's loads reach 3 * (start + 2m) + 2 bytes into the row. */
      if (last && (start[x0] + 2 * m + 1 > src_width || start[x1] + 2 * m + 1 > src_width)) {
        horizontal_pixel(src, src_width, y, x0, start, len, weights, stride, out);
        horizontal_pixel(src, src_width, y, x1, start, len, weights, stride, out + 3);
        continue;
      }
      const uint8_t *p0 = row + (size_t)start[x0] * 3, *p1 = row + (size_t)start[x1] * 3;
      const __m256i *t = table + 2 * (size_t)d * pairs;
      __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
      for (int j = 0; j < m; j++, p0 += 6, p1 += 6, t += 2) {
        const __m256i v = _mm256_shuffle_epi8(
            _mm256_set_m128i(_mm_loadl_epi64((const __m128i *)p1),
                             _mm_loadl_epi64((const __m128i *)p0)),
            order);
        lo = _mm256_add_epi32(lo, _mm256_madd_epi16(v, t[0]));
        hi = _mm256_add_epi32(hi, _mm256_madd_epi16(v, t[1]));
      }
      const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(half, lo), _mm256_slli_epi32(hi, 11));
      const __m256i px = _mm256_srai_epi32(sum, PRECISION_BITS);
      const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(px, px), px);
      const int32_t rgb0 = _mm256_extract_epi32(bytes, 0), rgb1 = _mm256_extract_epi32(bytes, 4);
      memcpy(out, &rgb0, 3);
      memcpy(out + 3, &rgb1, 3);
    }
    if (out_width & 1) {
      horizontal_pixel(src, src_width, y, out_width - 1, start, len, weights, stride, out);
      out += 3;
    }
  }
  free(steps);
  free(table);
  return 1;
}

/* A 22-bit weight's three 8-bit parts, w = w2 * 65536 + w1 * 256 + w0 (each in -128..127, for
   vpdpbusd's signed bytes); 0 when w2 does not fit. */
static int split_bytes(int32_t w, int8_t part[3]) {
  const int32_t w0 = ((w + 128) & 255) - 128;
  const int32_t r = (w - w0) / 256;
  const int32_t w1 = ((r + 128) & 255) - 128;
  const int32_t w2 = (r - w1) / 256;
  if (w2 < -128 || w2 > 127) return 0;
  part[0] = (int8_t)w0;
  part[1] = (int8_t)w1;
  part[2] = (int8_t)w2;
  return 1;
}

/* The AVX-512 subsets both AVX-512 passes are built for (has_avx512 checks them at run time). */
#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vnni"
#define H512_OUTS 5
#define H512_SPAN 21 /* pixels one 64-byte load holds */
struct h512_quad {
  __m512i idx, w0, w1, w2; /* per four taps: byte indices, the weights' three 8-bit parts */
};

/* horizontal_avx512's rows (below), once its table is built (inlined for each constant `quads`). */
__attribute__((target(AVX512_TARGET), always_inline)) static inline void
h512_rows(const uint8_t *src, int src_width, int first_row, int last_row, int out_width,
          const struct h512_quad *table, const int *base, int groups, const int quads,
          uint8_t *out) {
  const __m512i half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
  const __m512i zero = _mm512_setzero_si512();
  const uint8_t *end = src + (size_t)last_row * src_width * 3;
  for (int y = first_row; y < last_row; y++) {
    const uint8_t *row = src + (size_t)y * src_width * 3;
    for (int g = 0; g < groups; g++, out += 3 * H512_OUTS) {
      const uint8_t *p = row + (size_t)base[g] * 3;
      /* Near the end of the buffer a masked load reads only what is there (no fault). */
      const __m512i v = p + 64 <= end ? _mm512_loadu_si512(p)
                                      : _mm512_maskz_loadu_epi8((1ULL << (end - p)) - 1, p);
      const struct h512_quad *e = table + (size_t)g * quads;
      __m512i s0 = zero, s1 = zero, s2 = zero;
      for (int q = 0; q < quads; q++, e++) {
        const __m512i px = _mm512_permutexvar_epi8(e->idx, v);
        s0 = _mm512_dpbusd_epi32(s0, px, e->w0);
        s1 = _mm512_dpbusd_epi32(s1, px, e->w1);
        s2 = _mm512_dpbusd_epi32(s2, px, e->w2);
      }
      const __m512i sum = _mm512_add_epi32(
          _mm512_add_epi32(half, s0),
          _mm512_add_epi32(_mm512_slli_epi32(s1, 8), _mm512_slli_epi32(s2, 16)));
      /* clip8: >> 22, negative to 0, then unsigned saturation to 255. */
      const __m512i px = _mm512_max_epi32(_mm512_srai_epi32(sum, PRECISION_BITS), zero);
      const int n = out_width - g * H512_OUTS < H512_OUTS ? out_width - g * H512_OUTS : H512_OUTS;
      _mm_mask_storeu_epi8(out, (__mmask16)((1u << (3 * n)) - 1), _mm512_cvtusepi32_epi8(px));
    }
    out -= 3 * (groups * H512_OUTS - out_width); /* the last group's missing outputs */
  }
}

/*
 * The horizontal pass on AVX-512 (VBMI byte permutes, VNNI byte dot products): five output pixels
 * per step. One 64-byte load covers every tap of five neighbouring outputs (their taps span at
 * most 21 pixels, which holds for the downscales of up to ~2x this path serves); one `vpermb` per
 * four taps lays those bytes out as 15 channel sums (the five pixels' RGB, in order) of four taps
 * each, and `vpdpbusd` multiplies each pixel byte by an 8-bit part of its weight and adds the four
 * products into a 32-bit sum. Each 22-bit weight w is split as w = w2 * 65536 + w1 * 256 + w0
 * (every part in -128..127), the three sums are taken apart and recombined with shifts: exact
 * integer arithmetic (int32 wrap-around included, since the true sum fits), so the same bytes as
 * rs_horizontal. About 40% of the AVX2 pass's CPU (46-52 against 109-116 µs for 256 rows), which
 * spent most of it shuffling two pixels at a time. Answers 0 (the caller falls back) when five
 * outputs' taps do not fit one load, a weight does not split so, or memory is short. The table is
 * built on every call (~5 µs for a 224-px window): the taps arrive as typed arrays, and keeping a
 * table across calls would need per-thread state keyed on their contents.
 */
__attribute__((target(AVX512_TARGET))) static int horizontal_avx512(
    const uint8_t *src, int src_width, int first_row, int last_row, int out_width,
    const int32_t *start, const int32_t *len, const int32_t *weights, int stride, uint8_t *out) {
  const int quads = (stride + 3) / 4;
  const int groups = (out_width + H512_OUTS - 1) / H512_OUTS;
  struct h512_quad *table =
      aligned_alloc(64, sizeof(struct h512_quad) * (size_t)quads * (size_t)groups);
  int *base = malloc(sizeof(int) * (size_t)groups);
  if (!table || !base) goto refuse;
  for (int g = 0; g < groups; g++) {
    const int x0 = g * H512_OUTS;
    const int n = out_width - x0 < H512_OUTS ? out_width - x0 : H512_OUTS;
    int b = start[x0];
    for (int o = 1; o < n; o++) b = start[x0 + o] < b ? start[x0 + o] : b;
    for (int o = 0; o < n; o++)
      if (start[x0 + o] - b + len[x0 + o] > H512_SPAN || len[x0 + o] > stride) goto refuse;
    base[g] = b;
    for (int q = 0; q < quads; q++) {
      uint8_t idx[64] = {0};
      int8_t w[3][64] = {{0}};
      for (int o = 0; o < n; o++) {
        const int x = x0 + o;
        const int32_t *k = weights + (size_t)x * stride;
        for (int i = 0; i < 4; i++) {
          const int t = 4 * q + i;
          if (t >= len[x]) continue; /* weight 0, index 0: reads a byte that is there */
          int8_t part[3];
          if (!split_bytes(k[t], part)) goto refuse;
          for (int ch = 0; ch < 3; ch++) {
            const int byte = 4 * (3 * o + ch) + i; /* sum 3o+ch, its i-th tap of this quad */
            idx[byte] = (uint8_t)(3 * (start[x] - b + t) + ch);
            for (int j = 0; j < 3; j++) w[j][byte] = part[j];
          }
        }
      }
      struct h512_quad *e = table + (size_t)g * quads + q;
      e->idx = _mm512_loadu_si512(idx);
      e->w0 = _mm512_loadu_si512(w[0]);
      e->w1 = _mm512_loadu_si512(w[1]);
      e->w2 = _mm512_loadu_si512(w[2]);
    }
  }
  /* A constant count of quads lets the compiler unroll the taps' loop and keep the sums in
     registers (the general loop spent as many moves as multiply-adds). */
  switch (quads) {
    case 1:
      h512_rows(src, src_width, first_row, last_row, out_width, table, base, groups, 1, out);
      break;
    case 2:
      h512_rows(src, src_width, first_row, last_row, out_width, table, base, groups, 2, out);
      break;
    case 3:
      h512_rows(src, src_width, first_row, last_row, out_width, table, base, groups, 3, out);
      break;
    default:
      h512_rows(src, src_width, first_row, last_row, out_width, table, base, groups, quads, out);
  }
  free(base);
  free(table);
  return 1;
refuse:
  free(base);
  free(table);
  return 0;
}

/*
 * rs_vertical with its sums in AVX2 registers: 32 bytes of an output row at a time, all of that
 * row's taps added before the next 32 bytes. rs_vertical adds each tap across the whole row into
 * an int32 array in memory, loading and storing it once per tap; here the array is gone. The
 * products and sums are the same int32 arithmetic, so the bytes are the same: clip8 is the shift
 * and two saturating packs (after the shift a sum lies within +-512, which int16 holds). A row's
 * last row_bytes % 32 bytes take the scalar loop. The vertical pass was 0.10 of the 0.23 ms a
 * 256-px resize took on the 2-core machine.
 */
__attribute__((target("avx2"))) static void vertical_avx2(
    const uint8_t *src, int row_bytes, int first_row, int out_height, const int32_t *start,
    const int32_t *len, const int32_t *weights, int stride, uint8_t *out) {
  const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
  /* packs and packus work within 128-bit lanes: this puts the four 8-byte groups back in order. */
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const int whole = row_bytes - row_bytes % 32;
  for (int y = 0; y < out_height; y++, out += row_bytes) {
    const int32_t *k = weights + (size_t)y * stride;
    const uint8_t *rows = src + (size_t)(start[y] - first_row) * row_bytes;
    const int n = len[y];
    for (int c = 0; c < whole; c += 32) {
      __m256i s0 = half, s1 = half, s2 = half, s3 = half;
      const uint8_t *p = rows + c;
      for (int t = 0; t < n; t++, p += row_bytes) {
        const __m256i w = _mm256_set1_epi32(k[t]);
#define RS_TAP(s, o) \
  s = _mm256_add_epi32(                                                                      \
      s, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + o))), w))
        RS_TAP(s0, 0);
        RS_TAP(s1, 8);
        RS_TAP(s2, 16);
        RS_TAP(s3, 24);
#undef RS_TAP
      }
      const __m256i lo = _mm256_packs_epi32(_mm256_srai_epi32(s0, PRECISION_BITS),
                                            _mm256_srai_epi32(s1, PRECISION_BITS));
      const __m256i hi = _mm256_packs_epi32(_mm256_srai_epi32(s2, PRECISION_BITS),
                                            _mm256_srai_epi32(s3, PRECISION_BITS));
      _mm256_storeu_si256((__m256i *)(out + c),
                          _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), order));
    }
    for (int c = whole; c < row_bytes; c++) {
      int32_t sum = 1 << (PRECISION_BITS - 1);
      for (int t = 0; t < n; t++) sum += rows[(size_t)t * row_bytes + c] * k[t];
      out[c] = clip8(sum);
    }
  }
}

/*
 * The vertical pass on AVX-512 VNNI: 64 bytes of an output row at a time, four taps per step. The
 * same bytes of four input rows are interleaved into 32-bit lanes (two rounds of unpacks), and
 * `vpdpbusd` multiplies them by the three 8-bit parts of the four weights (split_bytes) and adds
 * the four products. The unpacks work within 128-bit lanes and the packs at the end undo them lane
 * by lane, so the bytes come out in order; the arithmetic is exact, so the bytes are rs_vertical's.
 * A row's last row_bytes % 64 bytes go through masked loads and stores. Answers 0 when a weight
 * does not split so or an output row has more than V512_MAX_QUADS * 4 taps: the caller's fallback
 * then writes every row again.
 */
#define V512_MAX_QUADS 8
__attribute__((target(AVX512_TARGET))) static int vertical_avx512(
    const uint8_t *src, int row_bytes, int first_row, int out_height, const int32_t *start,
    const int32_t *len, const int32_t *weights, int stride, uint8_t *out) {
  const __m512i half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1));
  for (int y = 0; y < out_height; y++, out += row_bytes) {
    const int32_t *k = weights + (size_t)y * stride;
    const int n = len[y], quads = (n + 3) / 4;
    if (n < 1 || quads > V512_MAX_QUADS) return 0;
    const uint8_t *rows[V512_MAX_QUADS][4];
    __m512i w[V512_MAX_QUADS][3];
    for (int q = 0; q < quads; q++) {
      uint32_t part[3] = {0, 0, 0};
      for (int i = 0; i < 4; i++) {
        const int t = 4 * q + i;
        /* A tap past the row's last is the last row again, under a zero weight. */
        rows[q][i] = src + (size_t)(start[y] - first_row + (t < n ? t : n - 1)) * row_bytes;
        if (t >= n) continue;
        int8_t bytes[3];
        if (!split_bytes(k[t], bytes)) return 0;
        for (int j = 0; j < 3; j++) part[j] |= (uint32_t)(uint8_t)bytes[j] << (8 * i);
      }
      for (int j = 0; j < 3; j++) w[q][j] = _mm512_set1_epi32((int32_t)part[j]);
    }
    for (int c = 0; c < row_bytes; c += 64) {
      const int rest = row_bytes - c;
      const __mmask64 m = rest >= 64 ? ~0ULL : (1ULL << rest) - 1;
      __m512i s[4][3];
      for (int v = 0; v < 4; v++)
        for (int j = 0; j < 3; j++) s[v][j] = _mm512_setzero_si512();
      for (int q = 0; q < quads; q++) {
        const __m512i a = _mm512_maskz_loadu_epi8(m, rows[q][0] + c);
        const __m512i b = _mm512_maskz_loadu_epi8(m, rows[q][1] + c);
        const __m512i cc = _mm512_maskz_loadu_epi8(m, rows[q][2] + c);
        const __m512i d = _mm512_maskz_loadu_epi8(m, rows[q][3] + c);
        const __m512i ab_lo = _mm512_unpacklo_epi8(a, b), ab_hi = _mm512_unpackhi_epi8(a, b);
        const __m512i cd_lo = _mm512_unpacklo_epi8(cc, d), cd_hi = _mm512_unpackhi_epi8(cc, d);
        const __m512i px[4] = {
            _mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_unpackhi_epi16(ab_lo, cd_lo),
            _mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_unpackhi_epi16(ab_hi, cd_hi)};
        for (int v = 0; v < 4; v++)
          for (int j = 0; j < 3; j++) s[v][j] = _mm512_dpbusd_epi32(s[v][j], px[v], w[q][j]);
      }
      __m512i px[4];
      for (int v = 0; v < 4; v++) {
        const __m512i sum = _mm512_add_epi32(
            _mm512_add_epi32(half, s[v][0]),
            _mm512_add_epi32(_mm512_slli_epi32(s[v][1], 8), _mm512_slli_epi32(s[v][2], 16)));
        px[v] = _mm512_srai_epi32(sum, PRECISION_BITS);
      }
      /* After the shift a sum lies within +-512: the signed pack holds it, the unsigned one is
         clip8's saturation. Lane by lane this is the unpacks' order undone. */
      const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(px[0], px[1]),
                                                _mm512_packs_epi32(px[2], px[3]));
      _mm512_mask_storeu_epi8(out + c, m, bytes);
    }
  }
  return 1;
}

#include "jerror.h"
#include "jpeglib.h"

#include "../jpeg/jpeg_policy.h"

static const char *const KIND_NAMES[] = {"corrupt", "unsupported", "too_large"};

struct failure {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  int kind;
  char message[JMSG_LENGTH_MAX];
};

static void fail(j_common_ptr cinfo) {
  struct failure *f = (struct failure *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, f->message);
  f->kind = kind_of(cinfo->err->msg_code);
  longjmp(f->jump, 1);
}

static void emit(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return; /* trace messages */
  if (tolerated_warning(cinfo->err->msg_code)) return;
  fail(cinfo);
}

static void quiet(j_common_ptr cinfo) { (void)cinfo; }

/* A failed decode is an answer, not an exception: errors thrown from native code grew the
   process's RSS by ~0.5 KB each (up to ~140 MB over 500,000 refusals, measured), and the caller
   only needs the kind and libjpeg's message. */
static napi_value failure_of(napi_env env, int kind, const char *message) {
  napi_value result, msg, code;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, KIND_NAMES[kind], NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, result, "failure", code);
  napi_set_named_property(env, result, "message", msg);
  return result;
}

/* A typed array of type `want`: its data and (when asked) its element count. */
static int typed_of(napi_env env, napi_value value, napi_typedarray_type want, void **data,
                    size_t *count) {
  bool is_typed;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return 0;
  napi_typedarray_type type;
  size_t n;
  if (napi_get_typedarray_info(env, value, &type, &n, data, NULL, NULL) != napi_ok) return 0;
  if (count) *count = n;
  return type == want;
}

/* Kept off decode's frame: setjmp/longjmp leave locals modified after setjmp indeterminate. */
struct job {
  struct jpeg_decompress_struct dinfo;
  struct failure err;
  JDIMENSION left, cols, top, bottom; /* the part decoded */
};

static napi_value decode(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, NULL, "decode(jpeg, out, memLimit, region?)");
    return NULL;
  }
  void *in_data, *out_data, *region_data = NULL;
  size_t in_len, out_len, region_len = 0;
  double mem_limit;
  napi_valuetype fourth = napi_undefined;
  if (argc > 3) napi_typeof(env, argv[3], &fourth);
  if (!typed_of(env, argv[0], napi_uint8_array, &in_data, &in_len) ||
      !typed_of(env, argv[1], napi_uint8_array, &out_data, &out_len) ||
      napi_get_value_double(env, argv[2], &mem_limit) != napi_ok ||
      (fourth != napi_undefined &&
       (!typed_of(env, argv[3], napi_int32_array, &region_data, &region_len) ||
        region_len != 4))) {
    napi_throw_type_error(env, NULL,
                          "decode(jpeg: Uint8Array, out: Uint8Array, memLimit: number, "
                          "region?: Int32Array [x0, x1, y0, y1])");
    return NULL;
  }
  const int32_t *region = region_data;
  uint8_t *in = in_data, *out = out_data;
  /* On the heap: worker threads may each load this addon, and locals changed between setjmp
     and longjmp would be indeterminate afterwards. */
  struct job *volatile j = calloc(1, sizeof(struct job));
  if (!j) return failure_of(env, KIND_TOO_LARGE, "out of memory");
  j->dinfo.err = jpeg_std_error(&j->err.mgr);
  j->err.mgr.error_exit = fail;
  j->err.mgr.emit_message = emit;
  j->err.mgr.output_message = quiet;
  jpeg_create_decompress(&j->dinfo);
  if (setjmp(j->err.jump)) {
    jpeg_destroy_decompress(&j->dinfo);
    napi_value failed = failure_of(env, j->err.kind, j->err.message);
    free(j);
    return failed;
  }
  jpeg_mem_src(&j->dinfo, in, (unsigned long)in_len);
  jpeg_read_header(&j->dinfo, TRUE);
  j->dinfo.dct_method = JDCT_ISLOW;
  j->dinfo.do_fancy_upsampling = TRUE;
  j->dinfo.mem->max_memory_to_use = (long)mem_limit;
  if (j->dinfo.jpeg_color_space == JCS_CMYK || j->dinfo.jpeg_color_space == JCS_YCCK) {
    snprintf(j->err.message, sizeof(j->err.message), "CMYK JPEGs are not decoded here");
    j->err.kind = KIND_UNSUPPORTED;
    longjmp(j->err.jump, 1);
  }
  j->dinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&j->dinfo);
  const JDIMENSION width = j->dinfo.output_width, height = j->dinfo.output_height;
  /* Kept in the job: locals changed after setjmp are indeterminate after a longjmp. */
  j->left = 0;
  j->cols = width;
  j->top = 0;
  j->bottom = height;
  if (region && region[0] >= 0 && region[0] < region[1] && region[2] >= 0 &&
      region[2] < region[3]) {
    const JDIMENSION x0 = region[0] > 0 ? (JDIMENSION)region[0] - 1 : 0;
    const JDIMENSION x1 = (JDIMENSION)region[1] + 1 < width ? (JDIMENSION)region[1] + 1 : width;
    const JDIMENSION y0 = region[2] > 0 ? (JDIMENSION)region[2] - 1 : 0;
    const JDIMENSION y1 = (JDIMENSION)region[3] + 1 < height ? (JDIMENSION)region[3] + 1 : height;
    if (x0 < x1 && y0 < y1) {
      /* Widened to whole iMCU columns by libjpeg-turbo: left may move left, cols grow. */
      if (x0 > 0 || x1 < width) {
        j->left = x0;
        j->cols = x1 - x0;
        jpeg_crop_scanline(&j->dinfo, &j->left, &j->cols);
      }
      j->top = y0;
      j->bottom = y1;
    }
  }
  size_t row = (size_t)j->cols * 3;
  if (row * (size_t)(j->bottom - j->top) > out_len) {
    snprintf(j->err.message, sizeof(j->err.message), "a %ux%u image does not fit %zu bytes",
             j->cols, j->bottom - j->top, out_len);
    j->err.kind = KIND_TOO_LARGE;
    longjmp(j->err.jump, 1);
  }
  if (j->top > 0 && jpeg_skip_scanlines(&j->dinfo, j->top) != j->top) {
    snprintf(j->err.message, sizeof(j->err.message), "could not skip to row %u", j->top);
    j->err.kind = KIND_CORRUPT;
    longjmp(j->err.jump, 1);
  }
  while (j->dinfo.output_scanline < j->bottom) {
    JSAMPROW rows[8];
    JDIMENSION n = 0;
    for (; n < 8 && j->dinfo.output_scanline + n < j->bottom; n++)
      rows[n] = out + row * (j->dinfo.output_scanline + n - j->top);
    jpeg_read_scanlines(&j->dinfo, rows, n);
  }
  /* Rows past the region are never decoded: abort rather than finish. */
  if (j->bottom < height)
    jpeg_abort_decompress(&j->dinfo);
  else
    jpeg_finish_decompress(&j->dinfo);
  napi_value result, v;
  napi_create_object(env, &result);
  const uint32_t fields[6] = {width, height, j->left, j->top, j->cols, j->bottom - j->top};
  static const char *const names[6] = {"width", "height", "left", "top", "cols", "rows"};
  for (int i = 0; i < 6; i++) {
    napi_create_uint32(env, fields[i], &v);
    napi_set_named_property(env, result, names[i], v);
  }
  jpeg_destroy_decompress(&j->dinfo);
  free(j);
  return result;
}

/* AVX512_TARGET's subsets on this CPU, with the OS's support (libgcc checks XCR0). */
static int has_avx512(void) {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
         __builtin_cpu_supports("avx512vnni");
}

static int int_of(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}


/* horizontal(src, srcWidth, firstRow, lastRow, outWidth, start, len, weights, stride, out,
   simd?): `simd` caps the instruction set (2 AVX2, the default; 1 SSE4.1; 0 the scalar loop), so
   that tests on an AVX2 machine check the other passes' bytes too. */
static napi_value horizontal(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value a[11];
  void *src, *start, *len, *weights, *out;
  int32_t src_width, first_row, last_row, out_width, stride;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 10 ||
      !typed_of(env, a[0], napi_uint8_array, &src, NULL) || !int_of(env, a[1], &src_width) ||
      !int_of(env, a[2], &first_row) || !int_of(env, a[3], &last_row) ||
      !int_of(env, a[4], &out_width) || !typed_of(env, a[5], napi_int32_array, &start, NULL) ||
      !typed_of(env, a[6], napi_int32_array, &len, NULL) ||
      !typed_of(env, a[7], napi_int32_array, &weights, NULL) || !int_of(env, a[8], &stride) ||
      !typed_of(env, a[9], napi_uint8_array, &out, NULL)) {
    napi_throw_type_error(env, NULL, "horizontal: bad arguments");
    return NULL;
  }
  int32_t simd = 3;
  if (argc > 10 && !int_of(env, a[10], &simd)) {
    napi_throw_type_error(env, NULL, "horizontal: simd must be 0, 1, 2 or 3");
    return NULL;
  }
  if (simd >= 3 && has_avx512() &&
      horizontal_avx512(src, src_width, first_row, last_row, out_width, start, len, weights,
                        stride, out))
    return NULL;
  if (simd >= 2 && __builtin_cpu_supports("avx2") &&
      horizontal_madd_avx2(src, src_width, first_row, last_row, out_width, start, len, weights,
                           stride, out))
    return NULL;
  if (!(simd >= 1 && __builtin_cpu_supports("sse4.1") &&
        horizontal_madd(src, src_width, first_row, last_row, out_width, start, len, weights,
                        stride, out)))
    rs_horizontal(src, src_width, first_row, last_row, out_width, start, len, weights, stride, out);
  return NULL;
}

/* vertical(src, rowBytes, firstRow, outHeight, start, len, weights, stride, acc, out, simd?):
   AVX2 where the CPU has it and `simd` (default 2) allows it, else rs_vertical (which uses acc). */
static napi_value vertical(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value a[11];
  void *src, *start, *len, *weights, *acc, *out;
  int32_t row_bytes, first_row, out_height, stride;
  if (napi_get_cb_info(env, info, &argc, a, NULL, NULL) != napi_ok || argc < 10 ||
      !typed_of(env, a[0], napi_uint8_array, &src, NULL) || !int_of(env, a[1], &row_bytes) ||
      !int_of(env, a[2], &first_row) || !int_of(env, a[3], &out_height) ||
      !typed_of(env, a[4], napi_int32_array, &start, NULL) ||
      !typed_of(env, a[5], napi_int32_array, &len, NULL) ||
      !typed_of(env, a[6], napi_int32_array, &weights, NULL) || !int_of(env, a[7], &stride) ||
      !typed_of(env, a[8], napi_int32_array, &acc, NULL) ||
      !typed_of(env, a[9], napi_uint8_array, &out, NULL)) {
    napi_throw_type_error(env, NULL, "vertical: bad arguments");
    return NULL;
  }
  int32_t simd = 3;
  if (argc > 10 && !int_of(env, a[10], &simd)) {
    napi_throw_type_error(env, NULL, "vertical: simd must be 0, 1, 2 or 3");
    return NULL;
  }
  if (simd >= 3 && has_avx512() &&
      vertical_avx512(src, row_bytes, first_row, out_height, start, len, weights, stride, out))
    return NULL;
  if (simd >= 2 && __builtin_cpu_supports("avx2"))
    vertical_avx2(src, row_bytes, first_row, out_height, start, len, weights, stride, out);
  else
    rs_vertical(src, row_bytes, first_row, out_height, start, len, weights, stride, acc, out);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"decode", NULL, decode, NULL, NULL, NULL, napi_default, NULL},
      {"horizontal", NULL, horizontal, NULL, NULL, NULL, napi_default, NULL},
      {"vertical", NULL, vertical, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
