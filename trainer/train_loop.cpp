#include "trainer/train_loop.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/build_info.h"
#include "base/fnv1a.h"
#include "data/hdf5_io.h"
#include "data/shards.h"
#include "data/synthetic_duplication.h"
#include "kernels/device_peak.h"
#include "trainer/batches.h"
#include "trainer/checkpoint.h"
#include "trainer/evaluate.h"
#include "trainer/flop_count.h"
#include "trainer/gradient_averages.h"
#include "trainer/learning_report.h"
#include "trainer/progress.h"
#include "trainer/rank_agreement.h"
#include "trainer/resume.h"
#include "trainer/run_directory_lock.h"
#include "trainer/run_metrics.h"
#include "trainer/schedule.h"
#include "trainer/step_graphs.h"
#include "trainer/training_memory.h"

namespace fs = std::filesystem;

namespace rf {

JobComms single_process_comms() {
  JobComms c;
  c.host = make_single_process_communicator();
  return c;
}

namespace {

constexpr int kMaxConsecutiveBadSteps = 5;
constexpr int kOptimizerPart = -1;  // the step graph of the optimizer (micro-batches are 0, 1, ...)

// Everything one run holds, set up in order.
struct Run {
  Run(const Config& c, JobComms& j) : cfg(c), comms(j) {}
  Config cfg;  // (a copy: a resumed run adopts its checkpoint's train.seed)
  JobComms& comms;
  std::unique_ptr<RunDirectoryLock> lock;  // rank 0; declared first, so released last
  std::unique_ptr<Executor> ex;
  std::unique_ptr<ReformerModel> model;
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<StepGraphs> graphs;  // runtime.step_graphs
  DataSources data;
  std::unique_ptr<SampleOrder> order;
  BatchGeometry geometry;
  std::unique_ptr<TrainingMemory> memory;  // model.memory_len > 0
  TrainingState state;
  int64_t last_saved_step = -1;
  std::string last_saved_path;
  RunMetrics metrics;  // rank 0 only
  // A step's FLOPs on one rank, counted from its GEMMs (trainer/flop_count.h), and the device's
  // dense peak rate at the run's precision (0: unknown, as on every CPU): model FLOP/s and MFU.
  double rank_step_flops = 0;
  double peak_flops = 0;
  bool root() const { return comms.is_root(); }
  Communicator& host() { return *comms.host; }
  Communicator& device() { return comms.device(); }
};

std::string rank_map(Run& run) {
  const std::vector<std::string> hosts = run.host().all_hosts();
  std::ostringstream s;
  const bool gpu = run.cfg.runtime.device == Device::kCuda;
  // Local index of each rank = how many lower ranks share its host.
  for (size_t r = 0; r < hosts.size(); ++r) {
    int local = 0;
    for (size_t q = 0; q < r; ++q) local += hosts[q] == hosts[r];
    s << (r ? ", " : "") << r << "@" << hosts[r] << (gpu ? ":gpu" + std::to_string(local) : "");
  }
  return s.str();
}

std::string layer_kind(const Config& c) {
  if (c.model.reversible && c.model.stored_top_layers > 0)
    return "reversible layers, the top " + std::to_string(c.model.stored_top_layers) +
           " stored (activations kept)";
  if (c.model.reversible) return "reversible layers";
  const std::string kept = c.recomputes_layers() ? "inputs stored, recomputed" : "activations kept";
  if (c.model.residual == ResidualMode::kSingle)
    return "pre-norm layers over one stream (" + kept + ")";
  return "two-stream layers (" + kept + ")";
}

// Windows each lane reads per epoch in stream order: its own contiguous stretch of the text.
int64_t lane_segments(const Run& run) {
  return run.data.train->num_windows() / run.geometry.global();
}

std::string format_percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.3g%%", 100 * fraction);
  return text;
}

void print_header(Run& run, const std::string& resumed_from, const std::string& ranks) {
  const Config& c = run.cfg;
  std::ostringstream layers;
  for (int64_t i = 0; i < c.model.n_layers; ++i)
    layers << (i ? "," : "") << attention_name(c.attention_of_layer(i));
  std::cout << "reformer train: " << run.model->params().size() << " parameters, "
            << c.model.n_layers << " " << layer_kind(c) << " [" << layers.str() << "], d_model "
            << c.model.d_model << ", " << c.model.n_heads << " heads x " << c.model.d_head
            << ", d_ff " << c.model.d_ff << "\n"
            << "  build: " << describe_build() << "\n"
            << "  executor: " << run.ex->describe() << "\n"
            << "  ranks: " << run.host().size() << " (" << ranks << ")\n"
            << "  data: " << run.data.train->describe() << "\n"
            << "  batch: " << run.geometry.per_rank << " sequences x " << run.geometry.accum
            << " accumulation x " << run.geometry.ranks << " ranks = " << run.geometry.global()
            << " sequences of " << c.train.seq_len << " tokens per step\n";
  if (c.data.streams(c.model.memory_len))
    std::cout << "  order: streams; each of the " << run.geometry.global()
              << " lanes reads its own contiguous stretch of " << lane_segments(run)
              << " segments per epoch\n";
  if (run.memory)
    std::cout << "  memory: " << c.model.memory_len << " positions per "
              << (!c.any_layer_uses(AttentionKind::kLsh) ? "layer"
                  : c.lsh.sees_memory
                      ? "layer (LSH layers hash it with the segment)"
                      : "dense or local layer (LSH layers: none, lsh.sees_memory false)")
              << "\n";
  std::cout << "  flops: " << format_flops(run.rank_step_flops)
            << " per step and rank, counted from the GEMMs of the forward, recomputation and "
            << "backward passes; MFU "
            << (run.peak_flops > 0
                    ? "against " + format_flops(run.peak_flops) + "/s (" + run.ex->device_model() +
                          ", " + precision_name(c.runtime.precision) + ", dense)"
                    : std::string("not shown: no peak rate known for this device"))
            << "\n";
  std::cout << "  out_dir: " << c.train.out_dir << "\n";
  if (!run.metrics.tensorboard_file().empty())
    std::cout << "  tensorboard: " << run.metrics.tensorboard_file() << "\n";
  if (!resumed_from.empty())
    std::cout << "  resumed from " << resumed_from << " at step " << run.state.step << "\n";
  // Settings that are valid but rarely meant (train.steps lowered for a short try, say).
  if (c.train.warmup >= c.train.steps && c.train.warmup > 0)
    std::cout << "note: train.warmup (" << c.train.warmup << ") is not below train.steps ("
              << c.train.steps << "): the learning rate ends at "
              << format_percent(learning_rate(c.train, c.train.steps - 1) / c.train.lr)
              << " of train.lr\n";
  // data.val_fraction cuts the validation tail off a text file; with a manifest (its own val
  // split) or a separate data.val it cuts nothing.
  const bool tail_split =
      (c.data.format == DataFormat::kText || c.data.format == DataFormat::kBytes) &&
      c.data.val.empty();
  if (c.data.val_fraction != DataConfig{}.val_fraction && !tail_split)
    std::cout << "note: data.val_fraction (" << c.data.val_fraction << ") has no effect: "
              << (c.data.format == DataFormat::kHdf5
                      ? "a manifest's val split is prepare's (prepare --val-fraction)"
                  : c.data.format == DataFormat::kSynthetic
                      ? "the synthetic task draws its own validation windows"
                      : "data.val names the validation file")
              << "\n";
  // Relative-position settings of a model whose positions are not relative do nothing (an
  // experiment meant to test them would train without them, and say nothing).
  const bool relative_possible =
      c.model.position == PositionMode::kRelative || c.model.position == PositionMode::kNone;
  if (c.model.clamp_len > 0 && c.model.position != PositionMode::kRelative)
    std::cout << "note: model.clamp_len (" << c.model.clamp_len
              << ") has no effect: it caps relative positions, and this model's are "
              << position_name(c.model.position) << "\n";
  if (c.model.same_length && !relative_possible)
    std::cout << "note: model.same_length has no effect: it limits what a memory shows, and a "
              << "model with " << position_name(c.model.position) << " positions has none\n";
  // Kinds listed past the layers (model.attention cycles through the layers, so a longer list is
  // cut), and settings of a part the model does not have.
  if (static_cast<int64_t>(c.model.attention.size()) > c.model.n_layers)
    std::cout << "note: model.attention lists " << c.model.attention.size()
              << " kinds, and model.n_layers = " << c.model.n_layers << " takes the first "
              << c.model.n_layers << "\n";
  if (c.lsh.sees_memory && (c.model.memory_len == 0 || !c.any_layer_uses(AttentionKind::kLsh)))
    std::cout << "note: lsh.sees_memory has no effect: "
              << (c.model.memory_len == 0 ? "model.memory_len is 0 (no memory)"
                                          : "the model has no lsh layer")
              << "\n";
  if (c.model.position != PositionMode::kAxial &&
      (c.model.axial_shape != ModelConfig{}.axial_shape || !c.model.axial_dims.empty()))
    std::cout << "note: model.axial_shape and model.axial_dims have no effect: this model's "
              << "positions are " << position_name(c.model.position) << "\n";
  if (c.train.eval_every > c.train.steps)
    std::cout << "note: train.eval_every (" << c.train.eval_every << ") is past train.steps ("
              << c.train.steps << "): no validation during training\n";
  std::cout.flush();
}

// <out_dir>/config.yaml, the resolved config: written to a temporary name and renamed, so a full
// disk cannot leave it empty; not rewritten when it already holds the same text (a resumed run).
void write_resolved_config(const Config& cfg) {
  std::error_code ec;
  fs::create_directories(cfg.train.out_dir, ec);
  if (ec) fail("cannot create train.out_dir '", cfg.train.out_dir, "': ", ec.message());
  const std::string path = (fs::path(cfg.train.out_dir) / "config.yaml").string();
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream current;
    current << in.rdbuf();
    if (in && current.str() == cfg.source_text) return;
  }
  const std::string temp = path + ".tmp";
  errno = 0;
  std::ofstream out(temp, std::ios::binary | std::ios::trunc);
  out << cfg.source_text;
  out.close();  // flushes: a full disk shows here
  const int write_errno = errno;
  if (!out) {
    fs::remove(temp, ec);
    fail("cannot write '", temp, "': ", write_errno ? std::strerror(write_errno) : "write failed");
  }
  fs::rename(temp, path, ec);
  if (ec) fail("cannot rename '", temp, "' to '", path, "': ", ec.message());
}

