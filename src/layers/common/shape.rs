//! Layers that move data without arithmetic: Concat, Slice, Flatten, Reshape,
//! Tile, Silence, Filter, BatchReindex. Their gradients are the matching
//! gather/scatter, which autograd derives from the forward ops.
use crate::Result;
use tch::{Kind, Tensor};

use super::{at_least_bottoms, float_indices, forbid_in_place};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{ConcatParameter, LayerParameter, SliceParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Concat",
        family: family_of(file!()),
        params: "axis, concat_dim (legacy; not both)",
        tests: "layers_common: concat_* (values, legacy concat_dim, shape mismatch error, gradient check)",
        create: |p| Ok(Box::new(Concat::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Slice",
        family: family_of(file!()),
        params: "axis, slice_point (or an equal split over the tops), slice_dim (legacy; not both)",
        tests: "layers_common: slice_* (slice points, equal split, legacy slice_dim, bad points, gradient check)",
        create: |p| Ok(Box::new(Slice::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Flatten",
        family: family_of(file!()),
        params: "axis, end_axis (no in-place, as in Caffe)",
        tests: "layers_common: flatten_* (shapes, gradient check)",
        create: |p| Ok(Box::new(Flatten::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Reshape",
        family: family_of(file!()),
        params: "shape (0 copies a bottom dim, one -1 is inferred), axis, num_axes (no in-place, as in Caffe)",
        tests: "layers_common: reshape_* (0/-1 inference, axis/num_axes, errors, new batch size, gradient check)",
        create: |p| Ok(Box::new(Reshape::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Tile",
        family: family_of(file!()),
        params: "axis, tiles",
        tests: "layers_common: tile_* (values, gradient check)",
        create: |p| Ok(Box::new(Tile::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Silence",
        family: family_of(file!()),
        params: "(none: consumes its bottoms, no tops)",
        tests: "layers_common: silence_* (net with a silenced blob)",
        create: |_| Ok(Box::new(Silence)),
    });
    r.push(LayerInfo {
        type_name: "Filter",
        family: family_of(file!()),
        params: "(bottoms to filter, then the selector; tops keep the items whose selector is non-zero. The top's first dim is data-dependent: setup declares the bottom's)",
        tests: "layers_common: filter_* (selection, empty selection, net with a data-dependent shape, gradient check)",
        create: |_| Ok(Box::new(Filter)),
    });
    r.push(LayerInfo {
        type_name: "BatchReindex",
        family: family_of(file!()),
        params: "(bottom[1]: 1-D item indices stored as floats; out of range is an error; repeated indices accumulate gradients)",
        tests: "layers_common: batch_reindex_* (values, bad index error, gradient check)",
        create: |_| Ok(Box::new(BatchReindex)),
    });
}

/// Caffe's legacy `concat_dim`/`slice_dim`: a uint32 axis, no negative indexing.
fn legacy_axis(dim: u32, ndim: usize, name: &str) -> Result<usize> {
    if dim as usize >= ndim {
        bail!("{name} {dim} out of range for a {ndim}-D blob");
    }
    Ok(dim as usize)
}

pub struct Concat {
    p: ConcatParameter,
}

impl Concat {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.concat_param.unwrap_or_default();
        if p.axis.is_some() && p.concat_dim.is_some() {
            bail!("Either axis or concat_dim should be specified; not both.");
        }
        Ok(Concat { p })
    }

    fn axis(&self, ndim: usize) -> Result<usize> {
        match self.p.concat_dim {
            Some(d) => legacy_axis(d, ndim, "concat_dim"),
            None => canonical_axis(self.p.axis(), ndim),
        }
    }

    /// The top shape, after checking the bottoms agree on every other axis.
    fn top_shape(&self, bottoms: &[Shape]) -> Result<(usize, Shape)> {
        let first = &bottoms[0];
        let axis = self.axis(first.len())?;
        let mut top = first.clone();
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if b.len() != first.len() {
                bail!("All inputs must have the same #axes: bottom[0] is {first:?}, bottom[{i}] is {b:?}");
            }
            if let Some(j) = (0..b.len()).find(|&j| j != axis && b[j] != first[j]) {
                bail!(
                    "All inputs must have the same shape, except at concat axis {axis}: bottom[0] {first:?} and bottom[{i}] {b:?} differ at axis {j}"
                );
            }
            top[axis] += b[axis];
        }
        Ok((axis, top))
    }
}

impl Layer for Concat {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 1)?;
        let (_, top) = self.top_shape(bottoms)?;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (axis, _) = self.top_shape(&shapes)?;
        Ok(vec![Tensor::f_cat(bottoms, axis as i64)?])
    }
}

pub struct Slice {
    p: SliceParameter,
    tops: usize,
}

impl Slice {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.slice_param.clone().unwrap_or_default();
        if p.axis.is_some() && p.slice_dim.is_some() {
            bail!("Either axis or slice_dim should be specified; not both.");
        }
        Ok(Slice { p, tops: lp.top.len() })
    }

    /// The slice axis and each top's extent along it.
    fn sizes(&self, bottom: &[i64]) -> Result<(usize, Vec<i64>)> {
        let axis = match self.p.slice_dim {
            Some(d) => legacy_axis(d, bottom.len(), "slice_dim")?,
            None => canonical_axis(self.p.axis(), bottom.len())?,
        };
        let dim = bottom[axis];
        let n = self.tops as i64;
        if self.tops == 0 {
            bail!("Slice needs at least one top");
        }
        if self.p.slice_point.is_empty() {
            if dim % n != 0 {
                bail!("Number of top blobs ({n}) should evenly divide input slice axis ({dim}, axis {axis})");
            }
            return Ok((axis, vec![dim / n; self.tops]));
        }
        if self.p.slice_point.len() != self.tops - 1 {
            bail!(
                "{} slice_point(s) given for {} tops: give one fewer than the tops",
                self.p.slice_point.len(),
                self.tops
            );
        }
        if n > dim {
            bail!("{n} tops cannot slice axis {axis} of size {dim}");
        }
        let mut sizes = Vec::with_capacity(self.tops);
        let mut prev = 0i64;
        for &pt in &self.p.slice_point {
            let pt = pt as i64;
            if pt <= prev {
                bail!("slice_point values must be strictly increasing and positive: {:?}", self.p.slice_point);
            }
            sizes.push(pt - prev);
            prev = pt;
        }
        if prev > dim {
            bail!("slice_point {prev} is past the end of axis {axis} (size {dim})");
        }
        // A last point equal to the size leaves an empty last top, as in Caffe.
        sizes.push(dim - prev);
        Ok((axis, sizes))
    }
}

impl Layer for Slice {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let (axis, sizes) = self.sizes(&bottoms[0])?;
        let tops = sizes
            .iter()
            .map(|&s| {
                let mut t = bottoms[0].clone();
                t[axis] = s;
                t
            })
            .collect();
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let (axis, sizes) = self.sizes(&x.size())?;
        Ok(x.f_split_with_sizes(sizes.as_slice(), axis as i64)?)
    }
}

pub struct Flatten {
    axis: i32,
    end_axis: i32,
}

impl Flatten {
    fn new(lp: &LayerParameter) -> Result<Self> {
        forbid_in_place(lp)?;
        let p = lp.flatten_param.unwrap_or_default();
        Ok(Flatten { axis: p.axis(), end_axis: p.end_axis() })
    }

    fn top_shape(&self, s: &[i64]) -> Result<Shape> {
        let start = canonical_axis(self.axis, s.len())?;
        let end = canonical_axis(self.end_axis, s.len())?;
        // Caffe's count(start, end + 1) needs start <= end + 1; end == start - 1
        // flattens nothing and inserts a unit axis.
        if end + 1 < start {
            bail!("Flatten end_axis {end} is before axis {start} (bottom {s:?})");
        }
        let mut top = s[..start].to_vec();
        top.push(count(s, start, end + 1));
        top.extend_from_slice(&s[end + 1..]);
        Ok(top)
    }
}

impl Layer for Flatten {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![self.top_shape(&bottoms[0])?], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![x.f_reshape(self.top_shape(&x.size())?.as_slice())?])
    }
}

