#define _GNU_SOURCE
#include "CJMPSystem.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <errno.h>

int jmp_open_pty_master(char *slave_path, size_t slave_path_size) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (master < 0) return -1;
    if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, slave_path, slave_path_size) != 0) {
        int saved = errno;
        close(master);
        errno = saved;
        return -1;
    }
    return master;
}

int jmp_set_exclusive(int fd) { return ioctl(fd, TIOCEXCL); }

int jmp_set_packet_mode(int master) {
    int on = 1;
    return ioctl(master, TIOCPKT, &on);
}

int jmp_packet_status_waits(int master) {
    struct pollfd waiting = {.fd = master, .events = POLLPRI, .revents = 0};
    int ready = poll(&waiting, 1, 0);
    if (ready < 0) return -1;
    return ready > 0 && (waiting.revents & POLLPRI) ? 1 : 0;
}

int jmp_output_queue(int fd) {
    int count = 0;
    if (ioctl(fd, TIOCOUTQ, &count) != 0) return -1;
    return count;
}

int jmp_make_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return -1;
    return 0;
}

int jmp_adopt_pty_master(int master, char *slave_path, size_t slave_path_size) {
    if (ptsname_r(master, slave_path, slave_path_size) != 0) return -1;
    return jmp_make_nonblocking(master);
}
