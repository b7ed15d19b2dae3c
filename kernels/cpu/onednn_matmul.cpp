#include "kernels/cpu/onednn_matmul.h"

#include <omp.h>

#include <algorithm>
#include <dnnl.hpp>
#include <exception>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <vector>

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
  // One primitive per product shape (the model repeats a handful of shapes every step), planned
  // for all threads or for one.
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float,
                         float, bool>;
  struct Primitive {
    dnnl::matmul matmul;
    size_t scratchpad_bytes = 0;  // one-thread primitives: the caller's scratchpad
  };
  std::map<Key, Primitive> primitives;
  std::vector<float> partials;  // multiply_in_blocks: a partial sum per depth slice

  // oneDNN is row-major: column-major C [m, n] is row-major C^T [n, m] = op(B)^T op(A)^T, and a
  // column-major matrix with leading dimension ld is its row-major transpose with row stride ld.
  struct Descs {
    dnnl::memory::desc src, weights, dst;
  };
  Descs descs(const GemmDesc& d) const {
    using dnnl::memory;
    return {memory::desc({d.n, d.k}, operands,
                         d.trans_b ? memory::dims{1, d.ldb} : memory::dims{d.ldb, 1}),
            memory::desc({d.k, d.m}, operands,
                         d.trans_a ? memory::dims{1, d.lda} : memory::dims{d.lda, 1}),
            memory::desc({d.n, d.m}, memory::data_type::f32, memory::dims{d.ldc, 1})};
  }

  // The primitive of d's shape. one_thread: planned where OpenMP offers a single thread (so it
  // never splits a sum between threads), with a scratchpad its caller passes, so that several
  // threads may run it at once.
  const Primitive& primitive(const GemmDesc& d, bool one_thread) {
    const Key key{d.trans_a, d.trans_b, d.m,     d.n,    d.k,       d.lda,
                  d.ldb,     d.ldc,     d.alpha, d.beta, one_thread};
    auto it = primitives.find(key);
    if (it != primitives.end()) return it->second;
    const Descs m = descs(d);
    auto make = [&] {
      dnnl::primitive_attr attr;
      if (one_thread) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (d.alpha != 1.0f) attr.set_output_scales(0, {d.alpha});
      if (d.beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(d.beta);  // dst = matmul result + beta * dst
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(m.src, m.weights, m.dst), attr,
                                            engine);
      return Primitive{dnnl::matmul(pd), one_thread ? pd.scratchpad_desc().get_size() : 0};
    };
    Primitive made;
    if (one_thread) {
      std::exception_ptr failure;
#pragma omp parallel num_threads(1)
      {
        omp_set_num_threads(1);  // (the region's own setting: what oneDNN plans with)
        try {
          made = make();
        } catch (...) {
          failure = std::current_exception();
        }
      }
      if (failure) std::rethrow_exception(failure);
    } else {
      made = make();
    }
    return primitives.emplace(key, std::move(made)).first->second;
  }

  // c = alpha op(a) op(b) + beta c, in oneDNN on all threads.
  void execute(const GemmDesc& d, const void* a, const void* b, float* c) {
    run(primitive(d, false), d, a, b, c, stream, nullptr);
  }

  // Runs p on this thread's stream (s) and scratchpad (one-thread primitives).
  void run(const Primitive& p, const GemmDesc& d, const void* a, const void* b, float* c,
           dnnl::stream& s, void* scratchpad) const {
    using dnnl::memory;
    const Descs m = descs(d);
    // (oneDNN reads its inputs only: the const_casts do not write through them.)
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, memory(m.src, engine, const_cast<void*>(b))},
        {DNNL_ARG_WEIGHTS, memory(m.weights, engine, const_cast<void*>(a))},
        {DNNL_ARG_DST, memory(m.dst, engine, c)}};
    if (p.scratchpad_bytes > 0)
      args[DNNL_ARG_SCRATCHPAD] =
          memory({{static_cast<int64_t>(p.scratchpad_bytes)}, memory::data_type::u8, {1}}, engine,
                 scratchpad);
    p.matmul.execute(s, args);
    s.wait();
  }
};

