//! `caffe link_build_tree CAFFE_ROOT`: the programs a Caffe build leaves in
//! `build/` (`build/tools/caffe`, `build/tools/convert_imageset`,
//! `build/examples/mnist/convert_mnist_data.bin`, ...; `.build_release/` is
//! a link to `build/`, as Caffe's Makefile links them), each a link to this
//! `caffe`, so that Caffe's own scripts (`examples/mnist/create_mnist.sh`,
//! `train_lenet.sh`) and a user's scripts that call them run unchanged. A
//! program started under one of those names runs that command
//! ([`command_for_program`]); the links are made whole (a new link takes the
//! place of an old one in one rename), and a file there that is not a link,
//! such as a real Caffe build's program, is left alone.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::gflags::{self, Spec};
use crate::{info, warn, Error, Result};

pub const SPEC: Spec = Spec { tool: "link_build_tree", usage: "CAFFE_ROOT", bools: &[], values: &[] };

/// The `caffe` commands that Caffe builds as programs of their own, by the
/// program's name (without `.bin`), and the folder under `build/` where its
/// Makefile leaves each (as `NAME.bin`, with `NAME` beside it for tools).
const PROGRAMS: &[(&str, &str)] = &[
    ("caffe", "tools"),
    ("compute_image_mean", "tools"),
    ("convert_imageset", "tools"),
    ("extract_features", "tools"),
    ("upgrade_net_proto_text", "tools"),
    ("upgrade_net_proto_binary", "tools"),
    ("upgrade_solver_proto_text", "tools"),
    // The SSD fork's tools.
    ("convert_annoset", "tools"),
    ("get_image_size", "tools"),
    ("convert_mnist_data", "examples/mnist"),
    ("convert_cifar_data", "examples/cifar10"),
    ("convert_mnist_siamese_data", "examples/siamese"),
];

/// The `caffe` command a program started as `program` (its argv[0]) stands
/// for: `build/tools/convert_imageset` or `convert_imageset.bin` is `caffe
/// convert_imageset`. None for `caffe` itself and any other name.
pub fn command_for_program(program: &OsStr) -> Option<&'static str> {
    let name = Path::new(program).file_name()?.to_str()?;
    let name = name.strip_suffix(".bin").unwrap_or(name);
    PROGRAMS.iter().map(|&(n, _)| n).find(|&n| n == name && n != "caffe")
}

pub fn main(args: &[String]) -> Result<()> {
    let flags = gflags::parse(&SPEC, args)?;
    gflags::expect_positional(&SPEC, &flags, 1, 1)?;
    let exe = std::env::current_exe().map_err(|e| Error::invalid(format!("cannot find this executable: {e}")))?;
    // The launcher beside the engine: it starts faster, and passes the name on.
    let launcher = exe.with_file_name("caffe");
    if !launcher.is_file() {
        return Err(Error::invalid(format!(
            "link_build_tree: {} is not there; run link_build_tree with the caffe binary",
            launcher.display()
        )));
    }
    let made = link(Path::new(&flags.positional[0]), &launcher)?;
    info!(
        "link_build_tree.cpp:1",
        "Linked {} programs under {} to {}",
        made.len(),
        flags.positional[0],
        launcher.display()
    );
    Ok(())
}

/// Makes `root/build/...` links to `target` for every program; returns the
/// links made. Fails if `root` is not a folder.
pub fn link(root: &Path, target: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(Error::invalid(format!("link_build_tree: {} is not a folder", root.display())));
    }
    let mut made = Vec::new();
    // Caffe's Makefile builds into .build_release, with `build` a link to it;
    // scripts name either. Here `build` is the folder and .build_release the link.
    let release = root.join(".build_release");
    if release.symlink_metadata().is_err() {
        std::fs::create_dir_all(root.join("build")).map_err(|e| Error::io(root.join("build"), e))?;
        replace_link(&release, Path::new("build"))?;
    }
    for &(name, dir) in PROGRAMS {
        let folder = root.join("build").join(dir);
        std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        let mut names = vec![format!("{name}.bin")];
        if dir == "tools" {
            names.push(name.to_string());
        }
        for file in names {
            let path = folder.join(&file);
            if path.symlink_metadata().is_ok_and(|m| !m.file_type().is_symlink()) {
                warn!(
                    "link_build_tree.cpp:1",
                    "Kept {}: it is not a link (a Caffe build's own program?)",
                    path.display()
                );
                continue;
            }
            replace_link(&path, target)?;
            made.push(path);
        }
    }
    Ok(made)
}

/// `path` becomes a link to `target`: a new link renamed over it, so the
/// name is never missing or half-made.
fn replace_link(path: &Path, target: &Path) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        // The rename's error is the one to report; the temporary link is all that is left.
        std::fs::remove_file(&tmp).ok();
        return Err(Error::io(path, e));
    }
    Ok(())
}
