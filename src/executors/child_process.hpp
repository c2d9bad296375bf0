// What the process executor and command tasks share: a child's exit as an Asio wait (pidfd),
// the words for a wait status, and a job's process group.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <string>
#include <sys/types.h>

namespace asched::detail {

/// A pidfd for `pid` (Linux 5.3 and later); throws Error(invalid_argument) when the kernel has
/// none.
int open_pidfd(pid_t pid);
/// "exited with status 3", "killed by signal 11 (Segmentation fault)".
std::string describe_wait_status(int status);
/// Waits until the child behind `pidfd` has exited, without reaping it: while the child is a
/// zombie its pid, which is its process group's id, cannot be reused, so signalling the group
/// stays safe until reap_child(). Cancellation: none (the caller kills the child to end it).
asio::awaitable<void> wait_exit(pid_t pid, int pidfd);
/// Reaps a child whose exit wait_exit() saw, without blocking; returns its wait status (0 when
/// the kernel reaped it already: a host that ignores SIGCHLD).
int reap_child(pid_t pid);
/// Whether any process of group `pgid` is still running (zombies do not count).
bool process_group_alive(pid_t pgid);
/// Sends `sig` to every process of group `pgid`.
void signal_group(pid_t pgid, int sig);

} // namespace asched::detail
