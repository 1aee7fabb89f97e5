// cuda_sim.h — run unchanged CUDA kernel sources on the CPU.
//
// Force-included (g++ -include cuda_sim.h) before a .cu file. It maps CUDA's execution
// model onto the host:
//   * a *block* runs on one worker OS thread; blocks are shared out among the workers;
//   * each CUDA *thread* of the block is a fiber (ucontext) on that worker, so a block of
//     256 threads costs 256 small stacks, not 256 OS threads;
//   * __syncthreads() switches fibers: a fiber runs until it reaches the barrier, and
//     the barrier opens once every fiber of the block has reached it. Fibers run one
//     after another, so a *missing* barrier shows up deterministically as wrong results;
//   * __shared__ variables are `static thread_local`: every fiber of a block (same worker)
//     sees one copy, and blocks on different workers never share;
//   * atomics are real atomics (blocks on different workers do run at the same time);
//   * bounds checking: buffers allocated with cuda_sim_guarded_alloc end exactly at a
//     PROT_NONE page, so the first element past the end faults; the fault is caught,
//     and the launch fails with the kernel's name, the buffer and the element index.
#pragma once
#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <csetjmp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

using std::max;
using std::min;
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

#define __global__
#define __device__ static inline
#define __host__
#define __forceinline__
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict
#define __shared__ static thread_local

namespace cuda_sim {

enum class State { Ready, AtBarrier, Done };

struct Fiber {
    ucontext_t context;
    dim3 idx;
    State state = State::Ready;
    char* stack = nullptr;
};

constexpr size_t kStackBytes = 64 * 1024;

inline dim3 grid_dim, block_dim;
inline thread_local dim3 block_idx;
inline thread_local Fiber* current = nullptr;
inline thread_local ucontext_t scheduler;
inline thread_local const std::function<void()>* body = nullptr;
struct FiberPool {  // stacks are mapped once per worker thread and unmapped when it ends
    std::vector<Fiber> fibers;
    ~FiberPool() {
        for (Fiber& f : fibers)
            if (f.stack) munmap(f.stack, kStackBytes);
    }
};
inline thread_local FiberPool pool;
inline thread_local sigjmp_buf fault_exit;
inline thread_local bool fault_armed = false;

inline std::mutex error_mutex;
inline std::string error_message;
inline std::atomic<int> error_code{0};
inline const char* kernel_name = "";
inline int worker_count = 0;

inline void fail(int code, const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (error_code.load() == 0) {
        error_message = message;
        error_code = code;
    }
}

// ---- guarded buffers and the fault handler ------------------------------------------------
struct Guarded {
    char* base;       // first byte handed out
    size_t bytes;
    size_t element;   // element size, to report an index
    std::string label;
    char* mapping;
    size_t mapping_bytes;
};
inline std::mutex guard_mutex;
inline std::vector<Guarded> guarded;

inline struct sigaction previous_segv, previous_bus;

inline void on_fault(int signal_number, siginfo_t* info, void*) {
    char* address = static_cast<char*>(info->si_addr);
    if (!fault_armed) {  // not a kernel's fault: hand it back to whoever handled it before
        sigaction(signal_number, signal_number == SIGSEGV ? &previous_segv : &previous_bus, nullptr);
        return;          // the faulting instruction runs again, under the previous handler
    }
    std::string where = "an address outside every guarded buffer";
    for (const Guarded& g : guarded) {
        if (address >= g.mapping && address < g.mapping + g.mapping_bytes) {
            long long index = (address - g.base) / (long long)g.element;
            where = "buffer '" + g.label + "' at element " + std::to_string(index) + " (valid 0.." +
                    std::to_string((long long)(g.bytes / g.element) - 1) + ")";
            break;
        }
    }
    char text[512];
    snprintf(text, sizeof text, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): out-of-range access to %s",
             kernel_name, block_idx.x, block_idx.y, block_idx.z, current ? current->idx.x : 0,
             current ? current->idx.y : 0, current ? current->idx.z : 0, where.c_str());
    fail(1, text);
    siglongjmp(fault_exit, 1);
}

