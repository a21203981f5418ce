#define _GNU_SOURCE
#include "CJMPRelay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int jmp_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int jmp_epoll_add(int epoll, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event = {.events = events | EPOLLET, .data.u64 = token};
    return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
}

int jmp_epoll_remove(int epoll, int fd) { return epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL); }

int jmp_epoll_wait(int epoll, jmp_event *events, int max_events, int timeout_ms) {
    struct epoll_event raw[64];
    if (max_events > 64) max_events = 64;
    int count = epoll_wait(epoll, raw, max_events, timeout_ms);
    for (int i = 0; i < count; i++) {
        events[i].events = raw[i].events;
        events[i].token = raw[i].data.u64;
    }
    return count;
}

int jmp_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int jmp_eventfd_signal(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof one) == sizeof one ? 0 : -1;
}

void jmp_eventfd_drain(int fd) {
    uint64_t value;
    while (read(fd, &value, sizeof value) > 0) {
    }
}

int jmp_pipe(int fds[2], int capacity) {
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
    // Ask for the capacity, then for less if the system's limit (fs.pipe-max-size) refuses.
    for (int size = capacity; size >= 65536; size /= 2) {
        int granted = fcntl(fds[1], F_SETPIPE_SZ, size);
        if (granted > 0) return granted;
    }
    int granted = fcntl(fds[1], F_GETPIPE_SZ);
    return granted > 0 ? granted : 65536;
}

int jmp_peer_closed(int fd) {
    struct pollfd watched = {.fd = fd, .events = 0};
    int ready;
    do {
        ready = poll(&watched, 1, 0);
    } while (ready < 0 && errno == EINTR);
    if (ready < 0) return -1;
    return (watched.revents & POLLHUP) != 0;
}

ssize_t jmp_splice(int from, int to, size_t length) {
    return splice(from, NULL, to, NULL, length, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int jmp_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

static int fill_address(struct sockaddr_un *address, const char *path) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(address->sun_path, path);
    return 0;
}

int jmp_connect_unix(const char *path) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

int jmp_listen_unix(const char *path, int backlog, int mode) {
    struct sockaddr_un address;
    if (fill_address(&address, path) != 0) return -1;
    struct stat status;
    if (lstat(path, &status) == 0) {
        if (!S_ISSOCK(status.st_mode)) {
            errno = EEXIST;
            return -1;
        }
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if ((mode >= 0 && fchmod(fd, (mode_t)mode) != 0) || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(fd, backlog) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}
