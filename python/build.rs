// The wheel's extension lies in site-packages/caffe/ and finds PyTorch's
// libtorch in site-packages/torch/lib (torch is imported first anyway; the
// rpath is for tools that load the library alone, like ldd).
fn main() {
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
}