OnednnMatmul::OnednnMatmul(OperandType operands) : impl_(std::make_unique<Impl>()) {
  impl_->operands =
      operands == OperandType::kBf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
}

OnednnMatmul::~OnednnMatmul() = default;

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

std::string OnednnMatmul::describe() const {
  std::ostringstream s;
  s << "oneDNN " << onednn_version() << " "
    << (impl_->operands == dnnl::memory::data_type::bf16 ? "bf16" : "fp32") << " ("
    << onednn_isa_name() << ")";
  return s.str();
}

BlockCuts block_cuts(const GemmDesc& d, BlockPlan plan) {
  BlockCuts cuts;
  // At most kMaxSlices partial sums (deeper slices for deeper products: still the shape's own).
  constexpr int64_t kMaxSlices = 16;
  cuts.slice_depth = std::max(plan.slice_depth, (d.k + kMaxSlices - 1) / kMaxSlices);
  cuts.slices = (d.k + cuts.slice_depth - 1) / cuts.slice_depth;
  cuts.cut_columns = d.n >= d.m;
  cuts.extent = cuts.cut_columns ? d.n : d.m;
  cuts.blocks = std::max<int64_t>(1, cuts.extent / plan.block);
  cuts.block = (cuts.extent + cuts.blocks - 1) / cuts.blocks;
  return cuts;
}

std::optional<BlockPlan> block_plan(const GemmDesc& d, OperandType operands) {
  if (d.k <= thread_independent_depth(operands)) return std::nullopt;
  if (operands == OperandType::kFp32 && std::min(d.m, d.n) >= 512 &&
      std::max({d.m, d.n, d.k}) >= 8192 && d.m * d.n * d.k >= (int64_t{1} << 32))
    return kLargeProductPlan;
  if (operands == OperandType::kBf16 && std::min(d.m, d.n) <= kThinBf16Plan.block) {
    const BlockCuts cuts = block_cuts(d, kThinBf16Plan);
    // Several blocks of one slice, or one block of several slices: never both, so the partial
    // sums stay small (at most 16 x 256 x 511 floats); one of each would leave a thread idle.
    if ((cuts.blocks > 1 && cuts.slices == 1 && !d.trans_b) ||
        (cuts.slices > 1 && cuts.blocks == 1))
      return kThinBf16Plan;
  }
  return std::nullopt;
}

