//! Build script: compiles `proto/caffe.proto` into Rust types (prost) and a
//! descriptor set (for the reflective text-format parser), `proto/onnx.proto`
//! (the ONNX subset `caffe export` writes) into Rust types, links libtorch
//! so that the binary finds it at run time (its CUDA half is opened on demand),
//! and compiles `csrc/dist_shim.cpp`, the C API over c10d's Gloo process group.
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
