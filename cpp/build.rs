//! libcaffe.so finds libtorch where it was built against (an rpath to
//! libtorch's folder), so a program linked with -lcaffe runs without
//! LD_LIBRARY_PATH, as one linked with BVLC Caffe's did.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{lib}");
    }
}
