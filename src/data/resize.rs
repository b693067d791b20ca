//! OpenCV's `resize` on 8-bit images, as Caffe and the SSD fork call it:
//! INTER_LINEAR (Caffe's default: ImageData, convert_imageset, WindowData,
//! the SSD fork's LINEAR), and the SSD fork's other modes, all OpenCV's
//! arithmetic bit for bit (its float positions, fixed-point weights and
//! shifts, or its float sums in its order). OpenCV builds that hand resizing
//! to Intel IPP (the pip wheels) compute CUBIC in IPP's own float arithmetic
//! instead, with weights not rounded to 11 bits, which puts some pixels one
//! level away; this is OpenCV's own code, as builds without IPP (Debian's,
//! Ubuntu's) run it.
use super::image::Image;
use crate::proto::caffe::ssd_resize_parameter::InterpMode;

/// OpenCV's saturate_cast to 8 bits: rounded half to even, clamped.
pub fn saturate(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// One output pixel's two source pixels and their weights in OpenCV's 11-bit
/// fixed point (the weights sum to 2048, give or take a rounding).
struct Tap {
    i0: usize,
    i1: usize,
    w0: i32,
    w1: i32,
}

impl Tap {
    /// Source pixels i and i + 1 (clamped to 0..=last) weighted 1 − frac and
    /// frac, each weight rounded to 11 bits as OpenCV rounds it.
    fn new(i: i64, frac: f32, last: i64) -> Tap {
        let weight = |w: f32| (w * 2048.0).round_ties_even() as i32;
        Tap {
            i0: i.clamp(0, last) as usize,
            i1: (i + 1).clamp(0, last) as usize,
            w0: weight(1.0 - frac),
            w1: weight(frac),
        }
    }
}

/// OpenCV's INTER_LINEAR taps along one axis: output pixel d samples source
/// position (d + 0.5)·scale − 0.5, computed in float as OpenCV does, each
/// weight rounded to 11 bits. Horizontally a position before the first or
/// past the last pixel takes that pixel alone (`clamp_edges`); vertically
/// OpenCV keeps the weights and repeats the edge row.
fn linear_taps(dst: usize, src: usize, scale: f64, clamp_edges: bool) -> Vec<Tap> {
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut i = pos.floor() as i64;
            let mut frac = pos - i as f32;
            if clamp_edges && i < 0 {
                (i, frac) = (0, 0.0);
            }
            if clamp_edges && i >= last {
                (i, frac) = (last, 0.0);
            }
            Tap::new(i, frac, last)
        })
        .collect()
}

/// OpenCV's 8-bit INTER_LINEAR resize, bit for bit: destination pixel d
/// samples source position (d + 0.5)·scale − 0.5 on each axis; rows are
/// interpolated first, in integers, then columns, with OpenCV's shifts.
pub fn linear(img: &Image, new_height: usize, new_width: usize, scale_y: f64, scale_x: f64) -> Image {
    if img.height == 0 || img.width == 0 {
        // Nothing to sample (OpenCV refuses an empty image).
        let data = vec![0; img.channels * new_height * new_width];
        return Image { channels: img.channels, height: new_height, width: new_width, data };
    }
    let xs = linear_taps(new_width, img.width, scale_x, true);
    let ys = linear_taps(new_height, img.height, scale_y, false);
    linear_with_taps(img, new_height, new_width, &xs, &ys)
}

/// OpenCV's bilinear fixed point on given taps: rows interpolated first, in
/// integers, then columns, with its shifts.
fn linear_with_taps(img: &Image, new_height: usize, new_width: usize, xs: &[Tap], ys: &[Tap]) -> Image {
    let mut data = Vec::with_capacity(img.channels * new_height * new_width);
    let mut rows = vec![0i32; img.height * new_width];
    for c in 0..img.channels {
        let plane = &img.data[c * img.height * img.width..(c + 1) * img.height * img.width];
        for (src_row, row) in plane.chunks_exact(img.width).zip(rows.chunks_exact_mut(new_width)) {
            for (out, t) in row.iter_mut().zip(xs) {
                *out = i32::from(src_row[t.i0]) * t.w0 + i32::from(src_row[t.i1]) * t.w1;
            }
        }
        for t in ys {
            let (r0, r1) = (&rows[t.i0 * new_width..][..new_width], &rows[t.i1 * new_width..][..new_width]);
            data.extend(r0.iter().zip(r1).map(|(&a, &b)| {
                let v = (((t.w0 * (a >> 4)) >> 16) + ((t.w1 * (b >> 4)) >> 16) + 2) >> 2;
                v.clamp(0, 255) as u8
            }));
        }
    }
    Image { channels: img.channels, height: new_height, width: new_width, data }
}

