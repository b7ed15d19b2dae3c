#include "tests/emulated_cuda/fiber_switch.h"

#include <cstdint>
#include <cstring>

#if RF_FIBER_SWITCH_IN_ASSEMBLY
// rf_emulation_switch(void** save_to, void* load_from): pushes the callee-saved registers and
// the floating-point control state, stores the stack pointer in *save_to, then loads load_from as
// the stack pointer and pops what a previous switch (or prepare_fiber) left there.
extern "C" void rf_emulation_switch(void** save_to, void* load_from);
asm(R"(
  .pushsection .text
  .globl rf_emulation_switch
  .hidden rf_emulation_switch
  .type rf_emulation_switch, @function
rf_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size rf_emulation_switch, .-rf_emulation_switch
  .popsection
)");
#endif

namespace rf::emulated_cuda {

#if RF_FIBER_SWITCH_IN_ASSEMBLY

void prepare_fiber(FiberContext& fiber, char* stack, size_t bytes, void (*entry)()) {
  // The frame rf_emulation_switch pops, below a 16-byte aligned top: the control state (this
  // thread's), six registers (zero), `entry` as the return address, and a zero where entry's own
  // return address would be (so that it starts with the stack aligned as after a call, and a
  // backtrace ends there).
  char* const end = stack + bytes;
  char* const top = end - (reinterpret_cast<uintptr_t>(end) & 15);
  auto* frame = reinterpret_cast<uint64_t*>(top) - 9;
  std::memset(frame, 0, 9 * sizeof(uint64_t));
  uint32_t mxcsr = 0;
  uint16_t x87_control = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(x87_control));
  std::memcpy(frame, &mxcsr, sizeof mxcsr);
  std::memcpy(reinterpret_cast<char*>(frame) + 4, &x87_control, sizeof x87_control);
  frame[7] = reinterpret_cast<uint64_t>(entry);
  fiber.stack_pointer = frame;
}

void switch_fiber(FiberContext& from, FiberContext& to) {
  rf_emulation_switch(&from.stack_pointer, to.stack_pointer);
}

#else

void prepare_fiber(FiberContext& fiber, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack;
  fiber.context.uc_stack.ss_size = bytes;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, entry, 0);
  // (glibc's swapcontext does not read uc_stack after makecontext; ASan's interceptor does, and
  // would clear the poison around every frame of the fiber's stack at each switch.)
  fiber.context.uc_stack.ss_sp = nullptr;
  fiber.context.uc_stack.ss_size = 0;
}

void switch_fiber(FiberContext& from, FiberContext& to) {
  swapcontext(&from.context, &to.context);
}

#endif

}  // namespace rf::emulated_cuda
