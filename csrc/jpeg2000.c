/* JPEG 2000 decoding through the system's OpenJPEG (libopenjp2), the library
 * OpenCV's JPEG 2000 reader uses. src/data/jpeg2000.rs applies OpenCV's
 * rules to what this returns; this file only drives OpenJPEG over a memory
 * buffer and keeps its last error message. */
#include <openjpeg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct caffe_j2k_source {
  const uint8_t* data;
  size_t length;
  size_t at;
};

struct caffe_j2k {
  struct caffe_j2k_source source;
  opj_stream_t* stream;
  opj_codec_t* codec;
  opj_image_t* image;
  char message[256];
};

/* What the header (or, after decoding, the image) says. */
struct caffe_j2k_info {
  uint32_t x0, y0, x1, y1;
  uint32_t components;
  int32_t color_space;
};

struct caffe_j2k_component {
  uint32_t dx, dy, w, h, x0, y0, prec, sgnd, alpha;
  const int32_t* data;
};

static OPJ_SIZE_T read_source(void* out, OPJ_SIZE_T count, void* user) {
  struct caffe_j2k_source* s = user;
  size_t left = s->length - s->at;
  if (left == 0) return (OPJ_SIZE_T)-1;
  if (count > left) count = left;
  memcpy(out, s->data + s->at, count);
  s->at += count;
  return count;
}

static OPJ_OFF_T skip_source(OPJ_OFF_T count, void* user) {
  struct caffe_j2k_source* s = user;
  size_t left = s->length - s->at;
  if (count <= 0 || left == 0) return -1;
  if ((uint64_t)count > left) count = (OPJ_OFF_T)left;
  s->at += (size_t)count;
  return count;
}

static OPJ_BOOL seek_source(OPJ_OFF_T to, void* user) {
  struct caffe_j2k_source* s = user;
  if (to < 0) return OPJ_FALSE;
  s->at = (uint64_t)to < s->length ? (size_t)to : s->length;
  return OPJ_TRUE;
}

/* OpenJPEG reports errors through a callback; the first one is kept. */
static void keep_error(const char* msg, void* user) {
  struct caffe_j2k* j = user;
  if (j->message[0] == 0) {
    snprintf(j->message, sizeof j->message, "%s", msg);
    size_t n = strlen(j->message);
    while (n > 0 && (j->message[n - 1] == '\n' || j->message[n - 1] == ' ')) j->message[--n] = 0;
  }
}

static void ignore(const char* msg, void* user) {
  (void)msg;
  (void)user;
}

const char* caffe_j2k_message(const struct caffe_j2k* j) { return j->message; }

void caffe_j2k_close(struct caffe_j2k* j) {
  if (j == NULL) return;
  if (j->image) opj_image_destroy(j->image);
  if (j->codec) opj_destroy_codec(j->codec);
  if (j->stream) opj_stream_destroy(j->stream);
  free(j);
}

static void describe(const opj_image_t* image, struct caffe_j2k_info* info) {
  info->x0 = image->x0;
  info->y0 = image->y0;
  info->x1 = image->x1;
  info->y1 = image->y1;
  info->components = image->numcomps;
  info->color_space = (int32_t)image->color_space;
}

/* Reads the header of a JP2 file (codestream = 0) or a bare codestream (1).
 * Returns the decoder (NULL only when out of memory); *ok says whether the
 * header was read, else caffe_j2k_message says why. */
struct caffe_j2k* caffe_j2k_read_header(const uint8_t* data, size_t length, int codestream,
                                        struct caffe_j2k_info* info, int* ok) {
  *ok = 0;
  struct caffe_j2k* j = calloc(1, sizeof *j);
  if (j == NULL) return NULL;
  j->source.data = data;
  j->source.length = length;
  j->stream = opj_stream_default_create(OPJ_TRUE);
  j->codec = opj_create_decompress(codestream ? OPJ_CODEC_J2K : OPJ_CODEC_JP2);
  if (j->stream == NULL || j->codec == NULL) {
    snprintf(j->message, sizeof j->message, "OpenJPEG could not start a decoder");
    return j;
  }
  opj_stream_set_user_data(j->stream, &j->source, NULL);
  opj_stream_set_user_data_length(j->stream, length);
  opj_stream_set_read_function(j->stream, read_source);
  opj_stream_set_skip_function(j->stream, skip_source);
  opj_stream_set_seek_function(j->stream, seek_source);
  opj_set_error_handler(j->codec, keep_error, j);
  opj_set_warning_handler(j->codec, ignore, NULL);
  opj_set_info_handler(j->codec, ignore, NULL);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  if (!opj_setup_decoder(j->codec, &parameters) || !opj_read_header(j->stream, j->codec, &j->image) ||
      j->image == NULL) {
    if (j->message[0] == 0) snprintf(j->message, sizeof j->message, "OpenJPEG could not read the header");
    return j;
  }
  describe(j->image, info);
  *ok = 1;
  return j;
}

/* Decodes the image whose header was read; 1 on success. */
int caffe_j2k_decode(struct caffe_j2k* j, struct caffe_j2k_info* info) {
  if (!opj_decode(j->codec, j->stream, j->image)) {
    if (j->message[0] == 0) snprintf(j->message, sizeof j->message, "OpenJPEG could not decode the image");
    return 0;
  }
  describe(j->image, info);
  return 1;
}

/* Component i as the header or the decoded image describes it (data is
 * NULL before decoding); 0 when there is no such component. */
int caffe_j2k_component(const struct caffe_j2k* j, uint32_t i, struct caffe_j2k_component* out) {
  if (j->image == NULL || i >= j->image->numcomps || j->image->comps == NULL) return 0;
  const opj_image_comp_t* c = &j->image->comps[i];
  out->dx = c->dx;
  out->dy = c->dy;
  out->w = c->w;
  out->h = c->h;
  out->x0 = c->x0;
  out->y0 = c->y0;
  out->prec = c->prec;
  out->sgnd = c->sgnd;
  out->alpha = c->alpha;
  out->data = c->data;
  return 1;
}