// Rank 0 restores what --resume asks for (or keeps its fresh initialisation) and every rank
// receives the same parameters, optimizer moments and training state.
std::string restore_or_start(Run& run, const ResumeRequest& resume) {
  std::string resumed_from;
  run_on_root(run.host(), [&] {
    std::ostringstream notes;
    try {
      run.lock = std::make_unique<RunDirectoryLock>(run.cfg.train.out_dir);
      // (Else found only when the first checkpoint is due, or at the end of the run.)
      const std::string checkpoints = checkpoint_dir(run.cfg.train.out_dir);
      std::error_code ec;
      if (fs::exists(checkpoints, ec) && !fs::is_directory(checkpoints, ec))
        fail("'", checkpoints, "' is not a directory; checkpoints go there (move it away)");
      if (resume.mode == ResumeMode::kFresh)
        refuse_to_overwrite_a_run(run.cfg.train.out_dir, run.cfg.source_text);
      else
        refuse_to_replace_a_users_config(run.cfg.train.out_dir);
      resumed_from = restore_for_resume(resume, run.cfg.train.out_dir, *run.model, *run.optimizer,
                                        &run.state, notes);
    } catch (const Error&) {
      std::cerr << notes.str() << std::flush;
      throw;
    }
    std::cerr << notes.str() << std::flush;
  });
  resumed_from = broadcast_string(run.host(), resumed_from);
  int64_t state[3] = {run.state.step, run.state.samples_seen, run.state.seed};
  run.host().broadcast(state, 3, DType::kInt64, 0);
  run.state.step = state[0];
  run.state.samples_seen = state[1];
  run.state.seed = state[2];
  // Resumed from this run's own checkpoint of the step: it is not written again (checkpoints are
  // never replaced). One from elsewhere is, so that the run's folder holds its checkpoint.
  const fs::path own =
      fs::path(checkpoint_dir(run.cfg.train.out_dir)) / checkpoint_file_name(run.state.step);
  std::error_code ec;
  if (!resumed_from.empty() && fs::equivalent(own, resumed_from, ec)) {
    run.last_saved_step = run.state.step;
    run.last_saved_path = resumed_from;
  }
  // Another run's steps are not this run's log line; this run's own checkpoints are, those moved
  // to checkpoints/superseded/ by a resume from an earlier step included (they were treated as
  // another run's, and the next log line differed from the uninterrupted run's).
  std::error_code folder_ec, file_ec;
  const std::string folder =
      fs::weakly_canonical(checkpoint_dir(run.cfg.train.out_dir), folder_ec).string();
  const std::string file = fs::weakly_canonical(resumed_from, file_ec).string();
  if (resumed_from.empty() || folder_ec || file_ec || folder.empty() ||
      file.rfind(folder + "/", 0) != 0)
    run.state.since_log = LossSums();
  run.optimizer->set_steps_taken(run.state.step);
  ParamStore& p = run.model->params();
  run.device().broadcast(p.params(), p.size(), DType::kFloat32, 0);
  run.device().broadcast(run.optimizer->first_moment().data(), p.size(), DType::kFloat32, 0);
  run.device().broadcast(run.optimizer->second_moment().data(), p.size(), DType::kFloat32, 0);
  return resumed_from;
}

