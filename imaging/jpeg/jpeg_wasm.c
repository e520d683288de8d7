/*
 * A tiny libjpeg-turbo front end for the edge Worker's in-Worker resizer (see ../wasm-jpeg.ts).
 * Built by build.sh into jpeg.wasm: a standalone module with no Emscripten JS glue. Its only
 * imports are `env.jw_throw` (error exit: the JS side throws, abandoning this instance) and a few
 * libc stubs.
 *
 * One decode at a time (the Worker is single-threaded and calls these synchronously):
 *   jw_begin(buf, len)            parse the header; fills the info block
 *   jw_decode(denom, mem_limit)   decode at 1/denom scale (DCT-domain scaling) to RGB or CMYK
 *   jw_end()                      release the decoder and its output
 *   jw_encode(rgb, w, h, quality) baseline JPEG, JFIF APP0 only, no other markers
 *
 * Any libjpeg error, and any warning except harmless extraneous bytes between markers, calls
 * jw_throw(kind, code, message), which never returns: the caller throws from JS and discards the
 * instance (its stack and heap are then in an unknown state). That is how corrupt and truncated
 * data is refused without setjmp/longjmp.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpeglib.h"
#include "jerror.h"
#include "jpeg_policy.h"

#define EXPORT __attribute__((used, visibility("default")))

/* kind: 0 corrupt or truncated data, 1 a JPEG variant this build cannot decode, 2 too large for
   the memory budget. code: libjpeg's message code (negative: ours). Never returns. */
__attribute__((import_module("env"), import_name("jw_throw"))) void jw_throw(int kind, int code,
                                                                              const char *msg);

/* The info block the JS side reads (int32 each). */
enum {
  I_WIDTH,          /* stored image width */
  I_HEIGHT,         /* stored image height */
  I_COMPONENTS,     /* components in the file */
  I_COLOR_SPACE,    /* J_COLOR_SPACE of the file: 1 grey, 2 RGB, 3 YCbCr, 4 CMYK, 5 YCCK */
  I_PROGRESSIVE,    /* 1 for progressive (SOF2/SOF6/SOF10) */
  I_ARITH,          /* 1 for arithmetic coding */
  I_ADOBE,          /* 1 when an Adobe APP14 marker was seen (CMYK is stored inverted) */
  I_OUT_WIDTH,      /* after jw_decode: scaled width */
  I_OUT_HEIGHT,     /* after jw_decode: scaled height */
  I_OUT_COMPONENTS, /* after jw_decode: 3 (RGB) or 4 (CMYK as stored) */
  I_WARNINGS,       /* tolerated warnings (extraneous bytes) */
  I_ENC_LEN,        /* after jw_encode: output length */
  I_COUNT
};

static int32_t info[I_COUNT];
static char message[JMSG_LENGTH_MAX];

static struct jpeg_decompress_struct dinfo;
static struct jpeg_error_mgr derr;
static int dinfo_live = 0;
static unsigned char *out_pixels = NULL;

static void fail(j_common_ptr cinfo) {
  (*cinfo->err->format_message)(cinfo, message);
  jw_throw(kind_of(cinfo->err->msg_code), cinfo->err->msg_code, message);
}

static void emit(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return; /* trace messages */
  if (tolerated_warning(cinfo->err->msg_code)) {
    info[I_WARNINGS]++;
    return;
  }
  fail(cinfo);
}

static void quiet(j_common_ptr cinfo) { (void)cinfo; }

EXPORT int32_t *jw_info(void) { return info; }
EXPORT void *jw_malloc(size_t n) { return malloc(n); }
EXPORT void jw_free(void *p) { free(p); }

EXPORT void jw_end(void) {
  if (out_pixels) {
    free(out_pixels);
    out_pixels = NULL;
  }
  if (dinfo_live) {
    jpeg_destroy_decompress(&dinfo);
    dinfo_live = 0;
  }
}

EXPORT int jw_begin(const unsigned char *buf, unsigned long len) {
  jw_end();
  memset(info, 0, sizeof(info));
  dinfo.err = jpeg_std_error(&derr);
  derr.error_exit = fail;
  derr.emit_message = emit;
  derr.output_message = quiet;
  jpeg_create_decompress(&dinfo);
  dinfo_live = 1;
  jpeg_mem_src(&dinfo, buf, len);
  jpeg_read_header(&dinfo, TRUE);
  info[I_WIDTH] = (int32_t)dinfo.image_width;
  info[I_HEIGHT] = (int32_t)dinfo.image_height;
  info[I_COMPONENTS] = dinfo.num_components;
  info[I_COLOR_SPACE] = dinfo.jpeg_color_space;
  info[I_PROGRESSIVE] = dinfo.progressive_mode ? 1 : 0;
  info[I_ARITH] = dinfo.arith_code ? 1 : 0;
  info[I_ADOBE] = dinfo.saw_Adobe_marker ? 1 : 0;
  return 0;
}

