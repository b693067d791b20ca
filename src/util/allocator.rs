//! The caching CPU allocator (`csrc/cpu_allocator.cpp`): large tensor blocks
//! are kept by size and reused by the next tensor of that size, so a training
//! step's peak resident memory is what it holds live and no page is faulted
//! twice. The `caffe` binary installs it; a library user (the Python module)
//! keeps libtorch's default, which the rest of their process shares.

extern "C" {
    fn caffe_tch_install_caching_cpu_allocator();
    fn caffe_tch_cpu_allocator_trim();
    fn caffe_tch_cpu_allocator_mark_iteration();
    fn caffe_tch_cpu_allocator_stats(
        held: *mut u64,
        peak_held: *mut u64,
        idle: *mut u64,
        mapped: *mut u64,
        released: *mut u64,
    );
}

/// Environment variable that keeps libtorch's default allocator (`system`).
pub const ALLOCATOR_ENV: &str = "CAFFE_TCH_CPU_ALLOCATOR";

/// Makes the caching allocator libtorch's CPU allocator, unless
/// `CAFFE_TCH_CPU_ALLOCATOR=system`. Tensors allocated before keep their own
/// deleter, so this is safe at any time; calling it again does nothing.
pub fn install_caching_cpu_allocator() {
    if std::env::var(ALLOCATOR_ENV).is_ok_and(|v| v == "system") {
        return;
    }
    // SAFETY: takes no arguments; the C++ side installs once under a once_flag.
    unsafe { caffe_tch_install_caching_cpu_allocator() }
}

/// Returns the blocks no tensor holds to the system.
pub fn trim() {
    // SAFETY: takes no arguments; the pool is guarded by its mutex.
    unsafe { caffe_tch_cpu_allocator_trim() }
}

/// A training iteration begins: blocks idle through the whole previous one
/// go back to the system (a test pass's, a peak's the steps no longer reach).
pub fn mark_iteration() {
    // SAFETY: takes no arguments; the pool is guarded by its mutex.
    unsafe { caffe_tch_cpu_allocator_mark_iteration() }
}

/// Bytes in large blocks: held by tensors now, held at the peak, idle,
/// mapped since the start (growth of a reused block included) and returned
/// to the system since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    pub held: u64,
    pub peak_held: u64,
    pub idle: u64,
    pub mapped: u64,
    pub released: u64,
}

pub fn stats() -> AllocatorStats {
    let (mut held, mut peak_held, mut idle, mut mapped, mut released) = (0u64, 0u64, 0u64, 0u64, 0u64);
    // SAFETY: five valid out-pointers to u64, written under the pool's mutex.
    unsafe { caffe_tch_cpu_allocator_stats(&mut held, &mut peak_held, &mut idle, &mut mapped, &mut released) };
    AllocatorStats { held, peak_held, idle, mapped, released }
}
