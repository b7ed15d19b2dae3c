#include "kernels/cpu/onednn_matmul.h"

#include <algorithm>
#include <dnnl.hpp>
#include <map>
#include <sstream>
#include <tuple>

#include "base/error.h"

namespace rf {

namespace {

std::string isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    default:
      return "isa " + std::to_string(static_cast<int>(isa));
  }
}

// The ISA values are nested bit sets: each includes the ones below it (AMX includes BF16).
bool isa_includes(dnnl::cpu_isa isa, dnnl::cpu_isa part) {
  const auto bits = static_cast<unsigned>(isa), wanted = static_cast<unsigned>(part);
  return (bits & wanted) == wanted;
}

}  // namespace

std::string onednn_isa_name() {
  return isa_name(dnnl::get_effective_cpu_isa());
}

bool onednn_has_avx512() {
  return isa_includes(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core);
}

bool onednn_has_bf16_dot_products() {
  return isa_includes(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core_bf16);
}

struct OnednnMatmul::Impl {
  dnnl::memory::data_type operands;
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  // One primitive per product shape (the model repeats a handful of shapes every step).
  using Key =
      std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, float>;
  std::map<Key, dnnl::matmul> primitives;

  // c = alpha op(a) op(b) + beta c, in oneDNN on all threads.
  void execute(const GemmDesc& d, const void* a, const void* b, float* c) {
    using dnnl::memory;
    // oneDNN is row-major: column-major C [m, n] is row-major C^T [n, m] = op(B)^T op(A)^T, and
    // a column-major matrix with leading dimension ld is its row-major transpose with row
    // stride ld.
    const memory::desc src({d.n, d.k}, operands,
                           d.trans_b ? memory::dims{1, d.ldb} : memory::dims{d.ldb, 1});
    const memory::desc weights({d.k, d.m}, operands,
                               d.trans_a ? memory::dims{1, d.lda} : memory::dims{d.lda, 1});
    const memory::desc dst({d.n, d.m}, memory::data_type::f32, memory::dims{d.ldc, 1});
    const Key key{d.trans_a, d.trans_b, d.m, d.n, d.k, d.lda, d.ldb, d.ldc, d.alpha, d.beta};
    auto it = primitives.find(key);
    if (it == primitives.end()) {
      dnnl::primitive_attr attr;
      if (d.alpha != 1.0f) attr.set_output_scales(0, {d.alpha});
      if (d.beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(d.beta);  // dst = matmul result + beta * dst
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, dst), attr, engine);
      it = primitives.emplace(key, dnnl::matmul(pd)).first;
    }
    // (oneDNN reads its inputs only: the const_casts do not write through them.)
    memory src_mem(src, engine, const_cast<void*>(b)),
        weights_mem(weights, engine, const_cast<void*>(a)), dst_mem(dst, engine, c);
    it->second.execute(
        stream,
        {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, weights_mem}, {DNNL_ARG_DST, dst_mem}});
    stream.wait();
  }
};

OnednnMatmul::OnednnMatmul(OperandType operands) : impl_(std::make_unique<Impl>()) {
  impl_->operands =
      operands == OperandType::kBf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

OnednnMatmul::~OnednnMatmul() = default;

std::string OnednnMatmul::describe() const {
  const dnnl_version_t* v = dnnl_version();
  std::ostringstream s;
  s << "oneDNN " << v->major << "." << v->minor << "." << v->patch << " "
    << (impl_->operands == dnnl::memory::data_type::bf16 ? "bf16" : "fp32") << " ("
    << onednn_isa_name() << ")";
  return s.str();
}

void OnednnMatmul::multiply(const GemmDesc& d, const void* a, const void* b, float* c) {
  RF_CHECK(d.batch == 1 && d.k > 0, "OnednnMatmul takes one product of depth > 0, got a batch of ",
           d.batch, ", depth ", d.k);
  const bool bf16 = impl_->operands == dnnl::memory::data_type::bf16;
  const int64_t bytes = bf16 ? 2 : 4;
  const int64_t depth = thread_independent_depth(bf16 ? OperandType::kBf16 : OperandType::kFp32);
  const auto* a_bytes = static_cast<const char*>(a);
  const auto* b_bytes = static_cast<const char*>(b);
  try {
    // The depth in slices of at most `depth`, added into C one after another.
    for (int64_t k0 = 0; k0 < d.k; k0 += depth) {
      GemmDesc slice = d;
      slice.k = std::min(depth, d.k - k0);
      if (k0 > 0) slice.beta = 1.0f;
      // Column k0 of op(A) and row k0 of op(B) in their stored (column-major) layouts.
      const int64_t a_offset = d.trans_a ? k0 : k0 * d.lda, b_offset = d.trans_b ? k0 * d.ldb : k0;
      impl_->execute(slice, a_bytes + a_offset * bytes, b_bytes + b_offset * bytes, c);
    }
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul (m ", d.m, ", n ", d.n, ", k ", d.k, "): ", e.what());
  }
}

}  // namespace rf
