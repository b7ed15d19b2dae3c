// Tests of whole jobs launched as a user would: a checkpoint written by 4 ranks resumes on 2
// ranks with the same global batches; a rank killed mid-run ends the job promptly and
// --resume auto continues; SIGTERM makes a run checkpoint at the next step boundary and exit 75,
// and the resumed run ends bit for bit where an uninterrupted one does; so does a first Ctrl-C,
// and a second quits at once; launch/train.sh -n and bench/run.sh refuse what they cannot run;
// launch/build.sh recovers from a failed configure; the launchers' rank and size variables are
// read strictly.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "base/launcher_env.h"
#include "base/stop_signals.h"
#include "tests/job_control.h"
#include "tests/run_fixture.h"
#include "trainer/checkpoint.h"
#include "trainer/job.h"

namespace rf {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kBinary = std::string(RF_BINARY_DIR) + "/reformer";

std::string mpirun(int ranks) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -np " +
         std::to_string(ranks) + " ";
}

using Result = test::CommandResult;
Result run(const std::string& command) {
  return test::run_command(command);
}

using test::final_checkpoint;
using test::ReapOnExit;
using test::spawn;
using test::wait_exit;
using test::wait_for_any_checkpoint;
using test::wait_for_file;

// PIDs of `reformer` rank processes whose command line mentions `marker`.
std::vector<pid_t> rank_pids(const std::string& marker) {
  std::vector<pid_t> pids;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.rfind(kBinary + " ", 0) == 0 && cmdline.find(marker) != std::string::npos)
      pids.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return pids;
}

std::string write_config(const std::string& dir) {
  return test::write_tiny_job_config(dir);
}

TEST(Launch, CheckpointOfFourRanksResumesOnTwoWithTheSameGlobalBatches) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string out = dir + "/run", reference = dir + "/reference";
  const Result four = run(mpirun(4) + kBinary + " train --config " + cfg +
                          " --set train.out_dir=" + out + " --stop-at-step 3");
  ASSERT_EQ(four.exit_code, 0) << four.out;
  EXPECT_NE(four.out.find("ranks: 4"), std::string::npos) << four.out;
  EXPECT_NE(four.out.find("1 sequences x 1 accumulation x 4 ranks = 4 sequences"),
            std::string::npos)
      << four.out;
  const Result two = run(mpirun(2) + kBinary + " train --config " + cfg +
                         " --set train.out_dir=" + out + " --set train.batch_size=2 --resume auto");
  ASSERT_EQ(two.exit_code, 0) << two.out;
  EXPECT_NE(two.out.find("at step 3"), std::string::npos) << two.out;
  const Result one = run(kBinary + " train --config " + cfg + " --set train.out_dir=" + reference +
                         " --set train.batch_size=4");
  ASSERT_EQ(one.exit_code, 0) << one.out;
  EXPECT_LT(test::relative_difference(test::checkpoint_params(final_checkpoint(out, 6)),
                                      test::checkpoint_params(final_checkpoint(reference, 6))),
            1e-5);
}

TEST(Launch, KilledRankEndsTheJobPromptlyAndResumeContinues) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string out = dir + "/run";
  const std::string args = " train --config " + cfg + " --set train.out_dir=" + out +
                           " --set train.steps=100000 --set train.checkpoint_every=2" +
                           " --set runtime.collective_timeout_s=20";
  const pid_t job = spawn(mpirun(2) + kBinary + args, dir + "/job.log");
  const ReapOnExit reap{job};
  // (Checkpoints come every 2 steps and older ones are pruned: wait for any of them.)
  ASSERT_NE(wait_for_any_checkpoint(checkpoint_dir(out), 120), "") << "no checkpoint appeared";
  const std::vector<pid_t> ranks = rank_pids(out);
  ASSERT_EQ(ranks.size(), 2u);
  kill(ranks[1], SIGKILL);
  double seconds = 0;
  const int code = wait_exit(job, 60, &seconds);
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1) << "the job did not end within 60 s of a rank being killed";
  EXPECT_LT(seconds, 30);
  const int64_t newest = test::newest_checkpoint_step(out);
  ASSERT_GE(newest, 0);
  const Result resumed =  // one step past wherever the killed job got to
      run(mpirun(2) + kBinary + " train --config " + cfg + " --set train.out_dir=" + out +
          " --set train.checkpoint_every=2 --resume auto --set train.steps=100000 --stop-at-step " +
          std::to_string(newest + 1));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from"), std::string::npos) << resumed.out;
  EXPECT_NE(resumed.out.find("saved "), std::string::npos) << resumed.out;
}