/// Per output coordinate, the source pixel NEAREST picks: ⌊d·scale⌋, edges
/// repeated.
fn nearest_taps(dst: usize, src: usize) -> Vec<usize> {
    // OpenCV's scale, the reciprocal of dst/src (src/dst can differ in the
    // last bit, which moves a pick that lands on a pixel boundary).
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst).map(|d| ((d as f64 * scale).floor() as i64).clamp(0, src as i64 - 1) as usize).collect()
}

fn nearest(img: &Image, height: usize, width: usize) -> Image {
    let (ys, xs) = (nearest_taps(height, img.height), nearest_taps(width, img.width));
    let mut data = Vec::with_capacity(img.channels * height * width);
    for plane in img.data.chunks_exact(img.height * img.width) {
        for &y in &ys {
            let row = &plane[y * img.width..(y + 1) * img.width];
            data.extend(xs.iter().map(|&x| row[x]));
        }
    }
    Image { channels: img.channels, height, width, data }
}

/// OpenCV's INTER_AREA, bit for bit, by its three paths: shrinking by whole
/// factors on both axes averages blocks (2×2 in integers, others through a
/// float reciprocal); other shrinking sums each source pixel's share of the
/// output pixel in float, in OpenCV's order; enlarging on either axis is its
/// bilinear fixed point with the area positions.
fn area(img: &Image, height: usize, width: usize) -> Image {
    let (inv_x, inv_y) = (width as f64 / img.width as f64, height as f64 / img.height as f64);
    let (scale_x, scale_y) = (1.0 / inv_x, 1.0 / inv_y);
    if scale_x < 1.0 || scale_y < 1.0 {
        let xs = area_linear_taps(width, img.width, inv_x, true);
        let ys = area_linear_taps(height, img.height, inv_y, false);
        return linear_with_taps(img, height, width, &xs, &ys);
    }
    let (ix, iy) = (scale_x.round_ties_even(), scale_y.round_ties_even());
    if (scale_x - ix).abs() < f64::EPSILON && (scale_y - iy).abs() < f64::EPSILON {
        return area_blocks(img, height, width, iy as usize, ix as usize);
    }
    area_sums(img, height, width, scale_y, scale_x)
}

/// Whole-factor shrinking: each output pixel the mean of its fy×fx block.
fn area_blocks(img: &Image, height: usize, width: usize, fy: usize, fx: usize) -> Image {
    let scale = 1.0f32 / (fy * fx) as f32;
    let mut data = Vec::with_capacity(img.channels * height * width);
    for c in 0..img.channels {
        let plane = &img.data[c * img.height * img.width..(c + 1) * img.height * img.width];
        for y in 0..height {
            for x in 0..width {
                let sum: u32 = (0..fy)
                    .flat_map(|dy| (0..fx).map(move |dx| (y * fy + dy, x * fx + dx)))
                    .map(|(sy, sx)| u32::from(plane[sy * img.width + sx]))
                    .sum();
                data.push(if fy == 2 && fx == 2 { ((sum + 2) >> 2) as u8 } else { saturate(sum as f32 * scale) });
            }
        }
    }
    Image { channels: img.channels, height, width, data }
}

