/*
 * A tiny libde265 front end for the in-Worker HEIC resizer (see codec.ts). Built by build.sh into
 * hevc.wasm: a standalone module with no Emscripten JS glue. The HEIF container is parsed in
 * TypeScript (container.ts); this file decodes one HEVC image (a grid tile or a whole picture)
 * at a time and folds it, converted to RGB, into a box-reduced accumulator, so that a 48 MP grid
 * is never held at full size: only one tile is decoded at any moment.
 *
 *   hd_decode(nals, len)                 decode one picture from 4-byte-length-prefixed NAL units
 *   hd_accumulate(sums, ...)             YCbCr (8..16-bit, 4:0:0/4:2:0/4:2:2/4:4:4) → RGB, add
 *                                        each pixel to its 1/k cell of `sums` (uint32 x3)
 *   hd_finish(sums, ..., rgb)            cell sums → 8-bit RGB means
 *   hd_release()                         drop the decoded picture
 *
 * Errors are return codes (libde265 does not longjmp); an allocation that fails inside libde265's
 * C++ aborts, which traps: the JS side then throws and discards the instance.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libde265/de265.h"

#define EXPORT __attribute__((used, visibility("default")))

enum {
  I_WIDTH,
  I_HEIGHT,
  I_CHROMA,     /* de265_chroma: 0 mono, 1 4:2:0, 2 4:2:2, 3 4:4:4 */
  I_BITS_LUMA,
  I_BITS_CHROMA,
  I_FULL_RANGE, /* from the SPS VUI */
  I_MATRIX,     /* matrix_coefficients from the SPS VUI (2: unspecified) */
  I_ERROR,      /* de265_error of the last failure */
  I_COUNT
};

static int32_t info[I_COUNT];
static de265_decoder_context *ctx = NULL;
static const struct de265_image *img = NULL;

EXPORT int32_t *hd_info(void) { return info; }
EXPORT void *hd_malloc(size_t n) { return malloc(n); }
EXPORT void hd_free(void *p) { free(p); }

