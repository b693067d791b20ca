//! `caffe-engine`: Caffe's command line on caffe-tch (`caffe_tch::cli`), with
//! libtorch. The `caffe` launcher (src/bin/caffe.rs) runs it for every command
//! that needs libtorch, under the name `caffe`.

// Layer libraries register their types in this process (build.rs exports this symbol).
caffe_tch::define_layer_library_registration!();

fn main() {
    let code = caffe_tch::cli::main(std::env::args_os().collect(), &caffe_tch::cli::Host::Binary);
    // Everything this process writes is written when the command returns
    // (files through the atomic writer, log lines unbuffered, Rust's stdout
    // flushed by cli::main). What a normal exit would add is libtorch's static
    // destructors, which deregister every operator one by one and take a
    // visible part of a short command's time; so leave without them, once C's
    // stdio buffers (libtorch may print through them) are flushed.
    // SAFETY: fflush(NULL) flushes every C stream; _exit ends the process.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(i32::from(code))
    }
}
