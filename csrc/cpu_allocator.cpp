// A caching CPU allocator for libtorch, installed by the caffe binary
// (src/util/allocator.rs).
//
// Why: a training step frees and allocates the same large tensors every
// iteration (activations, their gradients, backward's temporaries). glibc
// serves them from its heap once its dynamic mmap threshold has grown, and
// freed blocks then stay resident, split and merged around unrelated small
// allocations; forcing them onto mmap instead costs a page fault per page per
// step. Here a large block freed by a tensor is kept idle and handed to the
// next tensor that fits it (the smallest idle block at least as large, and at
// most twice as large), so a step reuses the previous step's pages. Pages past
// the new tensor's end are given back to the system (MADV_DONTNEED), so a
// large block serving a small tensor holds only what that tensor uses.
// Small blocks stay with libtorch's default allocator.
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::size_t kLargeBlock = std::size_t{1} << 20;
constexpr std::size_t kPage = 4096;
// A block serves a tensor of at least 1/kMaxFit of its size.
constexpr std::size_t kMaxFit = 2;
// Size classes per doubling: a new block is rounded up to one, so that
// tensors of similar sizes can share it later. Its pages past the tensor's
// end are never touched, so the rounding costs address space, not memory.
constexpr std::size_t kClassesPerDoubling = 4;

struct Pool {
  std::mutex mutex;
  // block size -> idle blocks of that size
  std::map<std::size_t, std::vector<void*>> idle;
  // block -> its size, for every block a tensor holds
  std::unordered_map<void*, std::size_t> held;
  std::size_t held_bytes = 0;
  std::size_t idle_bytes = 0;
  std::size_t peak_held_bytes = 0;
};

Pool& pool() {
  // Never destroyed: tensors may be freed during static destruction.
  static Pool* p = new Pool();
  return *p;
}

std::size_t round_to_pages(std::size_t n) { return (n + kPage - 1) / kPage * kPage; }

std::size_t size_class(std::size_t n) {
  std::size_t pages = round_to_pages(n) / kPage;
  std::size_t top = 1;
  while (top * 2 <= pages) {
    top *= 2;
  }
  std::size_t step = top / kClassesPerDoubling;
  if (step > 0) {
    pages = (pages + step - 1) / step * step;
  }
  return pages * kPage;
}

// Caller holds the pool's mutex.
void unmap_idle_locked(Pool& p) {
  for (auto& entry : p.idle) {
    for (void* block : entry.second) {
      munmap(block, entry.first);
    }
  }
  p.idle.clear();
  p.idle_bytes = 0;
}

// The small-block allocator's deleter, for blocks freed through
// raw_deallocate (which calls our raw_deleter on every block, small or large).
c10::DeleterFnPtr small_deleter = nullptr;

void release(void* block) {
  Pool& p = pool();
  std::unique_lock<std::mutex> lock(p.mutex);
  auto it = p.held.find(block);
  if (it == p.held.end()) {
    lock.unlock();
    if (small_deleter != nullptr) {
      small_deleter(block);
    }
    return;
  }
  std::size_t size = it->second;
  p.held.erase(it);
  p.held_bytes -= size;
  p.idle[size].push_back(block);
  p.idle_bytes += size;
}

// Caller holds the pool's mutex. Returns an idle block that fits n bytes, or
// nullptr; its size in *size.
void* take_idle_locked(Pool& p, std::size_t n, std::size_t* size) {
  std::size_t wanted = size_class(n);
  auto it = p.idle.lower_bound(wanted);
  if (it == p.idle.end() || it->first > kMaxFit * wanted) {
    return nullptr;
  }
  void* block = it->second.back();
  it->second.pop_back();
  *size = it->first;
  if (it->second.empty()) {
    p.idle.erase(it);
  }
  p.idle_bytes -= *size;
  std::size_t used = round_to_pages(n);
  if (*size > used) {
    // Advisory: if it fails, the tail simply stays resident.
    madvise(static_cast<char*>(block) + used, *size - used, MADV_DONTNEED);
  }
  return block;
}

void* map_block(std::size_t size) {
  void* block = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return block == MAP_FAILED ? nullptr : block;
}

struct CachingCpuAllocator final : c10::Allocator {
  explicit CachingCpuAllocator(c10::Allocator* small) : small_(small) {}

  c10::DataPtr allocate(std::size_t n) override {
    if (n < kLargeBlock) {
      return small_->allocate(n);
    }
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    std::size_t size = 0;
    void* block = take_idle_locked(p, n, &size);
    if (block == nullptr) {
      size = size_class(n);
      block = map_block(size);
      if (block == nullptr) {
        // Idle blocks of other sizes may be what stands between us and the limit.
        unmap_idle_locked(p);
        block = map_block(size);
      }
      TORCH_CHECK_WITH(OutOfMemoryError, block != nullptr, "out of memory allocating ", n, " bytes (",
                       p.held_bytes, " bytes held by tensors)");
    }
    p.held.emplace(block, size);
    p.held_bytes += size;
    if (p.held_bytes > p.peak_held_bytes) {
      p.peak_held_bytes = p.held_bytes;
    }
    return {block, block, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  c10::Allocator* small_;
};

}  // namespace

extern "C" {

// Makes the caching allocator libtorch's CPU allocator. Idempotent.
void caffe_tch_install_caching_cpu_allocator() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* small = c10::GetDefaultCPUAllocator();
    small_deleter = small->raw_deleter();
    static CachingCpuAllocator* allocator = new CachingCpuAllocator(small);
    c10::SetCPUAllocator(allocator, /*priority=*/100);
  });
}

// Returns the idle blocks to the system.
void caffe_tch_cpu_allocator_trim() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  unmap_idle_locked(p);
}

// Bytes in large blocks: held by tensors now, held at the peak, kept idle.
void caffe_tch_cpu_allocator_stats(std::uint64_t* held, std::uint64_t* peak_held, std::uint64_t* idle) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  *held = p.held_bytes;
  *peak_held = p.peak_held_bytes;
  *idle = p.idle_bytes;
}

}  // extern "C"