// What a resumed run does otherwise than the run that wrote its checkpoint, said once by rank 0
// (which read the checkpoint and writes the next ones, recording this run's): another arithmetic
// (the bits differ from there on), another order of the windows (a memory switched on or off
// with data.order auto) and, in stream order, another global batch (the rest of the epoch reads
// other stretches: some windows twice, some not until the next epoch), in shuffled order too (more
// ranks: larger steps, said nowhere else but in the header's batch line).
void note_what_differs_from_the_checkpoint(Run& run, const std::string& resumed_from) {
  const std::string arithmetic = run.ex->arithmetic();
  const int64_t global_batch = run.geometry.global();
  const bool streams = run.cfg.data.streams(run.cfg.model.memory_len);
  const std::string order = streams ? "streams" : "shuffled";
  TrainingState& was = run.state;
  if (run.root() && !resumed_from.empty()) {
    if (!was.data_order.empty() && was.data_order != order)
      std::cout << "note: " << resumed_from << " read its windows "
                << (streams ? "shuffled" : "in streams") << ", this run reads them "
                << (streams ? "in streams (model.memory_len > 0 or data.order: streams)"
                            : "shuffled")
                << ": until the epoch ends some windows are read twice and others not at all\n";
    else if (streams && was.global_batch > 0 && was.global_batch != global_batch)
      std::cout << "note: " << resumed_from << " read the data in " << was.global_batch
                << " streams (its global batch), this run in " << global_batch
                << ": until the epoch ends some windows are read twice and others not at all "
                << "(keep batch_size x grad_accum x ranks at " << was.global_batch
                << " to continue exactly)\n";
    if (!streams && was.global_batch > 0 && was.global_batch != global_batch)  // (more ranks)
      std::cout << "note: " << resumed_from << " was trained on " << was.global_batch
                << " windows per step, this run takes " << global_batch
                << " (batch_size x grad_accum x ranks): the learning-rate schedule goes on by "
                << "steps, each of another size\n";
    if (!was.arithmetic.empty() && !arithmetic.empty() && was.arithmetic != arithmetic)
      std::cout << "note: " << resumed_from << " was trained where the arithmetic was '"
                << was.arithmetic << "'; here it is '" << arithmetic
                << "': the run continues, but not bit for bit as it would have there\n";
  }
  was.arithmetic = arithmetic;
  was.global_batch = global_batch;
  was.data_order = order;
}

