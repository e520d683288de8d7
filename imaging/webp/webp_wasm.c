/*
 * A tiny libwebp front end for the in-Worker resizer (see codec.ts). Built by build.sh into
 * webp.wasm: a standalone module with no Emscripten JS glue.
 *
 *   wd_features(data, len)              width, height, alpha, animation, format → info block
 *   wd_decode(data, len, w, h)          decode straight to w x h RGB with libwebp's own scaler
 *                                       (lossy VP8 keeps a few rows; lossless VP8L needs the
 *                                       whole ARGB image), returns the pixels or 0
 *   wd_release()                        free the decoded pixels
 *
 * Alpha is dropped (MODE_RGB), as the gpu-node drops it. Errors are return codes: info[I_STATUS]
 * holds libwebp's VP8StatusCode.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/webp/decode.h"

#define EXPORT __attribute__((used, visibility("default")))

enum { I_WIDTH, I_HEIGHT, I_ALPHA, I_ANIMATED, I_FORMAT, I_STATUS, I_STRIDE, I_COUNT };

static int32_t info[I_COUNT];
static WebPDecoderConfig config;
static int live = 0;

EXPORT int32_t *wd_info(void) { return info; }
EXPORT void *wd_malloc(size_t n) { return malloc(n); }
EXPORT void wd_free(void *p) { free(p); }

EXPORT void wd_release(void) {
  if (live) WebPFreeDecBuffer(&config.output);
  live = 0;
}

EXPORT int wd_features(const uint8_t *data, size_t len) {
  WebPBitstreamFeatures f;
  VP8StatusCode s = WebPGetFeatures(data, len, &f);
  info[I_STATUS] = s;
  if (s != VP8_STATUS_OK) return -1;
  info[I_WIDTH] = f.width;
  info[I_HEIGHT] = f.height;
  info[I_ALPHA] = f.has_alpha;
  info[I_ANIMATED] = f.has_animation;
  info[I_FORMAT] = f.format;
  return 0;
}

EXPORT uint8_t *wd_decode(const uint8_t *data, size_t len, int w, int h) {
  wd_release();
  if (!WebPInitDecoderConfig(&config)) return NULL;
  VP8StatusCode s = WebPGetFeatures(data, len, &config.input);
  info[I_STATUS] = s;
  if (s != VP8_STATUS_OK) return NULL;
  if (w != config.input.width || h != config.input.height) {
    config.options.use_scaling = 1;
    config.options.scaled_width = w;
    config.options.scaled_height = h;
  }
  config.output.colorspace = MODE_RGB;
  live = 1;
  s = WebPDecode(data, len, &config);
  info[I_STATUS] = s;
  if (s != VP8_STATUS_OK) return NULL;
  info[I_STRIDE] = config.output.u.RGBA.stride;
  return config.output.u.RGBA.rgba;
}