// Installed for the duration of one launch only, so Python's own handlers (faulthandler)
// stay in charge everywhere else.
inline void install_fault_handler() {
    struct sigaction action {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
    sigaction(SIGBUS, &action, &previous_bus);
}

inline void restore_fault_handler() {
    sigaction(SIGSEGV, &previous_segv, nullptr);
    sigaction(SIGBUS, &previous_bus, nullptr);
}

// ---- fibers --------------------------------------------------------------------------------
inline void fiber_entry() {
    (*body)();
    current->state = State::Done;  // returning resumes the scheduler (uc_link)
}

inline void syncthreads() {
    current->state = State::AtBarrier;
    swapcontext(&current->context, &scheduler);
}

inline bool run_block(const std::function<void()>& kernel) {
    const unsigned count = block_dim.x * block_dim.y * block_dim.z;
    std::vector<Fiber>& fibers = pool.fibers;
    if (fibers.size() < count) fibers.resize(count);
    body = &kernel;
    for (unsigned t = 0; t < count; ++t) {
        Fiber& f = fibers[t];
        if (!f.stack) f.stack = static_cast<char*>(mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        f.idx = {t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
        f.state = State::Ready;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_entry, 0);
    }
    for (;;) {
        for (unsigned t = 0; t < count; ++t) {
            if (fibers[t].state != State::Ready) continue;
            current = &fibers[t];
            swapcontext(&scheduler, &current->context);
        }
        unsigned done = 0, waiting = 0;
        for (unsigned t = 0; t < count; ++t) {
            done += fibers[t].state == State::Done;
            waiting += fibers[t].state == State::AtBarrier;
        }
        if (done == count) return true;
        if (done > 0) {
            fail(2, std::string("kernel ") + kernel_name + ": __syncthreads() reached by " + std::to_string(waiting) +
                        " of " + std::to_string(count) + " threads of a block (the others exited): deadlock on a GPU");
            return false;
        }
        for (unsigned t = 0; t < count; ++t) fibers[t].state = State::Ready;  // the barrier opens
    }
}

inline void worker(std::atomic<long long>* next, long long blocks, const std::function<void()>* kernel) {
    fault_armed = true;
    if (sigsetjmp(fault_exit, 1) != 0) {  // a guarded access faulted inside this worker
        fault_armed = false;
        current = nullptr;
        return;
    }
    for (long long b; (b = next->fetch_add(1)) < blocks && error_code.load() == 0;) {
        block_idx = {(unsigned)(b % grid_dim.x), (unsigned)((b / grid_dim.x) % grid_dim.y),
                     (unsigned)(b / ((long long)grid_dim.x * grid_dim.y))};
        if (!run_block(*kernel)) break;
    }
    fault_armed = false;
    current = nullptr;
}

inline int launch(dim3 grid, dim3 block, const char* name, const std::function<void()>& kernel) {
    const unsigned threads = block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0) {
        error_message = std::string("kernel ") + name + ": invalid launch (grid " + std::to_string(grid.x) + "x" +
                        std::to_string(grid.y) + "x" + std::to_string(grid.z) + ", block of " +
                        std::to_string(threads) + " threads; at most 1024)";
        return error_code = 3;
    }
    grid_dim = grid;
    block_dim = block;
    kernel_name = name;
    error_code = 0;
    error_message.clear();
    const long long blocks = (long long)grid.x * grid.y * grid.z;
    install_fault_handler();
    int workers = worker_count > 0 ? worker_count : (int)std::max(1u, std::thread::hardware_concurrency());
    workers = (int)std::min<long long>(workers, blocks);
    std::atomic<long long> next{0};
    if (workers == 1) {
        worker(&next, blocks, &kernel);
    } else {
        std::vector<std::thread> threads;
        for (int w = 0; w < workers; ++w) threads.emplace_back(worker, &next, blocks, &kernel);
        for (auto& t : threads) t.join();
    }
    restore_fault_handler();
    return error_code.load();
}

}  // namespace cuda_sim

#define threadIdx (cuda_sim::current->idx)
#define blockIdx (cuda_sim::block_idx)
#define blockDim (cuda_sim::block_dim)
#define gridDim (cuda_sim::grid_dim)

static inline void __syncthreads() { cuda_sim::syncthreads(); }

static inline float atomicAdd(float* address, float value) {
    float old, desired;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
        desired = old + value;
    } while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    return old;
}
static inline int atomicAdd(int* address, int value) { return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST); }
static inline float atomicMax(float* address, float value) {
    float old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    while (old < value && !__atomic_compare_exchange(address, &old, &value, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
    }
    return old;
}

// ---- the C interface the Python side calls (through cffi) ---------------------------------------
extern "C" {
const char* cuda_sim_last_error() { return cuda_sim::error_message.c_str(); }
void cuda_sim_set_workers(int workers) { cuda_sim::worker_count = workers; }

// `bytes` usable bytes that end exactly where a PROT_NONE page begins (a page before the
// start is protected too), so an index one past the end faults.
void* cuda_sim_guarded_alloc(size_t bytes, size_t element, const char* label) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + page - 1) / page * page;
    const size_t total = body + 2 * page;
    char* mapping = static_cast<char*>(mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (mapping == MAP_FAILED) return nullptr;
    mprotect(mapping, page, PROT_NONE);
    mprotect(mapping + page + body, page, PROT_NONE);
    char* base = mapping + page + body - bytes;
    std::lock_guard<std::mutex> lock(cuda_sim::guard_mutex);
    cuda_sim::guarded.push_back({base, bytes, element, label, mapping, total});
    return base;
}

void cuda_sim_guarded_free(void* pointer) {
    std::lock_guard<std::mutex> lock(cuda_sim::guard_mutex);
    auto& list = cuda_sim::guarded;
    for (size_t i = 0; i < list.size(); ++i) {
        if (list[i].base == pointer) {
            munmap(list[i].mapping, list[i].mapping_bytes);
            list.erase(list.begin() + (long)i);
            return;
        }
    }
}
}
