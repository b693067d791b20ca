/* JPEG through the system's libjpeg(-turbo), the library OpenCV's imread,
 * imdecode and imencode use. Decoding gives the pixels Caffe read: libjpeg's
 * integer IDCT, its chroma upsampling and colour conversion, the luma plane
 * itself for a grey read, and OpenCV's own conversion of CMYK files.
 * (src/data/image.rs calls it; a pure-Rust decoder differs from libjpeg by a
 * few levels on most pixels of a subsampled colour image.) Encoding gives
 * the bytes OpenCV's default encoder writes.
 *
 * libjpeg reports a fatal error by calling error_exit, which must not return:
 * it longjmps back here, so no Rust frame is ever skipped. Warnings (a file
 * cut short, extraneous bytes) are ignored, as OpenCV ignores them: the
 * decoder fills what is missing and the image is returned. */
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* A progressive file may hold any number of scans, each a pass over the
 * whole image; a few kilobytes can ask for millions. libjpeg-turbo's own
 * tools stop at a limit of this size. */
#define MAX_SCANS 1000

struct guarded_error {
  struct jpeg_error_mgr mgr;
  jmp_buf escape;
  char message[JMSG_LENGTH_MAX];
};

static void error_exit(j_common_ptr cinfo) {
  struct guarded_error* err = (struct guarded_error*)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->escape, 1);
}

static void ignore_message(j_common_ptr cinfo, int level) {
  (void)cinfo;
  (void)level;
}

/* libjpeg's error manager with fatal errors escaping to jerr->escape (the
 * caller's setjmp) and warnings dropped. */
static struct jpeg_error_mgr* guarded_errors(struct guarded_error* jerr) {
  struct jpeg_error_mgr* mgr = jpeg_std_error(&jerr->mgr);
  mgr->error_exit = error_exit;
  mgr->emit_message = ignore_message;
  jerr->message[0] = '\0';
  return mgr;
}

static void limit_scans(j_common_ptr cinfo) {
  if (cinfo->is_decompressor) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MAX_SCANS) {
      struct guarded_error* err = (struct guarded_error*)cinfo->err;
      snprintf(err->message, sizeof err->message, "more than %d progressive scans", MAX_SCANS);
      longjmp(err->escape, 1);
    }
  }
}

static void copy_message(const char* message, char* out, size_t out_len) {
  if (out_len > 0) {
    snprintf(out, out_len, "%s", message);
  }
}

/* The orientation recorded in an Exif APP1 segment is read by the caller from
 * the segment's bytes; this returns where they are (NULL when there are none). */
static const unsigned char* find_exif(j_decompress_ptr cinfo, size_t* len) {
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m != NULL; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
      *len = m->data_length - 6;
      return m->data + 6;
    }
  }
  *len = 0;
  return NULL;
}

/* Reads the header: size, component count and the Exif block (copied into
 * exif, at most exif_cap bytes; *exif_len is its full length). Returns 0, or
 * -1 with a message in err. */