void check_enough_windows(const Run& run) {
  const int64_t n = run.data.train->num_windows();
  if (n > 0 && n < run.geometry.global())
    fail("the training data has ", n, " windows of train.seq_len + 1 = ", run.cfg.train.seq_len + 1,
         " tokens, fewer than one global batch of ", run.geometry.global(),
         " (batch_size x grad_accum x ranks); use more data or a smaller batch");
}

// Device work of a step (part: the micro-batch's index, or the optimizer's), from a graph when
// runtime.step_graphs is on, except while a micro-batch's memory (Transformer-XL's) still grows:
// its shape and buffers change from step to step until it is full.
void run_part(Run& run, int part, int64_t rows, const std::function<void()>& work,
              const SegmentMemory* memory = nullptr) {
  if (run.graphs && (!memory || memory->full()))
    run.graphs->run(part, rows, work);
  else
    work();
}

LossSums train_step(Run& run, BatchStream& batches, int64_t step) {
  const Config& c = run.cfg;
  ParamStore& params = run.model->params();
  run.device().set_step(step + 1);  // NCCL forwards it to the host communicator it bootstraps from
  // Each rank takes the mean over its own tokens; the all-reduce then averages over ranks, which
  // is the mean over the global batch (every rank holds the same number of tokens).
  const float grad_scale =
      1.0f / static_cast<float>(run.geometry.per_rank * run.geometry.accum * c.train.seq_len);
  LossSums r;
  for (int64_t micro = 0; micro < run.geometry.accum; ++micro) {
    const TokenBatch batch = batches.next();
    StepContext ctx;
    ctx.seed = static_cast<uint64_t>(run.state.seed);
    ctx.step = static_cast<uint32_t>(step);
    ctx.example_base = static_cast<uint32_t>(run.geometry.first_example(micro));
    ctx.batch = batch.batch;
    ctx.seq_len = batch.seq_len;
    ctx.training = true;
    // Only the last micro-step's gradients are final, so only it starts the averages, each as
    // the backward pass finishes its bucket (inside the step graph, with step graphs).
    const bool average = micro + 1 == run.geometry.accum && run.device().size() > 1;
    const StepContext staged = run.model->stage(batch, ctx);
    SegmentMemory* memory = run.memory ? &run.memory->for_batch(micro, batch) : nullptr;
    run_part(
        run, static_cast<int>(micro), staged.rows(),
        [&] {
          if (micro == 0) params.zero_grads();
          run.model->compute_forward_backward(
              staged, grad_scale,
              [&](int group) {
                if (average) start_gradient_average(*run.ex, run.device(), params, group);
              },
              memory);
          if (average) order_after_gradient_averages(*run.ex, run.device());
        },
        memory);
    // The averages are awaited before the losses are read: the device work after them waits
    // for them, so reading first would wait for a rank that died without the deadline.
    if (average) run.device().wait_all();
    const BatchStats s = run.model->collect(batch);
    r.loss_sum += s.loss_sum;
    r.tokens += static_cast<double>(s.tokens);
    r.correct += static_cast<double>(s.correct);
  }
  double totals[3] = {r.loss_sum, r.tokens, r.correct};
  run.host().all_reduce_sum(totals, 3, DType::kFloat64);
  return {totals[0], totals[1], totals[2]};
}

