//! Build script: compiles `proto/caffe.proto` into Rust types (prost) and a
//! descriptor set (for the reflective text-format parser), `proto/onnx.proto`
//! (the ONNX subset `caffe export` writes) into Rust types, links libtorch
//! so that the binary finds it at run time (its CUDA half is opened on demand),
//! compiles `csrc/dist_shim.cpp`, the C API over c10d's Gloo process group,
//! `csrc/cpu_allocator.cpp`, the caching CPU allocator the binary installs,
//! `csrc/onednn_ops.cpp`, oneDNN kernels reached through the dispatcher, and
//! `csrc/lrn.cpp`, LRN's CPU forward and backward,
//! and builds the CUDA shim (`csrc/nccl_shim.cpp`: NCCL, for CUDA tensors;
//! `csrc/cuda_graph.cpp`: CUDA graphs) as a shared library of its own beside
//! the binary, when the CUDA headers are there; and `csrc/jpeg.c`, JPEG
//! through the system's libjpeg, as OpenCV decodes and encodes.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/caffe.proto");
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    // protox is a pure-Rust protobuf compiler: no `protoc` binary needed on a fresh machine.
    let fds = protox::compile(["proto/caffe.proto"], ["proto"])?;
    let fds_bytes = prost::Message::encode_to_vec(&fds);
    fs::write(out_dir.join("caffe_descriptor.bin"), &fds_bytes)?;
    prost_build::Config::new()
        // `prost::Name` impls let generic code find a message's descriptor by its full name.
        .enable_type_names()
        .compile_fds(fds)?;
    // The ONNX subset `caffe export` writes (no reflection needed).
    prost_build::Config::new().compile_fds(protox::compile(["proto/onnx.proto"], ["proto"])?)?;
    compile_jpeg_shim();
    compile_jpeg2000_shim();
    // Layer libraries bind their REGISTER_LAYER_CLASS to the engine's own
    // function (src/layers/external/library.rs), so the executable exports it.
    println!("cargo:rustc-link-arg-bin=caffe-engine=-Wl,--export-dynamic-symbol=caffe_tch_register_layer_table");

    // torch-sys passes its lib folder as DEP_TCH_LIBTORCH_LIB (its `links = "tch"`).
    // It adds no rpath itself, so without this the binary needs LD_LIBRARY_PATH.
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=CAFFE_TCH_LIBTORCH_VERSION={}", libtorch_version(&PathBuf::from(&lib)));
        // libtorch_cuda.so is not linked (the linker's --as-needed drops it:
        // no symbol refers to it); src/util/cuda.rs opens it from here when
        // CUDA is asked for, so CPU runs never map the CUDA libraries.
        println!("cargo:rustc-env=CAFFE_TCH_LIBTORCH_LIB={lib}");
        compile_dist_shim(&PathBuf::from(&lib));
        compile_cpu_shims(&PathBuf::from(&lib));
        let shim = build_cuda_shim(&PathBuf::from(&lib), &out_dir).unwrap_or_else(|why| {
            println!(
                "cargo:warning=the CUDA shim (NCCL, CUDA graphs) was not built (-gpu with several devices and \
                 -cuda_graph will say so): {why}"
            );
            String::new()
        });
        println!("cargo:rustc-env=CAFFE_TCH_CUDA_SHIM={shim}");
    }
    Ok(())
}

/// The c10d shim (src/dist/group.rs), built as torch-sys builds its own
/// wrapper: C++17, libtorch's include folders, its C++ ABI. The c10d headers
/// are in the torch wheel; Gloo's headers (not shipped there) come from
/// Debian's libgloo-dev (`make system-deps`). Its symbols are in
/// libtorch_cpu, which torch-sys links already.
fn compile_dist_shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/dist_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_errors.h");
    let include = lib.parent().unwrap_or(lib).join("include");
    if !include.join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp").exists() {
        println!(
            "cargo:warning=no c10d headers under {}: is this libtorch built without distributed support?",
            include.display()
        );
    }
    if !std::path::Path::new("/usr/include/gloo/config.h").exists() {
        println!("cargo:warning=Gloo headers not found in /usr/include/gloo: install libgloo-dev (make system-deps)");
    }
    cc::Build::new()
        .cpp(true)
        .file("csrc/dist_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_GLOO", None)
        // libtorch's headers use C++20 bit-field initialisers that GCC accepts in C++17 with a warning.
        .flag_if_supported("-Wno-c++20-extensions")
        .warnings(false)
        .compile("caffe_dist_shim");
}

