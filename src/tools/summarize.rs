//! `caffe summarize`: parse, upgrade and summarise prototxt files. This is how a
//! user checks that a folder of Caffe files is understood before running it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::info;
use crate::proto::caffe::{LabelMap, NetParameter, SolverParameter};
use crate::proto::{text, upgrade};
use crate::Result;

/// Collects `*.prototxt` under each path (files are taken as given), sorted.
pub fn collect_prototxt(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                crate::warn!("summarize.cpp:1", "{}: cannot list the folder: {e}", dir.display());
                return;
            }
        };
        let mut entries = Vec::new();
        for e in rd {
            match e {
                Ok(e) => entries.push(e.path()),
                Err(e) => crate::warn!("summarize.cpp:1", "{}: cannot read an entry: {e}", dir.display()),
            }
        }
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "prototxt") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)
        } else {
            out.push(p.clone())
        }
    }
    out
}

/// A solver file is recognised by its name, as in Caffe's examples.
pub fn looks_like_solver(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().contains("solver"))
}

/// The SSD fork's label maps (labelmap_voc.prototxt and the like), which sit
/// beside its nets, are recognised by their names too.
pub fn looks_like_label_map(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().contains("labelmap"))
}

/// One summary line for a net: name, layer count and the layer types used.
pub fn summarize_net(net: &NetParameter) -> String {
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &net.layer {
        *types.entry(l.r#type()).or_default() += 1;
    }
    let list: Vec<String> = types.iter().map(|(t, n)| format!("{t}×{n}")).collect();
    format!("net \"{}\": {} layers ({})", net.name(), net.layer.len(), list.join(", "))
}

/// The net files a solver names must exist and parse. Caffe resolves them
/// against the working directory; when that fails the error also names the
/// solver's folder, where users usually meant them to be.
pub fn check_solver_nets(solver_path: &Path, s: &SolverParameter, opts: text::TextOptions) -> Result<()> {
    let names = s.net.iter().chain(s.train_net.iter()).chain(s.test_net.iter());
    for name in names {
        let p = resolve_solver_path(solver_path, name)?;
        text::read_file_nonempty::<NetParameter>(&p, opts)?;
    }
    Ok(())
}

/// Resolves a path named in a solver as Caffe does (relative to the working
/// directory); a missing file is an error naming both places it looked.
pub fn resolve_solver_path(solver_path: &Path, name: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    if p.exists() {
        return Ok(p);
    }
    let dir = solver_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Err(crate::Error::Solver {
        file: solver_path.display().to_string(),
        msg: format!(
            "net file \"{name}\" not found (paths in a solver are relative to the working directory, {}; the solver's folder is {})",
            std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            dir.display()
        ),
    })
}

pub fn run(paths: &[PathBuf], opts: text::TextOptions) -> Result<()> {
    let files = collect_prototxt(paths);
    for path in &files {
        let file = path.display().to_string();
        if looks_like_solver(path) {
            let mut s = text::read_file_nonempty::<SolverParameter>(path, opts)?.message;
            let report = upgrade::upgrade_solver(&mut s, &file)?;
            let upgraded =
                if report.steps.is_empty() { String::new() } else { format!(" [upgraded: {}]", report.describe()) };
            check_solver_nets(path, &s, opts)?;
            info!(
                "summarize.cpp:1",
                "{file}: solver type {} base_lr {} lr_policy \"{}\" max_iter {}{upgraded}",
                s.r#type(),
                s.base_lr(),
                s.lr_policy(),
                s.max_iter()
            );
        } else if looks_like_label_map(path) {
            let map = text::read_file_nonempty::<LabelMap>(path, opts)?.message;
            info!("summarize.cpp:1", "{file}: label map of {} items", map.item.len());
        } else {
            let mut net = text::read_file_nonempty::<NetParameter>(path, opts)?.message;
            let report = upgrade::upgrade_net(&mut net, &file)?;
            let upgraded =
                if report.steps.is_empty() { String::new() } else { format!(" [upgraded: {}]", report.describe()) };
            info!("summarize.cpp:1", "{file}: {}{upgraded}", summarize_net(&net));
        }
    }
    info!("summarize.cpp:1", "{} files parsed and upgraded", files.len());
    Ok(())
}