/// Reshape, with Caffe's rules: the new dims replace bottom axes
/// `axis .. axis + num_axes` (num_axes -1: to the end; a negative axis counts
/// from the end, -1 meaning "after the last axis"); 0 copies the bottom dim
/// at the same position; one -1 takes whatever count is left.
pub struct Reshape {
    dims: Vec<i64>,
    axis: i32,
    num_axes: i32,
    copy_axes: Vec<usize>,
    inferred_axis: Option<usize>,
    constant_count: i64,
}

impl Reshape {
    fn new(lp: &LayerParameter) -> Result<Self> {
        forbid_in_place(lp)?;
        let p = lp.reshape_param.clone().unwrap_or_default();
        let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        let mut copy_axes = vec![];
        let mut inferred_axis = None;
        let mut constant_count = 1i64;
        for (i, &d) in dims.iter().enumerate() {
            match d {
                0 => copy_axes.push(i),
                -1 => {
                    if inferred_axis.is_some() {
                        bail!("new shape {dims:?} contains multiple -1 dims; at most a single (1) value of -1 may be specified");
                    }
                    inferred_axis = Some(i);
                }
                d if d < -1 => bail!("new shape {dims:?} has an invalid dim {d} (use 0 to copy, -1 to infer)"),
                d => constant_count *= d,
            }
        }
        if p.num_axes() < -1 {
            bail!("num_axes must be >= 0, or -1 for all; got {}", p.num_axes());
        }
        Ok(Reshape { dims, axis: p.axis(), num_axes: p.num_axes(), copy_axes, inferred_axis, constant_count })
    }