TEST(Launch, SigtermCheckpointsAtTheNextStepAndTheResumedRunMatchesBitForBit) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string out = dir + "/run", reference = dir + "/reference";
  // Far more steps than it will get through: the signal, not the end, stops it.
  const std::string settings = " --set train.steps=1000000";
  const pid_t job =
      spawn(kBinary + " train --config " + cfg + " --set train.out_dir=" + out + settings,
            dir + "/job.log");
  const ReapOnExit reap{job};
  // Let it train a little, then ask it to stop as SLURM would before preemption.
  ASSERT_TRUE(wait_for_file(out + "/metrics.jsonl", 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(job, SIGTERM);
  double seconds = 0;
  EXPECT_EQ(wait_exit(job, 60, &seconds), 75);
  std::ifstream log(dir + "/job.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("SIGTERM"), std::string::npos) << text;
  const size_t at = text.find("stopped at step ");
  ASSERT_NE(at, std::string::npos) << text;
  const int64_t stopped = std::stoll(text.substr(at + 16));
  // Resume and run 5 more steps; an uninterrupted run to the same step must end identically.
  const std::string until = " --stop-at-step " + std::to_string(stopped + 5);
  const Result rest = run(kBinary + " train --config " + cfg + " --set train.out_dir=" + out +
                          settings + until + " --resume auto");
  ASSERT_EQ(rest.exit_code, 0) << rest.out;
  const Result whole = run(kBinary + " train --config " + cfg +
                           " --set train.out_dir=" + reference + settings + until);
  ASSERT_EQ(whole.exit_code, 0) << whole.out;
  const auto a = test::checkpoint_params(final_checkpoint(out, stopped + 5));
  const auto b = test::checkpoint_params(final_checkpoint(reference, stopped + 5));
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

// Ctrl-C used to end a run at once, losing every step since its last checkpoint. It now stops
// the run as SIGTERM does, with a checkpoint at the step boundary, but exits 130, not 75 (which
// batch scripts requeue): its user stopped it. Its log reader ending on the same Ctrl-C (a pipe
// to tee) does not end it before its checkpoint.
TEST(Launch, CtrlCCheckpointsAtTheNextStep) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string out = dir + "/run", log = dir + "/job.log";
  // (The log line of every step goes to a pipe whose reader is gone once the signal is sent.)
  const std::string pipe = dir + "/log.fifo";
  ASSERT_EQ(mkfifo(pipe.c_str(), 0600), 0);
  const pid_t job = spawn(kBinary + " train --config " + cfg + " --set train.out_dir=" + out +
                              " --set train.steps=1000000 --set train.checkpoint_every=0" +
                              " --set train.log_every=1 2> " + log + " > " + pipe + " ; :",
                          dir + "/shell.log");
  const ReapOnExit reap{job};
  FILE* reader = std::fopen(pipe.c_str(), "r");
  ASSERT_NE(reader, nullptr);
  char line[512];
  for (int i = 0; i < 5; ++i) ASSERT_NE(std::fgets(line, sizeof(line), reader), nullptr);
  kill(job, SIGINT);
  std::fclose(reader);
  double seconds = 0;
  EXPECT_EQ(wait_exit(job, 60, &seconds), 130);
  const std::string text = test::read_text(log);
  EXPECT_NE(text.find("stopping with a checkpoint after the step in progress"), std::string::npos)
      << text;
  // ("stopped at step N on request (SIGINT)" went to the pipe nobody read any more.)
  EXPECT_NE(text.find("error: cannot write to standard output"), std::string::npos) << text;
  EXPECT_GE(test::newest_checkpoint_step(out), 1) << text;  // (checkpoint_every 0: the stop's)
}

// How a forked child that installed the stop handlers ended after `interrupts` SIGINTs: its exit
// status (10 + the signal it recorded), or 128 + the signal that ended it.
int after_interrupts(int interrupts, bool ignored_from_the_start) {
  const pid_t child = fork();
  if (child == 0) {
    signal(SIGINT, ignored_from_the_start ? SIG_IGN : SIG_DFL);
    install_stop_signal_handlers();
    for (int i = 0; i < interrupts; ++i) raise(SIGINT);  // (handled before raise returns)
    _exit(10 + g_stop_signals.last.load());
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The first Ctrl-C asks for a stop; a second ends the process at once, as Ctrl-C does elsewhere;
// a SIGINT ignored from the start (a job a script ran in the background) stays ignored.
TEST(StopSignals, ASecondCtrlCEndsTheProcessAndAnIgnoredOneStaysIgnored) {
  EXPECT_EQ(after_interrupts(1, false), 10 + SIGINT);
  EXPECT_EQ(after_interrupts(2, false), 128 + SIGINT);
  EXPECT_EQ(after_interrupts(2, true), 10);
}

// A typo in a suite's name ran nothing and exited 0; a directory given as the config was "not
// found".
TEST(Launch, ScriptsRefuseWhatTheyCannotRunInOneLine) {
  const std::string source = std::string(RF_SOURCE_DIR);
  const Result suite = run(source + "/bench/run.sh throughtput");
  EXPECT_EQ(suite.exit_code, 2) << suite.out;
  EXPECT_EQ(suite.out.rfind("run.sh: unknown suite 'throughtput'; one of throughput,", 0), 0u)
      << suite.out;
  const Result two = run(source + "/bench/run.sh depth length");
  EXPECT_EQ(two.exit_code, 2) << two.out;
  EXPECT_EQ(two.out, "run.sh: one suite at a time (got: depth length)\n");
  const std::string dir = test::fresh_dir("cfg");
  const Result config = run(source + "/launch/train.sh " + dir);
  EXPECT_EQ(config.exit_code, 2) << config.out;
  EXPECT_EQ(config.out, "train.sh: '" + dir + "' is a directory, not a config file\n");
}

TEST(Launch, TrainScriptRunsRanksAndRefusesImpossibleBatches) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string script = std::string(RF_SOURCE_DIR) + "/launch/train.sh ";
  const std::string env = "RF_BUILD_DIR=" + std::string(RF_BINARY_DIR) + " ";
  const Result ok = run(env + script + cfg + " -n 2 --set train.out_dir=" + dir + "/run");
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_NE(ok.out.find("ranks: 2"), std::string::npos) << ok.out;
  // Half of 1000 bytes is 7 windows of 65 bytes: fewer than 2 ranks x 4 sequences.
  std::ofstream(dir + "/tiny.txt") << std::string(1000, 'a');
  const Result refused =
      run(env + script + cfg + " -n 2 --set train.out_dir=" + dir +
          "/run2 --set data.format=text --set model.vocab_size=256 " + "--set data.train=" + dir +
          "/tiny.txt --set train.batch_size=4 " + "--set data.val_fraction=0.5");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.out.find("fewer than one global batch"), std::string::npos) << refused.out;
  EXPECT_NE(run(script + cfg + " -n zero").exit_code, 0);
}

// Ctrl-C to launch/train.sh -n 2: mpirun's own answer to SIGINT killed the ranks before any
// checkpoint. The script asks them for one through mpirun (SIGUSR1) and exits 130.
TEST(Launch, CtrlCToTheTrainScriptCheckpointsEveryRankAndExits130) {
  const std::string dir = test::fresh_dir("job");
  const std::string cfg = write_config(dir);
  const std::string out = dir + "/run", log = dir + "/job.log";
  const pid_t job =
      spawn("env RF_BUILD_DIR=" + std::string(RF_BINARY_DIR) + " " + std::string(RF_SOURCE_DIR) +
                "/launch/train.sh " + cfg + " -n 2 --set train.out_dir=" + out +
                " --set train.steps=1000000 --set train.checkpoint_every=0",
            log);
  const ReapOnExit reap{job};
  ASSERT_TRUE(wait_for_file(out + "/metrics.jsonl", 120)) << test::read_text(log);
  kill(job, SIGINT);  // (the script alone, as a terminal's Ctrl-C now reaches it)
  double seconds = 0;
  EXPECT_EQ(wait_exit(job, 120, &seconds), 130) << test::read_text(log);
  const std::string text = test::read_text(log);
  EXPECT_NE(text.find("train.sh: asking the ranks to stop with a checkpoint"), std::string::npos)
      << text;
  EXPECT_NE(text.find("on request (SIGUSR1)"), std::string::npos) << text;
  EXPECT_GE(test::newest_checkpoint_step(out), 1) << text;
}

// A configure that failed (here: a compiler that does not exist; for a user, a library missing
// before launch/setup.sh ran) must not leave the folder stuck: the next launch/build.sh
// configures again instead of building from a cache that has no build files.
TEST(Launch, BuildScriptConfiguresAgainAfterAFailedConfigure) {
  const std::string dir = test::fresh_dir("build_retry");
  const std::string env = "RF_BUILD_DIR=" + dir + "/build RF_BUILD_TARGET=help ";
  const std::string script = std::string(RF_SOURCE_DIR) + "/launch/build.sh";
  const Result failed = run(env + script + " -DCMAKE_CXX_COMPILER=/nonexistent/c++");
  EXPECT_NE(failed.exit_code, 0) << failed.out;
  EXPECT_NE(failed.out.find("CMake configuration failed"), std::string::npos) << failed.out;
  const Result retried = run(env + script);
  EXPECT_EQ(retried.exit_code, 0) << retried.out;
  EXPECT_NE(retried.out.find("configuring in"), std::string::npos) << retried.out;
}

// The launchers' rank and size variables are read before MPI starts (to decide whether to start it
// and to prefix early errors): one that is empty or not a whole number in range is passed over for
// the next launcher's, never read as 0.
TEST(Launch, LauncherVariablesThatAreNotWholeNumbersArePassedOver) {
  const std::vector<const char*> all = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE",  "SLURM_STEP_NUM_TASKS",
                                        "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                        "SLURM_PROCID"};
  for (const char* name : all) ASSERT_EQ(unsetenv(name), 0) << name;
  EXPECT_EQ(launcher_size().ranks, 1);
  EXPECT_EQ(launcher_size().variable, nullptr);
  EXPECT_EQ(launcher_rank(), 0);
  EXPECT_FALSE(launched_as_multi_rank_job());

  setenv("OMPI_COMM_WORLD_SIZE", "4x", 1);
  setenv("PMI_SIZE", "0", 1);
  setenv("SLURM_STEP_NUM_TASKS", "3", 1);
  EXPECT_EQ(launcher_size().ranks, 3);
  EXPECT_STREQ(launcher_size().variable, "SLURM_STEP_NUM_TASKS");
  EXPECT_TRUE(launched_as_multi_rank_job());
  setenv("OMPI_COMM_WORLD_SIZE", "99999999999", 1);  // above INT_MAX
  EXPECT_STREQ(launcher_size().variable, "SLURM_STEP_NUM_TASKS");

  setenv("OMPI_COMM_WORLD_RANK", "", 1);
  setenv("PMIX_RANK", "abc", 1);
  setenv("PMI_RANK", "-1", 1);
  setenv("SLURM_PROCID", "2", 1);
  EXPECT_EQ(launcher_rank(), 2);
  setenv("PMIX_RANK", "5", 1);
  EXPECT_EQ(launcher_rank(), 5);
  for (const char* name : all) unsetenv(name);
}

}  // namespace
}  // namespace rf