/// The CPU shims, linked in: the caching allocator (src/util/allocator.rs),
/// the oneDNN kernels called through the dispatcher (src/layers/onednn.rs)
/// autograd's gradient edges (src/util/grad_edge.rs), LRN's forward
/// and backward (src/layers/vision/lrn.rs) and the reshape out of a
/// channels-last blob (src/layers/layout.rs);
/// they need libtorch's headers and symbols, not the c10d ones.
fn compile_cpu_shims(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/cpu_allocator.cpp");
    println!("cargo:rerun-if-changed=csrc/onednn_ops.cpp");
    println!("cargo:rerun-if-changed=csrc/lrn.cpp");
    println!("cargo:rerun-if-changed=csrc/grad_edges.cpp");
    println!("cargo:rerun-if-changed=csrc/layout_reshape.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_errors.h");
    let include = lib.parent().unwrap_or(lib).join("include");
    cc::Build::new()
        .cpp(true)
        .file("csrc/cpu_allocator.cpp")
        .file("csrc/onednn_ops.cpp")
        .file("csrc/grad_edges.cpp")
        .file("csrc/lrn.cpp")
        .file("csrc/layout_reshape.cpp")
        .include(&include)
        .flag("-std=c++17")
        // sqrt without errno vectorises (csrc/lrn.cpp); no fused multiply-add
        // contractions, so a kernel rounds as the tensor ops it replaces do.
        .flag("-fno-math-errno")
        .flag("-ffp-contract=off")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("caffe_cpu_shims");
}

/// The JPEG codec (src/data/jpeg.rs) over the system's libjpeg(-turbo),
/// the library OpenCV uses (Debian's libjpeg-dev, `make system-deps`).
fn compile_jpeg_shim() {
    println!("cargo:rerun-if-changed=csrc/jpeg.c");
    if !std::path::Path::new("/usr/include/jpeglib.h").exists() {
        println!("cargo:warning=jpeglib.h not found in /usr/include: install libjpeg-dev (make system-deps)");
    }
    cc::Build::new().file("csrc/jpeg.c").flag("-std=c99").compile("caffe_jpeg_shim");
    println!("cargo:rustc-link-lib=jpeg");
}

/// JPEG 2000 (src/data/jpeg2000.rs) over the system's OpenJPEG, the library
/// OpenCV's JPEG 2000 reader uses (Debian's libopenjp2-7-dev, `make system-deps`).
fn compile_jpeg2000_shim() {
    println!("cargo:rerun-if-changed=csrc/jpeg2000.c");
    let include = std::fs::read_dir("/usr/include").into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("openjpeg-")) && p.join("openjpeg.h").exists()
    });
    let Some(include) = include else {
        println!("cargo:warning=openjpeg.h not found under /usr/include: install libopenjp2-7-dev (make system-deps)");
        cc::Build::new().file("csrc/jpeg2000.c").flag("-std=c99").compile("caffe_jpeg2000_shim");
        return;
    };
    cc::Build::new().file("csrc/jpeg2000.c").include(include).flag("-std=c99").compile("caffe_jpeg2000_shim");
    println!("cargo:rustc-link-lib=openjp2");
}

/// The file name src/util/cuda.rs opens.
const CUDA_SHIM: &str = "libcaffe_tch_cuda.so";