    fn top_shape(&self, bottom: &[i64]) -> Result<Shape> {
        let n = bottom.len() as i64;
        let start = if self.axis >= 0 { self.axis as i64 } else { n + self.axis as i64 + 1 };
        if start < 0 || start > n {
            bail!("axis {} out of range for a {n}-D input blob {bottom:?}", self.axis);
        }
        let start = start as usize;
        let end = if self.num_axes == -1 { bottom.len() } else { start + self.num_axes as usize };
        if end > bottom.len() {
            bail!("end_axis = axis + num_axes ({end}) is out of range for a {n}-D input blob {bottom:?}");
        }
        let mut top = bottom[..start].to_vec();
        top.extend_from_slice(&self.dims);
        top.extend_from_slice(&bottom[end..]);
        for &c in &self.copy_axes {
            if start + c >= bottom.len() {
                bail!("new shape {:?} contains a 0 at position {c}, but there was no corresponding bottom axis to copy (bottom {bottom:?})", self.dims);
            }
            top[start + c] = bottom[start + c];
        }
        let bottom_count: i64 = bottom.iter().product();
        if let Some(i) = self.inferred_axis {
            let mut explicit = self.constant_count * count(bottom, 0, start) * count(bottom, end, bottom.len());
            for &c in &self.copy_axes {
                explicit *= top[start + c];
            }
            if explicit == 0 || bottom_count % explicit != 0 {
                bail!(
                    "bottom count ({bottom_count}, shape {bottom:?}) must be divisible by the product of the specified dimensions ({explicit}) to infer the -1 in {:?}",
                    self.dims
                );
            }
            top[start + i] = bottom_count / explicit;
        }
        let top_count: i64 = top.iter().product();
        if top_count != bottom_count {
            bail!("output count must match input count: new shape {top:?} has {top_count} elements, bottom {bottom:?} has {bottom_count}");
        }
        Ok(top)
    }
}

impl Layer for Reshape {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![self.top_shape(&bottoms[0])?], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![x.f_reshape(self.top_shape(&x.size())?.as_slice())?])
    }
}

