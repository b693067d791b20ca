//! DeepLab v2's `MatWrite`: writes each bottom to a MATLAB (Level 5) file,
//! the features its test nets save for MATLAB and the DenseCRF step.
use std::path::{Path, PathBuf};

use tch::Tensor;

use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{legacy_dims, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::util::tensor_values;
use crate::{bail, info, Error, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "MatWrite",
        family: family_of(file!()),
        params: "mat_write_param.prefix, source (names, one per forward), strip, period (DeepLab v2's fork): a \
                 single-precision variable `data` of dims W × H × C × N per bottom; no tops",
        tests: "tests/data.rs: mat_write_* (files read back by SciPy's loadmat, names from the source list, period, \
                errors)",
        create: |p| Ok(Box::new(MatWrite::new(p)?)),
    });
}

/// Each forward whose count is a multiple of `period` writes bottom i to
/// `<prefix><name>_blob_<i>.mat`, where name is the source list's entry for
/// this forward (its first word less `strip` characters) or `iter_<n>`. The
/// variable `data` is single precision with dims [W, H, C, N]: MATLAB's
/// column-major order reads Caffe's N × C × H × W memory as it lies.
pub struct MatWrite {
    prefix: String,
    names: Option<Vec<String>>,
    period: i64,
    iteration: i64,
}

impl MatWrite {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.mat_write_param.clone().unwrap_or_default();
        if p.period() <= 0 {
            bail!("mat_write_param.period must be positive, got {}", p.period());
        }
        if p.strip() < 0 {
            bail!("mat_write_param.strip cannot be negative, got {}", p.strip());
        }
        let names = match p.source() {
            "" => None,
            source => {
                let text = std::fs::read_to_string(source).map_err(|e| Error::io(source, e))?;
                let mut names = Vec::new();
                for (k, line) in text.lines().enumerate() {
                    let word = line.split_whitespace().next().unwrap_or("");
                    let keep = word.len().checked_sub(p.strip() as usize).filter(|&n| n > 0);
                    match keep.and_then(|n| word.get(..n)) {
                        Some(name) => names.push(name.to_string()),
                        None => bail!("source '{source}' line {}: '{word}' is too short to strip {}", k + 1, p.strip()),
                    }
                }
                info!("mat_write_layer.cpp:31", "MatWrite will save a maximum of {} files.", names.len());
                Some(names)
            }
        };
        Ok(MatWrite { prefix: p.prefix().to_string(), names, period: i64::from(p.period()), iteration: 0 })
    }
}

/// A MATLAB Level 5 MAT-file holding one single-precision array `name` of
/// `dims` (column-major), uncompressed.
pub fn mat_file(name: &str, dims: &[u32], values: &[f32]) -> Vec<u8> {
    const MI_INT8: u32 = 1;
    const MI_INT32: u32 = 5;
    const MI_UINT32: u32 = 6;
    const MI_SINGLE: u32 = 7;
    const MI_MATRIX: u32 = 14;
    const MX_SINGLE_CLASS: u32 = 7;
    // A data element: its tag, its bytes, padding to 8.
    fn element(out: &mut Vec<u8>, kind: u32, bytes: &[u8]) {
        out.extend(kind.to_le_bytes());
        out.extend((bytes.len() as u32).to_le_bytes());
        out.extend(bytes);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    let mut matrix = Vec::new();
    element(&mut matrix, MI_UINT32, &[MX_SINGLE_CLASS.to_le_bytes(), 0u32.to_le_bytes()].concat());
    element(&mut matrix, MI_INT32, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>());
    element(&mut matrix, MI_INT8, name.as_bytes());
    element(&mut matrix, MI_SINGLE, &values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let mut header =
        format!("MATLAB 5.0 MAT-file, Platform: {}, Created by: caffe-tch", std::env::consts::OS).into_bytes();
    header.resize(116, b' ');
    header.extend([0u8; 8]); // no subsystem data
    header.extend(0x0100u16.to_le_bytes());
    header.extend(*b"IM"); // little-endian
    let mut out = header;
    element(&mut out, MI_MATRIX, &matrix);
    out
}

impl Layer for MatWrite {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if bottoms.is_empty() {
            bail!("MatWrite needs at least one bottom");
        }
        for b in bottoms {
            legacy_dims(b)?;
        }
        Ok(SetupOut { tops: vec![], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let it = self.iteration;
        self.iteration += 1;
        if it % self.period != 0 {
            return Ok(vec![]);
        }
        let name = match &self.names {
            Some(names) => match names.get(it as usize) {
                Some(n) => n.clone(),
                None => bail!(
                    "Test has run for more iterations than it was supposed to: {} names in the source",
                    names.len()
                ),
            },
            None => format!("iter_{it}"),
        };
        for (i, b) in bottoms.iter().enumerate() {
            let [n, c, h, w] = legacy_dims(&b.size())?;
            let dims: Vec<u32> = [w, h, c, n]
                .iter()
                .map(|&d| {
                    u32::try_from(d).map_err(|_| Error::invalid(format!("a dimension of {d} does not fit a MAT-file")))
                })
                .collect::<Result<_>>()?;
            let path = PathBuf::from(format!("{}{name}_blob_{i}.mat", self.prefix));
            crate::util::write_atomic(Path::new(&path), &mat_file("data", &dims, &tensor_values(b)?))?;
        }
        Ok(vec![])
    }
}
