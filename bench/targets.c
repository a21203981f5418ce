/*
 * Unix-socket targets for the jmp-bridge benchmark (bench/README.md).
 *
 *   targets discard PATH        read and drop everything; at EOF close the connection
 *   targets echo PATH           write back everything read; at EOF shut down writing, then close
 *   targets slow PATH BYTES/S   like discard, but read at most BYTES/S (a slow consumer)
 *   targets push PATH BYTES     a client: connect, write BYTES, shut down writing, read until
 *                               EOF (a reader thread counts what comes back while writing);
 *                               print {"seconds": S, "sent": N, "received": M} as JSON
 *
 * One thread per connection with blocking I/O and large buffers, so a target is never the
 * bottleneck of a single stream and 1,000 idle connections cost little. Prints "ready" on stdout
 * once listening. Stops on SIGTERM/SIGINT (default action).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum mode { DISCARD, ECHO, SLOW };
static enum mode mode;
static double rate; /* bytes per second, SLOW only */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    size_t cap = mode == SLOW ? 64 * 1024 : 1024 * 1024;
    char *buf = malloc(cap);
    double start = now();
    uint64_t total = 0;
    if (!buf) goto out;
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (r == 0) {
            if (mode == ECHO) shutdown(fd, SHUT_WR);
            break;
        }
        total += (uint64_t)r;
        if (mode == ECHO && write_all(fd, buf, (size_t)r) < 0) break;
        if (mode == SLOW) {
            double due = start + (double)total / rate;
            double wait = due - now();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
            }
        }
    }
out:
    free(buf);
    close(fd);
    return NULL;
}

struct reader {
    int fd;
    uint64_t received;
};

static void *read_back(void *arg) {
    struct reader *r = arg;
    char *buf = malloc(1 << 20);
    if (!buf) return NULL;
    for (;;) {
        ssize_t n = read(r->fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        r->received += (uint64_t)n;
    }
    free(buf);
    return NULL;
}

/* The raw-socket load client for the local-door rows. */
static int push(const char *path, uint64_t bytes) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect");
        return 1;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) return 1;
    memset(buf, 0x5a, cap);
    struct reader r = {fd, 0};
    pthread_t t;
    double start = now();
    pthread_create(&t, NULL, read_back, &r);
    uint64_t sent = 0;
    while (sent < bytes) {
        size_t n = bytes - sent < cap ? (size_t)(bytes - sent) : cap;
        if (write_all(fd, buf, n) < 0) break;
        sent += n;
    }
    shutdown(fd, SHUT_WR);
    pthread_join(t, NULL);
    double seconds = now() - start;
    printf("{\"seconds\": %.6f, \"sent\": %llu, \"received\": %llu}\n", seconds,
           (unsigned long long)sent, (unsigned long long)r.received);
    free(buf);
    close(fd);
    return sent == bytes ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "push")) {
        signal(SIGPIPE, SIG_IGN);
        return push(argv[2], strtoull(argv[3], NULL, 10));
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s discard|echo|slow PATH [BYTES_PER_SECOND]\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "discard")) mode = DISCARD;
    else if (!strcmp(argv[1], "echo")) mode = ECHO;
    else if (!strcmp(argv[1], "slow") && argc > 3) { mode = SLOW; rate = atof(argv[3]); }
    else { fprintf(stderr, "unknown mode %s\n", argv[1]); return 2; }
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(argv[2]) >= sizeof sa.sun_path) { fprintf(stderr, "path too long\n"); return 2; }
    strcpy(sa.sun_path, argv[2]);
    unlink(argv[2]);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("listen");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
            perror("accept");
            return 1;
        }
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) close(fd);
    }
}