// Fails on every rank unless all ranks hold bit-identical parameters.
void verify_replicas(Run& run, int64_t step) {
  ParamStore& p = run.model->params();
  std::vector<float> host(p.size());
  run.ex->download(host.data(), p.params(), host.size() * sizeof(float));
  const uint64_t h = fnv1a_bytes(kFnv1aOffsetBasis, reinterpret_cast<const uint8_t*>(host.data()),
                                 static_cast<int64_t>(host.size() * sizeof(float)));
  int64_t root_hash = static_cast<int64_t>(h);
  run.host().broadcast(&root_hash, 1, DType::kInt64, 0);
  int32_t differs = root_hash != static_cast<int64_t>(h);
  run.host().all_reduce_sum(&differs, 1, DType::kInt32);
  if (differs) fail(differs, " rank(s) hold parameters different from rank 0's after step ", step);
}

// Logs the mean loss and accuracy of the steps since the last log line: on the console, and when
// `record`, in metrics.jsonl and TensorBoard.
void log_step(Run& run, int64_t step, const LossSums& r, double lr, const GradNorm& g,
              const ProgressClock& clock, bool record) {
  const double loss = r.loss_sum / r.tokens;
  // Model FLOP/s per rank: the step's counted FLOPs at the measured pace (tokens/s is global).
  const double tokens_per_step = static_cast<double>(run.geometry.global() * run.cfg.train.seq_len);
  const double flop_rate = clock.tokens_per_second() / tokens_per_step * run.rank_step_flops;
  std::string speed = "first step (warm-up)";
  if (clock.tokens_per_second() > 0) {
    speed = format_rate(clock.tokens_per_second()) + " tok/s | " + format_flops(flop_rate) + "/s" +
            (run.geometry.ranks > 1 ? "/rank" : "");
    if (run.peak_flops > 0) {
      char mfu[32];
      std::snprintf(mfu, sizeof(mfu), " (MFU %.1f%%)", 100 * flop_rate / run.peak_flops);
      speed += mfu;
    }
    speed += " | ETA " + format_duration(clock.eta_seconds(step));
  }
  char line[320];
  std::snprintf(line, sizeof(line),
                "step %6lld/%lld | loss %.4f | %.3f bits/tok | acc %.3f | lr %.2e | gnorm %.3f | "
                "%s",
                static_cast<long long>(step) + 1, static_cast<long long>(run.cfg.train.steps), loss,
                loss / std::log(2.0), r.correct / r.tokens, lr, g.norm, speed.c_str());
  std::cout << line << std::endl;
  std::vector<Metric> metrics = {{"loss", loss},
                                 {"bits_per_token", loss / std::log(2.0)},
                                 {"accuracy", r.correct / r.tokens},
                                 {"lr", lr},
                                 {"grad_norm", g.norm},
                                 {"tokens_per_s", clock.tokens_per_second()},
                                 {"model_flops_per_s_per_rank", flop_rate},
                                 {"elapsed_s", clock.elapsed_seconds()}};
  if (run.peak_flops > 0) metrics.push_back({"mfu", flop_rate / run.peak_flops});
  if (record) run.metrics.log_training(step + 1, metrics);
}