/// Builds `csrc/nccl_shim.cpp` and `csrc/cuda_graph.cpp` into
/// `libcaffe_tch_cuda.so`, linked against libtorch_cuda (whose
/// ProcessGroupNCCL and CUDAGraph they call), in OUT_DIR and copied beside
/// the binary; returns its OUT_DIR path. It is a separate library, not
/// part of the binary, so that only a CUDA run opens it and the CUDA
/// libraries behind it (src/util/cuda.rs). The headers: c10d's from the torch
/// wheel, cuda_runtime_api.h and nccl.h from the NVIDIA wheels torch depends
/// on, and the CUDA C runtime's and CCCL's, which no installed wheel has, from
/// `make cuda-headers` (PyPI's nvidia-cuda-crt and nvidia-cuda-cccl in
/// .venv-build-cuda/; CAFFE_TCH_CUDA_HEADERS names another include folder).
fn build_cuda_shim(lib: &std::path::Path, out_dir: &std::path::Path) -> Result<String, String> {
    println!("cargo:rerun-if-changed=csrc/nccl_shim.cpp");
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-env-changed=CAFFE_TCH_CUDA_HEADERS");
    let include = lib.parent().unwrap_or(lib).join("include");
    // torch/lib → site-packages, where the nvidia-* wheels install.
    let site = lib.parent().and_then(|t| t.parent()).ok_or("libtorch is not inside a Python environment")?;
    let cuda = site.join("nvidia/cu13/include");
    let nccl = site.join("nvidia/nccl/include");
    let extra = match env::var("CAFFE_TCH_CUDA_HEADERS") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?)
            .join(".venv-build-cuda/nvidia/cu13/include"),
    };
    for (file, from) in [
        (lib.join("libtorch_cuda.so"), "a CUDA build of PyTorch"),
        (include.join("torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp"), "the torch wheel"),
        (cuda.join("cuda_runtime_api.h"), "the nvidia-cuda-runtime wheel"),
        (nccl.join("nccl.h"), "the nvidia-nccl wheel"),
        (extra.join("crt/host_config.h"), "`make cuda-headers`, then rebuild"),
    ] {
        if !file.exists() {
            return Err(format!("{} is missing (it comes from {from})", file.display()));
        }
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .cargo_metadata(false)
        .file("csrc/nccl_shim.cpp")
        .file("csrc/cuda_graph.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&cuda)
        .include(&nccl)
        .include(&extra)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("USE_C10D_NCCL", None)
        .define("USE_CUDA", None)
        .flag_if_supported("-Wno-c++20-extensions")
        .warnings(false);
    let objects = build.try_compile_intermediates().map_err(|e| format!("compiling the CUDA shim: {e}"))?;
    let so = out_dir.join(CUDA_SHIM);
    let output = build
        .get_compiler()
        .to_command()
        .arg("-shared")
        .arg("-o")
        .arg(&so)
        .args(&objects)
        .arg(format!("-L{}", lib.display()))
        .args(["-ltorch_cuda", "-lc10_cuda", "-ltorch_cpu", "-lc10"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .map_err(|e| format!("linking {CUDA_SHIM}: {e}"))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!("linking {CUDA_SHIM}: {}", err.lines().last().unwrap_or("failed")));
    }
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out: the binary is in <target>/<profile>.
    if let Some(profile_dir) = out_dir.ancestors().nth(3) {
        let beside = profile_dir.join(CUDA_SHIM);
        let tmp = profile_dir.join(format!(".{CUDA_SHIM}.tmp"));
        fs::copy(&so, &tmp)
            .and_then(|_| fs::rename(&tmp, &beside))
            .map_err(|e| format!("{}: {e}", beside.display()))?;
    }
    Ok(so.display().to_string())
}

/// The libtorch version, from PyTorch's `torch/version.py` or a standalone
/// libtorch's `build-version` file next to its `lib/` folder.
fn libtorch_version(lib: &std::path::Path) -> String {
    let root = lib.parent().unwrap_or(lib);
    if let Ok(v) = fs::read_to_string(root.join("build-version")) {
        return v.trim().to_string();
    }
    if let Ok(py) = fs::read_to_string(root.join("version.py")) {
        for line in py.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                return rest
                    .trim_start_matches([' ', '=', ':'])
                    .split('=')
                    .next_back()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(['\'', '"'])
                    .to_string();
            }
        }
    }
    "unknown".to_string()
}
