// Readiness (epoll, eventfd) and zero-copy moves (splice through a pipe) for the local-door
// relay; Swift's Glibc module does not carry these.
#ifndef CJMPRELAY_H
#define CJMPRELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Readiness bits, as epoll(7) defines them.
static const uint32_t JMP_EV_IN = 0x001;
static const uint32_t JMP_EV_OUT = 0x004;
static const uint32_t JMP_EV_ERR = 0x008;
static const uint32_t JMP_EV_HUP = 0x010;
static const uint32_t JMP_EV_RDHUP = 0x2000;

/// One readiness event: the bits and the token the descriptor was registered with.
typedef struct {
    uint32_t events;
    uint64_t token;
} jmp_event;

/// epoll_create1(EPOLL_CLOEXEC).
int jmp_epoll_create(void);

/// Registers `fd` edge-triggered for `events` (JMP_EV_*), reported with `token`.
int jmp_epoll_add(int epoll, int fd, uint32_t events, uint64_t token);

/// Removes `fd` from the set.
int jmp_epoll_remove(int epoll, int fd);

/// Waits up to `timeout_ms` (-1: forever) for events; returns how many, or -1/errno.
int jmp_epoll_wait(int epoll, jmp_event *events, int max_events, int timeout_ms);

/// A non-blocking, close-on-exec eventfd.
int jmp_eventfd(void);

/// Adds one to an eventfd (wakes its waiter).
int jmp_eventfd_signal(int fd);

/// Resets an eventfd.
void jmp_eventfd_drain(int fd);

/// A non-blocking, close-on-exec pipe whose capacity is raised towards `capacity` bytes.
/// Returns the capacity granted, or -1/errno.
int jmp_pipe(int fds[2], int capacity);

/// splice(2) of up to `length` bytes, non-blocking, moving pages where it can.
ssize_t jmp_splice(int from, int to, size_t length);

/// 1 if the peer of connected Unix stream socket `fd` has closed it altogether (poll(2) reports
/// POLLHUP: nothing written to `fd` can be read any more), 0 if not (a half-close, shutdown(2)
/// with SHUT_WR, is not), -1/errno if poll(2) fails.
int jmp_peer_closed(int fd);

/// accept4(2), non-blocking and close-on-exec.
int jmp_accept(int listener);

/// A non-blocking, close-on-exec Unix stream socket connected to `path` (a connection in
/// progress counts as connected). Returns the descriptor, or -1/errno.
int jmp_connect_unix(const char *path);

/// A non-blocking, close-on-exec Unix stream socket listening at `path` (an existing socket
/// there is replaced). With `mode` >= 0 the socket file is created with at most that mode (less
/// what the umask removes): on Linux, bind(2) takes the mode of the socket's inode, set here with
/// fchmod(2) before binding, so the file is never reachable more widely, not even for a moment.
/// Returns the descriptor, or -1/errno.
int jmp_listen_unix(const char *path, int backlog, int mode);

#endif
