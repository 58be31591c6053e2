// A SIRIUS-style memory pool class on mamba.h.
//
// SIRIUS asks its memory pool for buffers by size and memory type (host,
// pinned host, device) and gives them back by pointer. This class keeps
// that interface and hands the work to mamba: one placement per memory
// type (device: the GPU, else DRAM; pinned: pinned host memory, else
// DRAM), allocations that say where they landed, and copies between any
// two of them. Exits 0 when a host -> device -> host round trip keeps the
// data and misuse is reported, not fatal.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mamba.h"

enum class memory_t { host, host_pinned, device };

static void check(mamba_status s, const char *what) {
  if (s != MAMBA_OK)
    throw std::runtime_error(std::string(what) + ": " + mamba_status_description(s));
}

class memory_pool {
 public:
  memory_pool() {
    check(mamba_init(nullptr), "mamba_init");
    const uint32_t host[] = {MAMBA_TIER_HBM, MAMBA_TIER_DRAM};
    const uint32_t pinned[] = {MAMBA_TIER_PINNED, MAMBA_TIER_DRAM};
    const uint32_t device[] = {MAMBA_TIER_GPU, MAMBA_TIER_DRAM};
    check(mamba_placement_prefer(host, 2, -1, &host_), "host placement");
    check(mamba_placement_prefer(pinned, 2, -1, &pinned_), "pinned placement");
    check(mamba_placement_prefer(device, 2, -1, &device_), "device placement");
  }
  ~memory_pool() { mamba_finalize(); }
  memory_pool(const memory_pool &) = delete;
  memory_pool &operator=(const memory_pool &) = delete;

  template <typename T>
  T *allocate(size_t n, memory_t M) {
    void *p = nullptr;
    check(mamba_alloc(placement(M), n * sizeof(T), alignof(T) < 64 ? 64 : alignof(T), &p),
          "allocate");
    return static_cast<T *>(p);
  }

  void free(void *p) { check(mamba_free(p), "free"); }

  /// Where a buffer of this pool lives ("dram0", "gpu0", ...).
  std::string where(const void *p) const {
    mamba_space s;
    check(mamba_alloc_space(p, &s, nullptr), "where");
    return s.name;
  }

  /// Copies buffer src into buffer dst of the same size, across tiers.
  void copy(void *dst, const void *src) { check(mamba_copy(dst, src), "copy"); }

  /// A unique_ptr that frees through the pool.
  template <typename T>
  auto get_unique_ptr(size_t n, memory_t M) {
    auto deleter = [this](T *p) { this->free(p); };
    return std::unique_ptr<T, decltype(deleter)>(allocate<T>(n, M), deleter);
  }

 private:
  mamba_placement placement(memory_t M) const {
    switch (M) {
      case memory_t::host: return host_;
      case memory_t::host_pinned: return pinned_;
      default: return device_;
    }
  }
  mamba_placement host_ = nullptr, pinned_ = nullptr, device_ = nullptr;
};

int main() {
  memory_pool mp;
  const size_t n = 1 << 16;
  auto psi = mp.get_unique_ptr<double>(n, memory_t::host);
  auto staging = mp.get_unique_ptr<double>(n, memory_t::host_pinned);
  auto back = mp.get_unique_ptr<double>(n, memory_t::host);
  double *d_psi = mp.allocate<double>(n, memory_t::device);
  for (size_t i = 0; i < n; i++) psi.get()[i] = 1.0 / (1.0 + i);

  mp.copy(staging.get(), psi.get());
  mp.copy(d_psi, staging.get());  // host -> device
  mp.copy(back.get(), d_psi);     // device -> host
  for (size_t i = 0; i < n; i++)
    if (back.get()[i] != psi.get()[i]) {
      std::fprintf(stderr, "element %zu differs\n", i);
      return 1;
    }
  std::printf("psi in %s, staging in %s, device buffer in %s: round trip exact\n",
              mp.where(psi.get()).c_str(), mp.where(staging.get()).c_str(),
              mp.where(d_psi).c_str());
  mp.free(d_psi);

  // Misuse is an exception with a reason, not a crash.
  try {
    mp.free(d_psi);
    std::fprintf(stderr, "double free accepted\n");
    return 1;
  } catch (const std::runtime_error &e) {
    std::printf("double free refused: %s\n", e.what());
  }
  std::vector<double> stack(16);
  if (mamba_free(stack.data()) != MAMBA_UNKNOWN_POINTER) return 1;
  auto small = mp.get_unique_ptr<double>(16, memory_t::host);
  if (mamba_copy(small.get(), psi.get()) != MAMBA_INVALID_ARGUMENT) return 1;
  std::printf("sirius_pool: ok\n");
  return 0;
}