/// OpenCV's computeResizeAreaTab: (output index, source index, share), the
/// share of source pixel s in output pixel d's span [d·scale, (d+1)·scale).
fn area_table(dst: usize, src: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut tab = Vec::new();
    for d in 0..dst {
        let (f1, f2) = (d as f64 * scale, d as f64 * scale + scale);
        let cell = scale.min(src as f64 - f1);
        let s2 = (f2.floor() as i64).min(src as i64 - 1);
        let s1 = (f1.ceil() as i64).min(s2);
        if s1 as f64 - f1 > 1e-3 {
            tab.push((d, (s1 - 1).max(0) as usize, ((s1 as f64 - f1) / cell) as f32));
        }
        for s in s1.max(0)..s2 {
            tab.push((d, s as usize, (1.0 / cell) as f32));
        }
        if f2 - s2 as f64 > 1e-3 {
            tab.push((d, s2.max(0) as usize, ((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32));
        }
    }
    tab
}

/// Non-whole shrinking: per source row, its pixels' shares summed into a row
/// buffer, rows added into the output row with their shares, in float and in
/// OpenCV's order, rounded when the output row is done.
fn area_sums(img: &Image, height: usize, width: usize, scale_y: f64, scale_x: f64) -> Image {
    let xtab = area_table(width, img.width, scale_x);
    let ytab = area_table(height, img.height, scale_y);
    let mut out = vec![0u8; img.channels * height * width];
    let (mut buf, mut sum) = (vec![0f32; width], vec![0f32; width]);
    for c in 0..img.channels {
        let plane = &img.data[c * img.height * img.width..(c + 1) * img.height * img.width];
        let dst = &mut out[c * height * width..(c + 1) * height * width];
        sum.iter_mut().for_each(|v| *v = 0.0);
        let mut prev = ytab.first().map_or(0, |t| t.0);
        for &(dy, sy, beta) in &ytab {
            buf.iter_mut().for_each(|v| *v = 0.0);
            let row = &plane[sy * img.width..(sy + 1) * img.width];
            for &(dx, sx, alpha) in &xtab {
                buf[dx] += f32::from(row[sx]) * alpha;
            }
            if dy != prev {
                for (o, (s, b)) in dst[prev * width..(prev + 1) * width].iter_mut().zip(sum.iter_mut().zip(&buf)) {
                    *o = saturate(*s);
                    *s = beta * b;
                }
                prev = dy;
            } else {
                sum.iter_mut().zip(&buf).for_each(|(s, b)| *s += beta * b);
            }
        }
        for (o, s) in dst[prev * width..(prev + 1) * width].iter_mut().zip(&sum) {
            *o = saturate(*s);
        }
    }
    Image { channels: img.channels, height, width, data: out }
}

/// INTER_AREA's taps where it enlarges: OpenCV's bilinear fixed point with
/// the fraction (d + 1) − (⌊d·scale⌋ + 1)·inv_scale, wrapped into [0, 1).
fn area_linear_taps(dst: usize, src: usize, inv_scale: f64, clamp_edges: bool) -> Vec<Tap> {
    let scale = 1.0 / inv_scale;
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let mut i = (d as f64 * scale).floor() as i64;
            let f = ((d + 1) as f64 - (i + 1) as f64 * inv_scale) as f32;
            let mut frac = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if clamp_edges && i >= last {
                (i, frac) = (last, 0.0);
            }
            Tap::new(i, frac, last)
        })
        .collect()
}

/// OpenCV's `interpolateLanczos4`: the eight weights of a tap at fraction
/// `x`, in float from its sine table, normalized to sum to one.
fn lanczos4_weights(x: f32) -> [f32; 8] {
    const S45: f64 = std::f64::consts::FRAC_1_SQRT_2;
    const CS: [[f64; 2]; 8] =
        [[1.0, 0.0], [-S45, -S45], [0.0, 1.0], [S45, -S45], [-1.0, 0.0], [S45, S45], [0.0, -1.0], [-S45, S45]];
    let mut w = [0f32; 8];
    if x < f32::EPSILON {
        w[3] = 1.0;
        return w;
    }
    let y0 = -(f64::from(x) + 3.0) * std::f64::consts::PI * 0.25;
    let (s0, c0) = (y0.sin(), y0.cos());
    let mut sum = 0f32;
    for (i, (wi, cs)) in w.iter_mut().zip(CS).enumerate() {
        let y = -(f64::from(x) + 3.0 - i as f64) * std::f64::consts::PI * 0.25;
        *wi = ((cs[0] * s0 + cs[1] * c0) / (y * y)) as f32;
        sum += *wi;
    }
    let inv = 1.0 / sum;
    w.iter_mut().for_each(|v| *v *= inv);
    w
}

/// OpenCV's `interpolateCubic` (A = −0.75): the four weights of a tap at
/// fraction `x`, in float and in its order, the last making the sum one.
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

/// Per output coordinate, K source pixels around (d + 0.5)·scale − 0.5
/// (edges repeated) and their weights in OpenCV's 11-bit fixed point.
type FixedTaps<const K: usize> = Vec<([usize; K], [i32; K])>;