int caffe_tch_jpeg_header(const unsigned char* data, size_t len, int* width, int* height, int* components,
                          unsigned char* exif, size_t exif_cap, size_t* exif_len, char* err, size_t err_len) {
  struct jpeg_decompress_struct cinfo;
  struct guarded_error jerr;
  cinfo.err = guarded_errors(&jerr);
  if (setjmp(jerr.escape)) {
    copy_message(jerr.message, err, err_len);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  *width = (int)cinfo.image_width;
  *height = (int)cinfo.image_height;
  *components = cinfo.num_components;
  size_t found = 0;
  const unsigned char* block = find_exif(&cinfo, &found);
  *exif_len = found;
  if (block != NULL && exif != NULL) {
    memcpy(exif, block, found < exif_cap ? found : exif_cap);
  }
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

/* OpenCV's conversion of a CMYK pixel as libjpeg hands it (Adobe's inverted
 * form): each colour channel times the key, in 8-bit fixed point. */
static void cmyk_to_rgb(const unsigned char* cmyk, int* r, int* g, int* b) {
  int k = cmyk[3];
  *r = k - ((255 - cmyk[0]) * k >> 8);
  *g = k - ((255 - cmyk[1]) * k >> 8);
  *b = k - ((255 - cmyk[2]) * k >> 8);
}

/* OpenCV's fixed-point grey weights (0.299, 0.587, 0.114 in 14 bits). */
static unsigned char grey_of(int r, int g, int b) {
  return (unsigned char)((r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14);
}

/* Decodes into out (height rows of width pixels, interleaved): RGB when grey
 * is 0, one luma channel when it is 1. out_len must be width*height*3 or
 * width*height. Returns 0, or -1 with a message in err. */
int caffe_tch_jpeg_decode(const unsigned char* data, size_t len, int grey, unsigned char* out, size_t out_len,
                          char* err, size_t err_len) {
  struct jpeg_decompress_struct cinfo;
  struct guarded_error jerr;
  struct jpeg_progress_mgr progress;
  /* volatile: written after setjmp and read after the longjmp. */
  JSAMPLE* volatile row = NULL;
  cinfo.err = guarded_errors(&jerr);
  if (setjmp(jerr.escape)) {
    copy_message(jerr.message, err, err_len);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = limit_scans;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  const int cmyk = cinfo.num_components == 4;
  if (cmyk) {
    cinfo.out_color_space = JCS_CMYK;
  } else {
    cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  }
  jpeg_start_decompress(&cinfo);
  const size_t width = cinfo.output_width, height = cinfo.output_height;
  const size_t channels = grey ? 1 : 3;
  if (out_len != width * height * channels || (size_t)cinfo.output_components != (cmyk ? 4 : channels)) {
    snprintf(jerr.message, sizeof jerr.message, "decoded size %zux%zux%d does not match the header", width, height,
             cinfo.output_components);
    longjmp(jerr.escape, 1);
  }
  if (cmyk) {
    row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)(width * 4), 1)[0];
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    unsigned char* dst = out + (size_t)cinfo.output_scanline * width * channels;
    JSAMPROW target = cmyk ? row : dst;
    jpeg_read_scanlines(&cinfo, &target, 1);
    if (cmyk) {
      for (size_t x = 0; x < width; ++x) {
        int r, g, b;
        cmyk_to_rgb(row + 4 * x, &r, &g, &b);
        if (grey) {
          dst[x] = grey_of(r, g, b);
        } else {
          dst[3 * x] = (unsigned char)r;
          dst[3 * x + 1] = (unsigned char)g;
          dst[3 * x + 2] = (unsigned char)b;
        }
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return 0;
}

/* Encodes rows of interleaved RGB (channels 3) or grey (channels 1) pixels as
 * OpenCV's imencode(".jpg") does by default: libjpeg's defaults (4:2:0
 * chroma, integer DCT, standard Huffman tables, a JFIF header) at the given
 * quality. On success *out holds malloc'd bytes the caller frees with
 * caffe_tch_jpeg_free. Returns 0, or -1 with a message in err. */
int caffe_tch_jpeg_encode(const unsigned char* pixels, int width, int height, int channels, int quality,
                          unsigned char** out, unsigned long* out_len, char* err, size_t err_len) {
  struct jpeg_compress_struct cinfo;
  struct guarded_error jerr;
  *out = NULL;
  *out_len = 0;
  cinfo.err = guarded_errors(&jerr);
  if (setjmp(jerr.escape)) {
    copy_message(jerr.message, err, err_len);
    jpeg_destroy_compress(&cinfo);
    free(*out);
    *out = NULL;
    return -1;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, out, out_len);
  cinfo.image_width = (JDIMENSION)width;
  cinfo.image_height = (JDIMENSION)height;
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = (size_t)width * (size_t)channels;
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return 0;
}

void caffe_tch_jpeg_free(unsigned char* bytes) { free(bytes); }