void OnednnMatmul::multiply_in_blocks(const GemmDesc& d, const void* a, const void* b, float* c,
                                      BlockPlan plan) {
  RF_CHECK(d.batch == 1 && d.k > 0 && plan.slice_depth > 0 && plan.block > 0,
           "multiply_in_blocks takes one product of depth > 0 and a plan of positive sizes");
  const int64_t bytes = impl_->operands == dnnl::memory::data_type::bf16 ? 2 : 4;
  const auto* a_bytes = static_cast<const char*>(a);
  const auto* b_bytes = static_cast<const char*>(b);
  const BlockCuts cuts = block_cuts(d, plan);
  const int64_t slices = cuts.slices, blocks = cuts.blocks, block = cuts.block;
  const int64_t extent = cuts.extent;
  const bool cut_columns = cuts.cut_columns;
  const int64_t cells = d.m * d.n;
  if (slices > 1 && static_cast<int64_t>(impl_->partials.size()) < slices * cells)
    impl_->partials.resize(static_cast<size_t>(slices * cells));
  float* partials = impl_->partials.data();
  // Item i: depth slice i / blocks of output block i % blocks, its operands and its output (C,
  // or with several slices the slice's partial sum, packed [m, n], from zero).
  struct Item {
    GemmDesc d;
    const void *a, *b;
    float* c;
    const Impl::Primitive* primitive;
  };
  std::vector<Item> items(static_cast<size_t>(slices * blocks));
  try {
    for (int64_t i = 0; i < slices * blocks; ++i) {
      const int64_t slice = i / blocks, first = i % blocks * block;
      const int64_t k0 = slice * cuts.slice_depth, count = std::min(block, extent - first);
      GemmDesc target = d;  // (several slices: each into its partial sum, packed, from zero)
      if (slices > 1) {
        target.beta = 0.0f;
        target.ldc = d.m;
      }
      const GemmPart part =
          gemm_part(target, k0, std::min(cuts.slice_depth, d.k - k0), cut_columns, first, count);
      Item& item = items[static_cast<size_t>(i)];
      item.d = part.d;
      item.a = a_bytes + part.a_offset * bytes;
      item.b = b_bytes + part.b_offset * bytes;
      item.c = (slices > 1 ? partials + slice * cells : c) + part.c_offset;
      item.primitive = &impl_->primitive(item.d, true);
    }
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul (m ", d.m, ", n ", d.n, ", k ", d.k, "): ", e.what());
  }
  std::exception_ptr failure;
#pragma omp parallel
  {
    thread_local std::vector<char> scratchpad;
    std::optional<dnnl::stream> stream;  // (made inside the try: no exception leaves the region)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < slices * blocks; ++i) {
      const Item& item = items[static_cast<size_t>(i)];
      try {
        if (!stream) stream.emplace(impl_->engine);
        if (scratchpad.size() < item.primitive->scratchpad_bytes)
          scratchpad.resize(item.primitive->scratchpad_bytes);
        impl_->run(*item.primitive, item.d, item.a, item.b, item.c, *stream, scratchpad.data());
      } catch (...) {
#pragma omp critical(rf_onednn_failure)
        failure = std::current_exception();
      }
    }
  }
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const dnnl::error& e) {
      fail("oneDNN matmul (m ", d.m, ", n ", d.n, ", k ", d.k, "): ", e.what());
    }
  }
  if (slices == 1) return;
    // C = beta C + the slices' sums, added in slice order.
#pragma omp parallel for schedule(static)
  for (int64_t col = 0; col < d.n; ++col) {
    float* out = c + col * d.ldc;
    const float* part = partials + col * d.m;
    for (int64_t r = 0; r < d.m; ++r) {
      float sum = d.beta == 0.0f ? part[r] : d.beta * out[r] + part[r];
      for (int64_t slice = 1; slice < slices; ++slice) sum += part[slice * cells + r];
      out[r] = sum;
    }
  }
}

void OnednnMatmul::multiply(const GemmDesc& d, const void* a, const void* b, float* c) {
  RF_CHECK(d.batch == 1 && d.k > 0, "OnednnMatmul takes one product of depth > 0, got a batch of ",
           d.batch, ", depth ", d.k);
  const OperandType type =
      impl_->operands == dnnl::memory::data_type::bf16 ? OperandType::kBf16 : OperandType::kFp32;
  if (const std::optional<BlockPlan> plan = block_plan(d, type)) {
    multiply_in_blocks(d, a, b, c, *plan);
    return;
  }
  const bool bf16 = impl_->operands == dnnl::memory::data_type::bf16;
  const int64_t bytes = bf16 ? 2 : 4;
  const int64_t depth = thread_independent_depth(bf16 ? OperandType::kBf16 : OperandType::kFp32);
  const auto* a_bytes = static_cast<const char*>(a);
  const auto* b_bytes = static_cast<const char*>(b);
  try {
    // The depth in slices of at most `depth`, added into C one after another.
    for (int64_t k0 = 0; k0 < d.k; k0 += depth) {
      GemmPart slice = gemm_part(d, k0, std::min(depth, d.k - k0), true, 0, d.n);
      if (k0 > 0) slice.d.beta = 1.0f;
      impl_->execute(slice.d, a_bytes + slice.a_offset * bytes, b_bytes + slice.b_offset * bytes,
                     c);
    }
  } catch (const dnnl::error& e) {
    fail("oneDNN matmul (m ", d.m, ", n ", d.n, ", k ", d.k, "): ", e.what());
  }
}

}  // namespace rf
