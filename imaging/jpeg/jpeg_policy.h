/*
 * How both builds of our libjpeg-turbo front end (jpeg_wasm.c for the edge and the gpu-node's
 * WASM path, ../native/clip_native.c for the gpu-node's native path) judge what libjpeg reports,
 * so that both refuse the same files the same way. Include after jpeglib.h and jerror.h.
 */
#ifndef JPEG_POLICY_H
#define JPEG_POLICY_H

/* kind: corrupt or truncated data, a JPEG variant this build cannot decode, or too large for the
   memory budget. */
enum { KIND_CORRUPT = 0, KIND_UNSUPPORTED = 1, KIND_TOO_LARGE = 2 };

static int kind_of(int code) {
  switch (code) {
  case JERR_BAD_PRECISION:      /* 12-bit (and 16-bit) samples */
  case JERR_SOF_UNSUPPORTED:    /* lossless, hierarchical */
  case JERR_NOT_COMPILED:
  case JERR_ARITH_NOTIMPL:
  case JERR_CONVERSION_NOTIMPL: /* a colour space libjpeg cannot turn into RGB */
    return KIND_UNSUPPORTED;
  case JERR_NO_BACKING_STORE:   /* whole-image coefficient buffer over mem_limit */
  case JERR_OUT_OF_MEMORY:
  case JERR_IMAGE_TOO_BIG:
  case JERR_WIDTH_OVERFLOW:
    return KIND_TOO_LARGE;
  default:
    return KIND_CORRUPT;
  }
}

/* Garbage between markers is common in camera files and harmless, as are these header quirks;
   any other warning means the entropy-coded data is damaged or cut short, and libjpeg would go on
   painting grey. */
static int tolerated_warning(int code) {
  return code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
         code == JWRN_BOGUS_ICC;
}

#endif
