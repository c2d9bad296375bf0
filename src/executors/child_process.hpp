// What the process executor and command tasks share: a child's exit as an Asio wait (pidfd),
// the words for a wait status, and output made safe for JSON.
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
/// Waits until the child behind `pidfd` has exited, then reaps it; returns its wait status.
/// Cancellation: none (the caller kills the child to end the wait).
asio::awaitable<int> wait_child(pid_t pid, int pidfd);

} // namespace asched::detail
