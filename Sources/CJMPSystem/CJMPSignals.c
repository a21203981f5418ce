#define _GNU_SOURCE
// A self-pipe for termination signals, so a client can restore its terminal on every exit path.
#include "CJMPSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int termination_pipe[2] = {-1, -1};

static void termination_handler(int signal_number) {
    int saved = errno;
    unsigned char byte = (unsigned char)signal_number;
    (void)!write(termination_pipe[1], &byte, 1);
    errno = saved;
}

int jmp_termination_pipe(void) {
    if (termination_pipe[0] >= 0) return termination_pipe[0];
    if (pipe2(termination_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = termination_handler;
    sigemptyset(&action.sa_mask);
    int signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return termination_pipe[0];
}

int jmp_read_signal(int fd) {
    unsigned char byte = 0;
    if (read(fd, &byte, 1) != 1) return -1;
    return byte;
}

int jmp_signal_is_ignored(int signal_number) {
    struct sigaction current;
    if (sigaction(signal_number, NULL, &current) != 0) return 0;
    return current.sa_handler == SIG_IGN;
}