void run_eval(Run& run, int64_t step) {
  const Config& c = run.cfg;
  const int64_t windows =
      eval_window_count(*run.data.val, c.train.eval_batches, c.train.batch_size);
  // The duplication task is scored where it is predictable: the second copy of w.
  const bool copy_task = run.data.task == DataTask::kDuplication;
  const PositionRange positions{copy_task ? SyntheticDuplication::copy_begin(c.train.seq_len) : 0,
                                -1};
  const EvalResult r =
      evaluate_as_trained(*run.model, *run.data.val, windows, positions, &run.host());
  if (!run.root()) return;
  char line[200];
  std::snprintf(line, sizeof(line),
                "eval at step %lld | val loss %.4f | %.3f bits/tok | %s %.3f | %lld tokens",
                static_cast<long long>(step), r.loss, r.bits_per_token,
                copy_task ? "copy acc" : "acc", r.accuracy, static_cast<long long>(r.tokens));
  std::cout << line << std::endl;
  run.metrics.log_evaluation(step, copy_task ? "val_copy" : "val",
                             {{"loss", r.loss},
                              {"bits_per_token", r.bits_per_token},
                              {"accuracy", r.accuracy},
                              count_metric("tokens", r.tokens)});
}

std::string save(Run& run) {
  if (run.state.step == run.last_saved_step) return run.last_saved_path;
  if (run.memory) run.memory->gather(run.host(), *run.ex, run.state);
  std::string path;
  run_on_root(run.host(), [&] {
    path = save_checkpoint(checkpoint_dir(run.cfg.train.out_dir), *run.model, *run.optimizer,
                           run.state, run.cfg.train.keep_checkpoints);
  });
  run.last_saved_step = run.state.step;
  run.last_saved_path = path;
  return path;
}

std::string newest_checkpoint_note(const Run& run) {
  return run.last_saved_path.empty() ? "this run has no checkpoint yet"
                                     : "the newest checkpoint is still " + run.last_saved_path;
}

// A periodic checkpoint that cannot be written (a full disk, a quota) does not end the run: the
// previous checkpoint is intact, and space may be freed before the next interval. Every rank
// sees the same AgreedError, so all ranks carry on together.
void save_or_warn(Run& run, int64_t next_try_step) {
  try {
    save(run);
  } catch (const AgreedError& e) {
    if (run.root())
      std::cerr << "warning: " << e.what() << "; training continues and tries again at step "
                << next_try_step << " (" << newest_checkpoint_note(run) << ")" << std::endl;
  }
}

// The checkpoint at the end (or on a stop request) must be written: a failure ends the run with
// an error instead of the usual exit status (so a batch script does not requeue onto a full disk).
std::string save_or_fail(Run& run) {
  try {
    return save(run);
  } catch (const AgreedError& e) {
    throw AgreedError(std::string(e.what()) + "; " +
                      (run.last_saved_path.empty()
                           ? "this run has no checkpoint yet: once the cause is fixed, --resume "
                             "auto starts it over"
                           : newest_checkpoint_note(run) +
                                 ", continue from it with --resume auto once the cause is fixed"));
  }
}

}  // namespace