/// Tile: repeats the block of axes from `axis` on `tiles` times along `axis`.
pub struct Tile {
    axis: i32,
    tiles: i64,
    canonical: usize,
}

impl Tile {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.tile_param.unwrap_or_default();
        let Some(tiles) = p.tiles else { bail!("tile_param.tiles must be specified") };
        if tiles <= 0 {
            bail!("Number of tiles must be positive, got {tiles}");
        }
        Ok(Tile { axis: p.axis(), tiles: tiles as i64, canonical: 0 })
    }
}

impl Layer for Tile {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        self.canonical = canonical_axis(self.axis, bottoms[0].len())?;
        let mut top = bottoms[0].clone();
        top[self.canonical] *= self.tiles;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        // repeat() along one axis copies the whole trailing block, as Caffe's
        // tiling of each count(axis) chunk does.
        let mut reps = vec![1i64; x.dim()];
        reps[self.canonical] = self.tiles;
        Ok(vec![x.f_repeat(reps.as_slice())?])
    }
}

/// Silence: consumes blobs nobody else reads, so they are not net outputs.
pub struct Silence;

impl Layer for Silence {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 1)?;
        Ok(SetupOut::default())
    }

    fn forward(&mut self, _ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![])
    }
}

/// Filter: keeps the items (first-axis entries) of each bottom whose selector
/// value is non-zero. The number kept depends on the data, so `setup` can only
/// declare each bottom's own shape (Caffe's first Reshape does the same); the
/// real top has the selected count on axis 0, possibly 0. Gradients go back
/// to the kept items; the rest get zero, and the selector gets none.
pub struct Filter;

impl Filter {
    fn check(bottoms: &[Shape]) -> Result<()> {
        let selector = &bottoms[bottoms.len() - 1];
        if selector.is_empty() {
            bail!("the selector (last bottom) needs at least one axis");
        }
        if selector[1..].iter().any(|&d| d != 1) {
            bail!("Selector blob dimensions must be singletons (1), except the first; got {selector:?}");
        }
        for (i, b) in bottoms[..bottoms.len() - 1].iter().enumerate() {
            if b.first() != Some(&selector[0]) {
                bail!("Each bottom should have the same 0th dimension as the selector blob: bottom[{i}] is {b:?}, selector is {selector:?}");
            }
        }
        Ok(())
    }
}

impl Layer for Filter {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 2)?;
        Self::check(bottoms)?;
        Ok(SetupOut { tops: bottoms[..bottoms.len() - 1].to_vec(), params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        Self::check(&shapes)?;
        let selector = bottoms[bottoms.len() - 1].detach().f_reshape([-1])?;
        let keep = selector.f_ne(0)?.f_nonzero()?.f_reshape([-1])?;
        let mut tops = Vec::with_capacity(bottoms.len() - 1);
        for b in &bottoms[..bottoms.len() - 1] {
            tops.push(b.f_index_select(0, &keep.f_to_device(b.device())?)?);
        }
        Ok(tops)
    }
}

/// BatchReindex: top item i is bottom[0] item `bottom[1][i]`.
pub struct BatchReindex;

impl Layer for BatchReindex {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        if bottoms[1].len() != 1 {
            bail!("the index blob (bottom[1]) must be 1-D, got {:?}", bottoms[1]);
        }
        if bottoms[0].is_empty() {
            bail!("bottom[0] needs at least one axis");
        }
        let mut top = bottoms[0].clone();
        top[0] = bottoms[1][0];
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        if bottoms[1].dim() != 1 {
            bail!("the index blob (bottom[1]) must be 1-D, got {:?}", bottoms[1].size());
        }
        let idx = float_indices(&bottoms[1], x.size()[0], "BatchReindex")?;
        Ok(vec![x.f_index_select(0, &idx.f_to_device(x.device())?.f_to_kind(Kind::Int64)?)?])
    }
}