fn fixed_taps<const K: usize>(dst: usize, src: usize, weights: fn(f32) -> [f32; K]) -> FixedTaps<K> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let pos = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let i = pos.floor();
            let w = weights(pos - i);
            let first = i as i64 - (K as i64 / 2 - 1);
            let idx = std::array::from_fn(|k| (first + k as i64).clamp(0, src as i64 - 1) as usize);
            // saturate_cast<short>: rounded half to even, clamped.
            (idx, w.map(|v| (v * 2048.0).round_ties_even().clamp(-32768.0, 32767.0) as i32))
        })
        .collect()
}

/// OpenCV's separable fixed-point resize of 8-bit images (LANCZOS4, CUBIC):
/// rows summed in integers, then columns, shifted back by 22 bits. OpenCV's
/// vector loop for CUBIC's columns computes the first `float_bulk` values of
/// each interleaved row (pixel × channels + channel) in float instead: last
/// tap first, each product and sum rounded (no fused multiply-add), the
/// result rounded half to even; the rest of the row takes the integer path.
fn fixed_point_resize<const K: usize>(
    img: &Image,
    (height, width): (usize, usize),
    ys: &FixedTaps<K>,
    xs: &FixedTaps<K>,
    float_bulk: usize,
) -> Image {
    let mut data = Vec::with_capacity(img.channels * height * width);
    let mut rows = vec![0i32; img.height * width];
    for (c, plane) in img.data.chunks_exact(img.height * img.width).enumerate() {
        for (src, row) in plane.chunks_exact(img.width).zip(rows.chunks_exact_mut(width)) {
            for (out, (idx, w)) in row.iter_mut().zip(xs) {
                *out = idx.iter().zip(w).map(|(&x, &wx)| i32::from(src[x]) * wx).sum();
            }
        }
        for (idx, w) in ys {
            let scaled = w.map(|v| v as f32 * (1.0 / (2048.0 * 2048.0)));
            for x in 0..width {
                let s: [i32; K] = std::array::from_fn(|k| rows[idx[k] * width + x]);
                let v = if x * img.channels + c < float_bulk {
                    let mut t = s[K - 1] as f32 * scaled[K - 1];
                    for k in (0..K - 1).rev() {
                        t += s[k] as f32 * scaled[k];
                    }
                    t.round_ties_even() as i64
                } else {
                    let v: i64 = s.iter().zip(w).map(|(&a, &b)| i64::from(a) * i64::from(b)).sum();
                    (v + (1 << 21)) >> 22
                };
                data.push(v.clamp(0, 255) as u8);
            }
        }
    }
    Image { channels: img.channels, height, width, data }
}

/// OpenCV's 8-bit LANCZOS4 resize, bit for bit: eight taps per axis, all in
/// integers.
fn resize_lanczos4(img: &Image, height: usize, width: usize) -> Image {
    let (ys, xs) = (fixed_taps(height, img.height, lanczos4_weights), fixed_taps(width, img.width, lanczos4_weights));
    fixed_point_resize(img, (height, width), &ys, &xs, 0)
}

/// OpenCV's 8-bit CUBIC resize, bit for bit: four taps per axis; the columns
/// of each row's leading multiple of 8 values in float, as its 128-bit
/// vector loop (eight 16-bit lanes per step) computes them.
fn resize_cubic(img: &Image, height: usize, width: usize) -> Image {
    let (ys, xs) = (fixed_taps(height, img.height, cubic_weights), fixed_taps(width, img.width, cubic_weights));
    let row_values = width * img.channels;
    fixed_point_resize(img, (height, width), &ys, &xs, row_values - row_values % 8)
}

/// Resizes with an interpolation mode, as OpenCV's `resize` does: LINEAR
/// (`image::resize`), NEAREST, AREA, CUBIC and LANCZOS4.
pub fn with_mode(img: &Image, height: usize, width: usize, mode: InterpMode) -> Image {
    if img.height == height && img.width == width {
        return img.clone();
    }
    if img.height == 0 || img.width == 0 {
        return Image { channels: img.channels, height, width, data: vec![0; img.channels * height * width] };
    }
    match mode {
        InterpMode::Lanczos4 => resize_lanczos4(img, height, width),
        InterpMode::Area => area(img, height, width),
        InterpMode::Linear => super::image::resize(img, height, width),
        InterpMode::Nearest => nearest(img, height, width),
        InterpMode::Cubic => resize_cubic(img, height, width),
    }
}