TrainSummary run_training(const Config& requested, const TrainOptions& options, JobComms& comms) {
  Run run(requested, comms);
  const Config& cfg = run.cfg;
  // Before anything the config sizes meets another rank (trainer/rank_agreement.h).
  // (Each check in a call of its own: a rank failing one skips the collectives of the next.)
  if (run.host().size() > 1) {
    run_on_every_rank(run.host(), [&] { check_ranks_share_config(run.host(), cfg); });
    run_on_every_rank(run.host(), [&] {
      check_ranks_share_options(
          run.host(), {{"--stop-at-step", options.stop_at_step},
                       {"verify_replicas (TrainOptions)", options.verify_replicas ? 1 : -1}});
    });
  }
  run_on_every_rank(run.host(), [&] {
    // (On a GPU this checks the kernels first: runtime.verify_kernels.)
    run.ex = make_rank_executor(cfg.runtime, run.host().local_rank(), run.host().local_size());
    run.model = std::make_unique<ReformerModel>(cfg, *run.ex);
    run.optimizer = std::make_unique<AdamW>(*run.ex, run.model->params(), cfg.train);
    if (cfg.runtime.step_graphs)
      run.graphs = std::make_unique<StepGraphs>(*run.ex, any_rank_of(run.host()));
  });
  run.state.seed = cfg.train.seed;
  const ResumeRequest resume = parse_resume(options.resume);
  const std::string resumed_from = restore_or_start(run, resume);
  run.state.world_size = run.host().size();
  if (run.state.seed != cfg.train.seed) {
    // The checkpoint's seed keys the data order, dropout and hashing of the steps to come; the
    // validation, the synthetic task's windows, config.yaml and the checkpoints' config text
    // follow it too, so that evaluating a checkpoint of this run scores what training scored.
    if (run.root())
      std::cout << "note: continuing with the checkpoint's seed " << run.state.seed
                << " (config says " << cfg.train.seed << "); config.yaml records " << run.state.seed
                << "\n";
    run.cfg = with_seed(run.cfg, run.state.seed);
    run.model->adopt_seed(run.state.seed);
  }
  run.geometry = {cfg.train.batch_size, cfg.train.grad_accum, run.host().size(), run.host().rank()};
  note_what_differs_from_the_checkpoint(run, resumed_from);
  run.rank_step_flops = static_cast<double>(run.geometry.accum) *
                        training_step_flops(cfg, run.geometry.per_rank, cfg.train.seq_len).total();
  run.peak_flops = dense_peak_tflops(run.ex->device_model(), cfg.runtime.precision) * 1e12;
  // Shard checksums are read once, by rank 0 (every rank streaming the corpus is N x the I/O),
  // and before any other rank opens a shard: a damaged shard can crash HDF5 itself
  // (data/file_seal.h).
  run_on_root(run.host(), [&] {
    check_validation_is_held_out(cfg);
    run.data = open_data(cfg, cfg.data.verify_checksums);
  });
  run_on_every_rank(run.host(), [&] {
    if (!run.root()) run.data = open_data(cfg, false);
    check_enough_windows(run);
    if (cfg.model.memory_len > 0) {
      if (!run.data.train->consecutive() || !run.data.val->consecutive())
        fail("model.memory_len = ", cfg.model.memory_len, " needs windows that continue each ",
             "other (a text stream), but ", run.data.train->describe(),
             " stores independent windows");
      // A memory longer than a lane's stretch of the text could never fill (it is cleared where
      // the lanes start over, so its last segment sees the segments before it at most): each
      // step would only grow slower until memory ran out (model.memory_len = 10^9 was accepted).
      const int64_t lane_tokens = (lane_segments(run) - 1) * cfg.train.seq_len;
      if (cfg.model.memory_len > lane_tokens)
        fail("model.memory_len = ", cfg.model.memory_len, " is more than the ", lane_tokens,
             " tokens before the last segment of each of the ", run.geometry.global(),
             " lanes' stretch of ", run.data.train->describe(),
             " per epoch: its memory could never fill; at most ", lane_tokens);
      run.memory = std::make_unique<TrainingMemory>(cfg, run.geometry);
    }
    // A resumed (or imported) model keeps the tokenizer it was trained with.
    if (run.root() && !resumed_from.empty())
      check_checkpoint_tokenizer(resumed_from, run.state.tokenizer_model, run.data, cfg);
    run.state.tokenizer_model = run.data.tokenizer_model;
    run.state.data_tokenizer = run.data.tokenizer;
  });
  if (run.host().size() > 1) {
    DataFingerprint fingerprint;
    run_on_every_rank(run.host(), [&] { fingerprint = data_fingerprint(run.data); });
    run_on_every_rank(run.host(),
                      [&] { check_ranks_share_data(run.host(), fingerprint, run.data); });
  }
  run.order = std::make_unique<SampleOrder>(
      cfg.data.streams(cfg.model.memory_len)
          ? SampleOrder::streams(run.data.train->num_windows(), run.geometry.global())
          : SampleOrder(run.data.train->num_windows(), static_cast<uint64_t>(run.state.seed)));
  if (run.memory) {
    const std::string note = run.memory->restore(run.host(), *run.ex, run.state);
    if (!note.empty()) std::cout << note << std::endl;
    run.state.memory.clear();  // (the lanes hold it now)
  }
  const std::string ranks = rank_map(run);
  run_on_root(run.host(), [&] {
    write_resolved_config(cfg);
    run.metrics =
        RunMetrics(cfg.train.out_dir, cfg.train.tensorboard,
                   resumed_from.empty() ? -1 : run.state.step, resume.mode != ResumeMode::kFresh);
    print_header(run, resumed_from, ranks);
  });

  int64_t prefetch = cfg.data.prefetch;
  if (prefetch > 0 && cfg.data.format == DataFormat::kHdf5 && !hdf5_is_thread_safe()) {
    prefetch = 0;  // the loader thread would call HDF5 concurrently with checkpoint writes
    if (run.root())
      std::cout << "note: this HDF5 library is not thread-safe; reading shards without a loader "
                << "thread (data.prefetch ignored)" << std::endl;
  }
  BatchStream batches(*run.data.train, *run.order, run.geometry, run.state.samples_seen, prefetch);
  const int64_t tokens_per_step = run.geometry.global() * cfg.train.seq_len;
  ProgressClock clock(run.state.step, options.stop_at_step >= 0
                                          ? std::min(options.stop_at_step, cfg.train.steps)
                                          : cfg.train.steps);
  TrainSummary summary;
  int bad_steps = 0;
  bool stopped_by_signal = false;
  const int64_t first_step = run.state.step;
  for (int64_t step = run.state.step; step < cfg.train.steps; ++step) {
    // (Before the step: --stop-at-step 0, or a resumed run already there, runs none.)
    if (options.stop_at_step >= 0 && step >= options.stop_at_step) break;
    const LossSums r = train_step(run, batches, step);
    run.state.since_log.add(r);
    const double lr = learning_rate(cfg.train, step);
    // The device skips the update when a gradient is not finite (a non-finite loss makes its
    // gradients non-finite too); the host only learns of it here, after the update.
    run.optimizer->prepare(lr);
    run_part(run, kOptimizerPart, 0, [&] { run.optimizer->compute(); });
    const GradNorm g = run.optimizer->finish();
    if (!g.finite || !std::isfinite(r.loss_sum)) {
      if (run.root())
        std::cout << "warning: step " << step + 1
                  << (g.finite ? " has a non-finite loss"
                               : " has a non-finite gradient; the update is skipped")
                  << std::endl;
      if (++bad_steps >= kMaxConsecutiveBadSteps)
        fail("training diverged: ", bad_steps, " consecutive steps with non-finite gradients at ",
             "step ", step + 1, "; lower train.lr or raise train.warmup, then --resume auto");
    } else {
      bad_steps = 0;
    }
    run.state.step = step + 1;
    run.state.samples_seen += run.geometry.global();
    clock.step_done(step, tokens_per_step);
    summary.final_loss = r.loss_sum / r.tokens;
    if (options.verify_replicas) verify_replicas(run, step + 1);
    const bool last = step + 1 == cfg.train.steps;
    // A resumed run's first step is shown on the console only, without ending the log line in
    // progress (the checkpoint carried its sums): metrics.jsonl and TensorBoard then hold the
    // lines the uninterrupted run logs.
    if ((step + 1) % cfg.train.log_every == 0 || step == 0 || last) {
      if (run.root()) log_step(run, step, run.state.since_log, lr, g, clock, true);
      run.state.since_log = LossSums();
    } else if (step == first_step && run.root()) {
      log_step(run, step, run.state.since_log, lr, g, clock, false);
    }
    if (cfg.train.eval_every > 0 && (step + 1) % cfg.train.eval_every == 0) {
      run_eval(run, step + 1);
      clock.restart_lap();
    }
    if (cfg.train.checkpoint_every > 0 && (step + 1) % cfg.train.checkpoint_every == 0 && !last) {
      save_or_warn(run, std::min(step + 1 + cfg.train.checkpoint_every, cfg.train.steps));
      clock.restart_lap();
    }
    if (stop_requested(run.host())) {
      stopped_by_signal = true;
      break;
    }
  }
  summary.steps_done = run.state.step;
  summary.step_graphs = run.graphs ? run.graphs->graphs() : 0;
  summary.collectives = run.ex->collectives();
  summary.collectives_in_graphs = run.ex->collectives_in_graphs();
  // Before the communicators close: NCCL cannot finalise while a graph holds its collectives.
  if (run.graphs) {
    run.ex->synchronize();
    run.ex->drop_graphs();
  }
  summary.stopped_by_signal = stopped_by_signal;
  // (A run resumed at its end runs none; one stopped where a periodic checkpoint was just
  // written has it already, and says so as any other.)
  const bool ran_steps = run.state.step > first_step;
  summary.final_checkpoint = save_or_fail(run);
  if (run.root()) {
    if (ran_steps)
      std::cout << "saved " << summary.final_checkpoint << " after "
                << format_duration(clock.elapsed_seconds()) << std::endl;
    else
      std::cout << "no step to run: " << summary.final_checkpoint << " holds step "
                << run.state.step << " (train.steps " << cfg.train.steps
                << (options.stop_at_step >= 0
                        ? ", --stop-at-step " + std::to_string(options.stop_at_step)
                        : std::string())
                << ")" << std::endl;
    if (stopped_by_signal)
      std::cout << "stopped at step " << run.state.step << " on request ("
                << (stop_signal_name().empty() ? "a signal on another rank" : stop_signal_name())
                << "); continue with --resume auto" << std::endl;
    else if (options.report && cfg.train.report && run.state.step == cfg.train.steps) {
      // Deferred: the caller runs it after closing the job's communicators, so the report
      // (which may take a while) never runs while other ranks wait in a collective.
      std::shared_ptr<Executor> ex = std::move(run.ex);
      std::shared_ptr<ReformerModel> model = std::move(run.model);
      auto data = std::make_shared<DataSources>(std::move(run.data));
      const int64_t trained_tokens = cfg.train.steps * tokens_per_step;
      summary.report = [ex, model, data, trained_tokens](std::ostream& out) {
        report_what_was_learned(*model, *data, trained_tokens, out);
      };
    }
  }
  return summary;
}

}  // namespace rf