/* Decodes the image read by jw_begin at 1/denom (1, 2, 4 or 8) into one packed buffer of
   out_width x out_height x out_components bytes. `mem_limit` caps libjpeg's large buffers (the
   whole-image coefficient buffer of progressive files); over it, libjpeg fails with
   JERR_NO_BACKING_STORE rather than growing memory. `max_out` caps the output buffer. */
EXPORT unsigned char *jw_decode(int denom, long mem_limit, long max_out) {
  if (!dinfo_live) return NULL;
  dinfo.scale_num = 1;
  dinfo.scale_denom = (unsigned int)denom;
  dinfo.dct_method = JDCT_ISLOW;
  dinfo.do_fancy_upsampling = TRUE;
  dinfo.mem->max_memory_to_use = mem_limit;
  switch (dinfo.jpeg_color_space) {
  case JCS_CMYK:
  case JCS_YCCK:
    dinfo.out_color_space = JCS_CMYK; /* libjpeg turns YCCK into CMYK; JS makes RGB */
    break;
  default:
    dinfo.out_color_space = JCS_RGB; /* grey, YCbCr and RGB all come out as RGB */
  }
  jpeg_calc_output_dimensions(&dinfo);
  size_t row = (size_t)dinfo.output_width * (size_t)dinfo.output_components;
  size_t total = row * (size_t)dinfo.output_height;
  if (max_out > 0 && total > (size_t)max_out) {
    snprintf(message, sizeof(message), "scaled image of %ux%u is too large",
             dinfo.output_width, dinfo.output_height);
    jw_throw(KIND_TOO_LARGE, -2, message);
  }
  jpeg_start_decompress(&dinfo);
  out_pixels = (unsigned char *)malloc(total);
  if (!out_pixels) {
    snprintf(message, sizeof(message), "out of memory for a %ux%u image", dinfo.output_width,
             dinfo.output_height);
    jw_throw(KIND_TOO_LARGE, -1, message);
  }
  while (dinfo.output_scanline < dinfo.output_height) {
    JSAMPROW rows[4];
    int n = 0;
    for (; n < 4 && dinfo.output_scanline + n < dinfo.output_height; n++)
      rows[n] = out_pixels + row * (dinfo.output_scanline + n);
    jpeg_read_scanlines(&dinfo, rows, (JDIMENSION)n);
  }
  jpeg_finish_decompress(&dinfo);
  info[I_OUT_WIDTH] = (int32_t)dinfo.output_width;
  info[I_OUT_HEIGHT] = (int32_t)dinfo.output_height;
  info[I_OUT_COMPONENTS] = dinfo.output_components;
  return out_pixels;
}

/* Baseline JPEG of packed RGB: SOI, APP0 (JFIF), DQT, SOF0, DHT, SOS, EOI and nothing else.
   Optimised Huffman tables (still baseline), 4:2:0 chroma like sharp's and libvips's default.
   Returns a malloc'd buffer (free with jw_free); its length is info[I_ENC_LEN]. */
EXPORT unsigned char *jw_encode(const unsigned char *rgb, int width, int height, int quality) {
  struct jpeg_compress_struct cinfo;
  struct jpeg_error_mgr cerr;
  unsigned char *out = NULL;
  unsigned long out_len = 0;
  cinfo.err = jpeg_std_error(&cerr);
  cerr.error_exit = fail;
  cerr.output_message = quiet;
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &out, &out_len);
  cinfo.image_width = (JDIMENSION)width;
  cinfo.image_height = (JDIMENSION)height;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  /* Standard Huffman tables: optimising them is a second pass over the coefficients for 2-6%
     fewer bytes (edge/resize/resizer.ts, ResizedImage). */
  cinfo.optimize_coding = FALSE;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.write_JFIF_header = TRUE;
  cinfo.write_Adobe_marker = FALSE;
  jpeg_start_compress(&cinfo, TRUE);
  size_t row = (size_t)width * 3;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW r = (JSAMPROW)(rgb + row * cinfo.next_scanline);
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  info[I_ENC_LEN] = (int32_t)out_len;
  return out;
}
