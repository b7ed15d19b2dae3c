// Removing a command's partial output when a signal ends it. `prepare` writes its shards under
// temporary names and removes them when it fails, but a Ctrl-C (SIGINT), SIGTERM or SIGHUP ended
// it before that ran: the output folder was left with a `tokens.u32.partial` of 4 bytes a token.
// Once started, the signals are blocked in this thread and every thread it starts later (the
// SentencePiece trainer's, OpenMP's), and one watcher thread waits for them: it removes what is
// registered (files, then the folders made for them, newest first) and ends the process with
// status 128 + the signal, as the shell reports a process the signal ended. A signal ignored
// when it starts (nohup's SIGHUP) stays ignored.
#pragma once

#include <string>

namespace rf {

// Starts the watcher (once per process; later calls do nothing). Call it before starting threads.
void start_interrupt_cleanup();

// `path` (a file, or a folder removed only if empty) is removed if a signal ends the process.
void remove_on_interrupt(const std::string& path);

// `path` is kept from now on (the command finished with it).
void keep_on_interrupt(const std::string& path);

}  // namespace rf
