// Small wrappers for C interfaces Swift cannot call directly (variadic ioctl, feature-gated
// pty functions).
#ifndef CJMPSYSTEM_H
#define CJMPSYSTEM_H

#include <stddef.h>

#include "CJMPMalloc.h"
#include "CJMPRelay.h"

/// Opens a new pty master (non-blocking, close-on-exec), unlocks its slave and writes the slave's
/// path into `slave_path`. Returns the master descriptor, or -1 with errno set.
int jmp_open_pty_master(char *slave_path, size_t slave_path_size);

/// ioctl(fd, TIOCEXCL): no further opens of this tty except by root. Returns 0 or -1/errno.
int jmp_set_exclusive(int fd);

/// ioctl(master, TIOCPKT, 1): every read of the pty master starts with a status byte, 0 before
/// data (TIOCPKT_DATA), or alone with TIOCPKT_FLUSHREAD and the like when the slave flushed its
/// queues. Returns 0 or -1/errno.
int jmp_set_packet_mode(int master);

/// Whether a pty master in packet mode holds a status byte (TIOCPKT_FLUSHREAD and the like) for
/// its next read (poll reports POLLPRI), without reading it. Returns 1, 0, or -1/errno.
int jmp_packet_status_waits(int master);

/// Takes back a pty master handed over by the service manager's file-descriptor store: writes
/// its slave's path into `slave_path` and makes it non-blocking and close-on-exec. Returns 0, or
/// -1 with errno set (ENOTTY: not a pty master).
int jmp_adopt_pty_master(int master, char *slave_path, size_t slave_path_size);

/// Makes `fd` non-blocking and close-on-exec (for descriptors handed over by the service
/// manager). Returns 0, or -1 with errno set.
int jmp_make_nonblocking(int fd);

/// Bytes waiting in the tty's output queue (TIOCOUTQ), or -1/errno.
int jmp_output_queue(int fd);

/// Sets input and output speed to any rate in bits per second (termios2 with BOTHER), keeping
/// every other setting. Returns 0 or -1/errno.
int jmp_set_baud_rate(int fd, unsigned int rate);

/// The output speed in bits per second as the kernel reports it (termios2), or -1/errno.
long jmp_get_baud_rate(int fd);

/// Catches SIGINT, SIGTERM, SIGHUP and SIGQUIT process-wide: each one caught is written as one
/// byte to a non-blocking pipe whose read end is returned (the same on every call), or -1/errno.
/// For a program that must clean up (restore a terminal) whatever ends it.
int jmp_termination_pipe(void);

/// Reads one caught signal from the pipe of jmp_termination_pipe(): its number, or -1 if none.
int jmp_read_signal(int fd);

/// 1 when the process ignores signal_number (SIG_IGN), else 0.
int jmp_signal_is_ignored(int signal_number);

#endif
