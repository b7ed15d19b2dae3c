// Switching between the emulator's fibers (tests/emulated_cuda/emulated_cuda.cpp) without a
// system call. glibc's swapcontext saves and restores the signal mask with a system call at every
// switch: in the sweeps of every selftest op on the emulated kernels that was about 80% of the
// time (perf, 2026-12-06: __swapcontext and the kernel's sigprocmask). On x86-64 a switch here
// saves only what the ABI asks a callee to keep (rbx, rbp, r12-r15, the stack pointer, MXCSR's
// control bits and the x87 control word); the signal mask is never changed by the kernels under
// test. Elsewhere it falls back to swapcontext, as it does where the compiler builds for CET
// shadow stacks (-fcf-protection=return): the first switch to a fiber returns to an address no
// call pushed, which a shadow stack refuses.
#pragma once

#include <cstddef>

#if defined(__x86_64__) && !(defined(__CET__) && (__CET__ & 2))
#define RF_FIBER_SWITCH_IN_ASSEMBLY 1
#else
#define RF_FIBER_SWITCH_IN_ASSEMBLY 0
#endif

#if !RF_FIBER_SWITCH_IN_ASSEMBLY
#include <ucontext.h>
#endif

namespace rf::emulated_cuda {

struct FiberContext {
#if RF_FIBER_SWITCH_IN_ASSEMBLY
  void* stack_pointer = nullptr;  // where the switch away left its saved registers
#else
  ucontext_t context{};
#endif
};

// Makes `fiber` start `entry` on the stack [stack, stack + bytes) at the first switch to it.
// `entry` must never return: it ends by switching away for good.
void prepare_fiber(FiberContext& fiber, char* stack, size_t bytes, void (*entry)());

// Saves the running context in `from` and runs `to` from where it was saved or prepared.
void switch_fiber(FiberContext& from, FiberContext& to);

}  // namespace rf::emulated_cuda
