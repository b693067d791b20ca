//! Datasets in and out: Caffe's key-value databases (LMDB, LevelDB), `Datum`
//! records (raw or PNG/JPEG-encoded), images on disk, and Caffe's
//! `DataTransformer` (mean, scale, crop, mirror).
//!
//! The data layers (src/layers/data.rs) read through these on their prefetch
//! threads; the dataset tools (src/tools/convert_*.rs, compute_image_mean.rs)
//! write through them.
pub mod datum;
pub mod db;
pub mod hdf5;
pub mod image;
pub mod transform;

pub use db::{open_cursor, Backend, Cursor, DbWriter, RecordReader};
pub use transform::Transformer;

/// Caffe's default stream formatting of a float (`std::ostream << x`): six
/// significant digits, trailing zeros dropped, like `%g`.
pub fn format_g6(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-5..6).contains(&exp) {
        let s = format!("{:.5e}", x);
        // Rust prints `7.29403e1`; C prints `7.29403e+01`.
        let (mant, e) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = trim_zeros(mant);
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    trim_zeros(&format!("{:.*}", decimals, x)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::format_g6;

    #[test]
    fn g6_matches_ostream() {
        assert_eq!(format_g6(72.94030284), "72.9403");
        assert_eq!(format_g6(0.5), "0.5");
        assert_eq!(format_g6(100.0), "100");
        assert_eq!(format_g6(123456.7), "123457");
        assert_eq!(format_g6(1234567.0), "1.23457e+06");
        assert_eq!(format_g6(0.0001234), "0.0001234");
    }
}