EXPORT void hd_release(void) {
  if (ctx) {
    if (img) de265_release_next_picture(ctx);
    de265_free_decoder(ctx);
  }
  img = NULL;
  ctx = NULL;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* 0: a picture is ready (hd_info filled). Negative: -1 malformed NAL framing, -2 no decoder,
   -3 a decode error (info[I_ERROR]), -4 no picture came out. */
EXPORT int hd_decode(const uint8_t *data, int len) {
  hd_release();
  ctx = de265_new_decoder();
  if (!ctx) return -2;
  int p = 0;
  while (p + 4 <= len) {
    uint32_t n = be32(data + p);
    p += 4;
    if (n == 0 || n > (uint32_t)(len - p)) return -1;
    de265_error e = de265_push_NAL(ctx, data + p, (int)n, 0, NULL);
    if (e != DE265_OK) { info[I_ERROR] = e; return -3; }
    p += (int)n;
  }
  if (p != len) return -1;
  de265_flush_data(ctx);
  /* Each call decodes one NAL unit at most: bounded by the NAL count of a (size-capped) input. */
  int more = 1;
  for (int guard = 0; more && guard < 1000000; guard++) {
    more = 0;
    de265_error e = de265_decode(ctx, &more);
    if (e == DE265_ERROR_WAITING_FOR_INPUT_DATA) break;
    if (e != DE265_OK) { info[I_ERROR] = e; return -3; }
    if (de265_peek_next_picture(ctx)) break;
  }
  img = de265_get_next_picture(ctx);
  if (!img) return -4;
  info[I_WIDTH] = de265_get_image_width(img, 0);
  info[I_HEIGHT] = de265_get_image_height(img, 0);
  info[I_CHROMA] = (int32_t)de265_get_chroma_format(img);
  info[I_BITS_LUMA] = de265_get_bits_per_pixel(img, 0);
  info[I_BITS_CHROMA] = info[I_CHROMA] == de265_chroma_mono ? 0 : de265_get_bits_per_pixel(img, 1);
  info[I_FULL_RANGE] = de265_get_image_full_range_flag(img);
  info[I_MATRIX] = de265_get_image_matrix_coefficients(img);
  return 0;
}

static inline int sample(const uint8_t *plane, int stride, int bits, int x, int y) {
  if (bits <= 8) return plane[(size_t)y * stride + x];
  return ((const uint16_t *)(plane + (size_t)y * stride))[x];
}

static inline uint32_t clamp8(float v) {
  if (v <= 0.0f) return 0;
  if (v >= 255.0f) return 255;
  return (uint32_t)(v + 0.5f);
}

/*
 * Converts the decoded picture's region [0, w) x [0, h) to RGB and adds pixel (x, y) to cell
 * ((x0 + x) / k, (y0 + y) / k) of `sums` (rw x rh cells, 3 uint32 each). Pixels at or past
 * (limitW, limitH) in the full image (grid tiles overhang the image edge) are skipped.
 * identity: the samples are G, B, R (matrix_coefficients 0). kr, kb: the matrix's luma weights.
 * 0 on success, -1 when no picture is held or the region exceeds it.
 */
EXPORT int hd_accumulate(uint32_t *sums, int rw, int rh, int k, int x0, int y0, int limitW,
                         int limitH, int fullRange, int identity, float kr, float kb) {
  if (!img || k < 1) return -1;
  int w = info[I_WIDTH], h = info[I_HEIGHT];
  int chroma = info[I_CHROMA];
  int bl = info[I_BITS_LUMA], bc = info[I_BITS_CHROMA];
  int ys, cs0 = 0, cs1 = 0;
  const uint8_t *yp = de265_get_image_plane(img, 0, &ys);
  const uint8_t *cbp = NULL, *crp = NULL;
  if (chroma != de265_chroma_mono) {
    cbp = de265_get_image_plane(img, 1, &cs0);
    crp = de265_get_image_plane(img, 2, &cs1);
    if (!cbp || !crp) return -1;
  }
  if (!yp) return -1;
  int sx = (chroma == de265_chroma_420 || chroma == de265_chroma_422) ? 1 : 0;
  int sy = chroma == de265_chroma_420 ? 1 : 0;
  /* Everything to 8-bit scale in float: one formula for every bit depth and range. */
  float ly = 255.0f / (float)((1 << bl) - 1);
  float lc = bc ? 255.0f / (float)((1 << bc) - 1) : 1.0f;
  float yoff = fullRange ? 0.0f : 16.0f, yscale = fullRange ? 1.0f : 255.0f / 219.0f;
  float cscale = fullRange ? 1.0f : 255.0f / 224.0f;
  float kg = 1.0f - kr - kb;
  float crr = 2.0f * (1.0f - kr), cbb = 2.0f * (1.0f - kb);
  float cbg = kg != 0.0f ? 2.0f * kb * (1.0f - kb) / kg : 0.0f;
  float crg = kg != 0.0f ? 2.0f * kr * (1.0f - kr) / kg : 0.0f;
  for (int y = 0; y < h; y++) {
    int Y = y0 + y;
    if (Y >= limitH) break;
    uint32_t *row = sums + (size_t)(Y / k) * rw * 3;
    if (Y / k >= rh) return -1;
    for (int x = 0; x < w; x++) {
      int X = x0 + x;
      if (X >= limitW) break;
      int cell = X / k;
      if (cell >= rw) return -1;
      uint32_t r, g, b;
      float luma = (float)sample(yp, ys, bl, x, y) * ly;
      if (chroma == de265_chroma_mono) {
        r = g = b = clamp8((luma - yoff) * yscale);
      } else {
        float c1 = (float)sample(cbp, cs0, bc, x >> sx, y >> sy) * lc;
        float c2 = (float)sample(crp, cs1, bc, x >> sx, y >> sy) * lc;
        if (identity) { /* GBR: Y is G, Cb is B, Cr is R */
          g = clamp8((luma - yoff) * yscale);
          b = clamp8((c1 - yoff) * yscale);
          r = clamp8((c2 - yoff) * yscale);
        } else {
          float yy = (luma - yoff) * yscale;
          float cb = (c1 - 128.0f) * cscale, cr = (c2 - 128.0f) * cscale;
          r = clamp8(yy + crr * cr);
          g = clamp8(yy - cbg * cb - crg * cr);
          b = clamp8(yy + cbb * cb);
        }
      }
      uint32_t *s = row + (size_t)cell * 3;
      s[0] += r;
      s[1] += g;
      s[2] += b;
    }
  }
  return 0;
}

/* Cell means: cell (cx, cy) covers min(k, W - cx*k) x min(k, H - cy*k) image pixels. */
EXPORT void hd_finish(const uint32_t *sums, int rw, int rh, int k, int W, int H, uint8_t *rgb) {
  for (int cy = 0; cy < rh; cy++) {
    int ch = H - cy * k < k ? H - cy * k : k;
    for (int cx = 0; cx < rw; cx++) {
      int cw = W - cx * k < k ? W - cx * k : k;
      uint32_t n = (uint32_t)(cw * ch);
      const uint32_t *s = sums + ((size_t)cy * rw + cx) * 3;
      uint8_t *o = rgb + ((size_t)cy * rw + cx) * 3;
      for (int c = 0; c < 3; c++) o[c] = n ? (uint8_t)((s[c] + n / 2) / n) : 0;
    }
  }
}
