// KernelExecutor<Backend> implements every kernel of KernelOps by handing it to
// Backend::for_each(executor, n, op) (an OpenMP loop on the CPU, a grid-stride kernel on the GPU,
// or a tuned kernel the backend has for that op when the executor's variant allows it). It is
// instantiated once per executor, in kernels/cpu/ and kernels/cuda/.
#pragma once

#include "kernels/executor.h"

namespace rf {

template <class Backend, class Base, class... Ops>
struct KernelImpl;
template <class Backend, class Base>
struct KernelImpl<Backend, Base> : Base {
  using Base::run;
};
template <class Backend, class Base, class Op, class... Rest>
struct KernelImpl<Backend, Base, Op, Rest...> : KernelImpl<Backend, Base, Rest...> {
  using KernelImpl<Backend, Base, Rest...>::run;
  void run(int64_t n, const Op& op) override {
    if (n <= 0) return;
    this->count_launch();
    Backend::for_each(*this, n, op);
  }
};

template <class Backend, class List>
struct KernelImplOf;
template <class Backend, class... Ops>
struct KernelImplOf<Backend, TypeList<Ops...>> {
  using type = KernelImpl<Backend, Executor, Ops...>;
};

template <class Backend>
using KernelExecutor = typename KernelImplOf<Backend, KernelOps>::type;

}  // namespace rf
