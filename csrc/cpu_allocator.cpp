// A caching CPU allocator for libtorch, installed by the caffe binary
// (src/util/allocator.rs).
//
// Why: a training step frees and allocates the same large tensors every
// iteration (activations, their gradients, backward's temporaries). glibc
// serves them from its heap once its dynamic mmap threshold has grown, and
// freed blocks then stay resident, split and merged around unrelated small
// allocations; forcing them onto mmap instead costs a page fault per page per
// step. Here a large block freed by a tensor is kept idle and handed to the
// next tensor that fits it (at most twice its size), so a step reuses the
// previous step's pages. A block keeps the pages it has had: giving back the
// tail a smaller tensor leaves unused would make the next larger tensor in it
// fault them in again, every step. When no idle block fits but a smaller one
// is idle, that one grows (mremap) instead of a new block being mapped, so
// the pages a backward frees serve the differently sized gradients it makes
// next rather than staying resident beside new ones. A block that stays idle
// through a whole training iteration goes back to the system. Small blocks
// stay with libtorch's default allocator.
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
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

// A mapped block: its size, and how much of it, from the start, is resident
// (the most any tensor in it used; pages past that were never touched).
struct Block {
  void* ptr = nullptr;
  std::size_t size = 0;
  std::size_t resident = 0;
  // The iteration (see caffe_tch_cpu_allocator_mark_iteration) it went idle in.
  std::uint64_t idle_since = 0;
};

struct Pool {
  std::mutex mutex;
  // Blocks no tensor holds (few: a net's worth of large tensors).
  std::vector<Block> idle;
  // block address -> the block, for every block a tensor holds
  std::unordered_map<void*, Block> held;
  std::size_t held_bytes = 0;
  std::size_t idle_bytes = 0;
  std::size_t peak_held_bytes = 0;
  // Every block mapped so far, in bytes (a block grown counts its growth).
  std::size_t mapped_bytes = 0;
  // Every block returned to the system so far, in bytes.
  std::size_t released_bytes = 0;
  // Training iterations begun (marked by the solver).
  std::uint64_t iteration = 0;
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
  for (const Block& block : p.idle) {
    munmap(block.ptr, block.size);
    p.released_bytes += block.size;
  }
  p.idle.clear();
  p.idle_bytes = 0;
}

// The small-block allocator's deleter, for blocks freed through
// raw_deallocate (which calls our raw_deleter on every block, small or large).
c10::DeleterFnPtr small_deleter = nullptr;

void release(void* ptr) {
  Pool& p = pool();
  std::unique_lock<std::mutex> lock(p.mutex);
  auto it = p.held.find(ptr);
  if (it == p.held.end()) {
    lock.unlock();
    if (small_deleter != nullptr) {
      small_deleter(ptr);
    }
    return;
  }
  Block block = it->second;
  block.idle_since = p.iteration;
  p.held.erase(it);
  p.held_bytes -= block.size;
  p.idle.push_back(block);
  p.idle_bytes += block.size;
}

// Caller holds the pool's mutex. Removes idle block k.
Block pop_idle_locked(Pool& p, std::size_t k) {
  Block block = p.idle[k];
  p.idle[k] = p.idle.back();
  p.idle.pop_back();
  p.idle_bytes -= block.size;
  return block;
}

// Caller holds the pool's mutex. Returns an idle block for n bytes, or one
// whose ptr is null. Among the blocks large enough and at most kMaxFit times
// the tensor's size class: the one whose resident pages come closest to what
// the tensor uses (fewest pages to fault in, then fewest resident beyond its
// end). Else, rather than mapping a new block while freed pages sit resident,
// the largest idle block smaller than n, grown in place or moved by the
// kernel (mremap keeps its resident pages: only the growth is faulted in). A
// much larger block is left for a tensor of its size.
Block take_idle_locked(Pool& p, std::size_t n) {
  std::size_t used = round_to_pages(n);
  std::size_t wanted = size_class(n);
  std::size_t best = p.idle.size();
  std::size_t best_faults = 0, best_excess = 0;
  std::size_t smaller = p.idle.size();
  for (std::size_t k = 0; k < p.idle.size(); ++k) {
    const Block& b = p.idle[k];
    if (b.size < used) {
      if (smaller == p.idle.size() || b.size > p.idle[smaller].size) {
        smaller = k;
      }
      continue;
    }
    if (b.size > kMaxFit * wanted) {
      continue;
    }
    std::size_t faults = used > b.resident ? used - b.resident : 0;
    std::size_t excess = b.resident > used ? b.resident - used : 0;
    if (best == p.idle.size() || faults < best_faults || (faults == best_faults && excess < best_excess)) {
      best = k;
      best_faults = faults;
      best_excess = excess;
    }
  }
  if (best < p.idle.size()) {
    Block block = pop_idle_locked(p, best);
    if (block.resident < used) {
      block.resident = used;
    }
    return block;
  }
  if (smaller == p.idle.size()) {
    return Block{};
  }
  Block block = pop_idle_locked(p, smaller);
  void* grown = mremap(block.ptr, block.size, wanted, MREMAP_MAYMOVE);
  if (grown == MAP_FAILED) {
    p.idle.push_back(block);
    p.idle_bytes += block.size;
    return Block{};
  }
  p.mapped_bytes += wanted - block.size;
  return Block{grown, wanted, used};
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
    Block block = take_idle_locked(p, n);
    if (block.ptr == nullptr) {
      block.size = size_class(n);
      block.resident = round_to_pages(n);
      block.ptr = map_block(block.size);
      if (block.ptr == nullptr) {
        // Idle blocks of other sizes may be what stands between us and the limit.
        unmap_idle_locked(p);
        block.ptr = map_block(block.size);
      }
      TORCH_CHECK_WITH(OutOfMemoryError, block.ptr != nullptr, "out of memory allocating ", n, " bytes (",
                       p.held_bytes, " bytes held by tensors)");
      p.mapped_bytes += block.size;
    }
    p.held.emplace(block.ptr, block);
    p.held_bytes += block.size;
    if (p.held_bytes > p.peak_held_bytes) {
      p.peak_held_bytes = p.held_bytes;
    }
    return {block.ptr, block.ptr, &release, c10::Device(c10::DeviceType::CPU)};
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

// A training iteration begins: the blocks that stayed idle through the whole
// previous one (a test pass's, or a peak's that the steps no longer reach)
// are returned to the system, so a long run's memory comes back down to what
// its steps use. A block a step uses is idle for less than an iteration.
void caffe_tch_cpu_allocator_mark_iteration() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  ++p.iteration;
  for (std::size_t k = 0; k < p.idle.size();) {
    if (p.iteration - p.idle[k].idle_since >= 2) {
      Block block = pop_idle_locked(p, k);
      munmap(block.ptr, block.size);
      p.released_bytes += block.size;
    } else {
      ++k;
    }
  }
}

// Bytes in large blocks: held by tensors now, held at the peak, kept idle,
// mapped since the start and returned since the start.
void caffe_tch_cpu_allocator_stats(std::uint64_t* held, std::uint64_t* peak_held, std::uint64_t* idle,
                                   std::uint64_t* mapped, std::uint64_t* released) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  *held = p.held_bytes;
  *peak_held = p.peak_held_bytes;
  *idle = p.idle_bytes;
  *mapped = p.mapped_bytes;
  *released = p.released_bytes;
}

}  // extern "C"
