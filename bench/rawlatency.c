// rawlatency: 1-byte round trips through RouterService/Stream with a minimal HTTP/2 client.
//
// The grpc C++ client hands every message to its own completion-queue threads, which costs tens
// of microseconds per round trip on a 2-core machine and dominates a keystroke's latency. This
// client speaks HTTP/2 itself over one blocking TCP socket (prior knowledge, no TLS): it sends
// the connection preface, SETTINGS, one HEADERS frame (HPACK literals, no Huffman), then for each
// round trip one DATA frame holding one StreamRequest{payload: 1 byte}, and waits for the
// StreamResponse that carries the byte back. It answers SETTINGS and PING, returns window, and
// ends with a GOAWAY frame and END_STREAM. Both bridges are measured with it the same way.
//
//   rawlatency --addr HOST:PORT --iters N [--warmup N] [--route NAME] [--pid PID]
//
// Prints one JSON line like the load client's latency mode: p50_us, p90_us, p99_us, p999_us,
// max_us, mean_us, ok, bad; "ended" says how the stream ended (trailers, reset or none).
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8 };
enum { END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4, PADDED = 0x8, PRIORITY = 0x20 };

static int fd = -1;
static unsigned char in[1 << 20];
static size_t in_len = 0;
// gRPC messages from the response DATA frames, reassembled.
static unsigned char msg[1 << 16];
static size_t msg_len = 0;
static size_t unacked = 0;  // received DATA bytes not yet returned as window

static void die(const char *what) {
    printf("{\"ok\":false,\"mode\":\"latency\",\"error\":\"%s: %s\"}\n", what, strerror(errno));
    exit(1);
}

static void write_all(const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

static size_t frame_header(unsigned char *p, size_t len, int type, int flags, uint32_t stream) {
    p[0] = (unsigned char)(len >> 16);
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    p[3] = (unsigned char)type;
    p[4] = (unsigned char)flags;
    p[5] = (unsigned char)(stream >> 24);
    p[6] = (unsigned char)(stream >> 16);
    p[7] = (unsigned char)(stream >> 8);
    p[8] = (unsigned char)stream;
    return 9;
}

static size_t put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

// HPACK "literal header field without indexing, new name"; names and values are < 127 bytes.
static size_t hpack_literal(unsigned char *p, const char *name, const char *value) {
    size_t n = strlen(name), v = strlen(value), o = 0;
    p[o++] = 0x00;
    p[o++] = (unsigned char)n;
    memcpy(p + o, name, n);
    o += n;
    p[o++] = (unsigned char)v;
    memcpy(p + o, value, v);
    return o + v;
}

static void send_window_update(uint32_t stream, uint32_t increment) {
    unsigned char f[13];
    frame_header(f, 4, WINDOW_UPDATE, 0, stream);
    put32(f + 9, increment);
    write_all(f, sizeof f);
}

// A StreamRequest as a gRPC message: DATA frames carry field 1, control frames field 2.
static size_t grpc_request(unsigned char *p, const unsigned char *payload, size_t n, int frame_type) {
    size_t body = 0;
    unsigned char b[16];
    if (n > 0) {
        b[body++] = 0x0A;
        b[body++] = (unsigned char)n;
        memcpy(b + body, payload, n);
        body += n;
    }
    if (frame_type != 0) {
        b[body++] = 0x10;
        b[body++] = (unsigned char)frame_type;
    }
    p[0] = 0;
    put32(p + 1, (uint32_t)body);
    memcpy(p + 5, b, body);
    return 5 + body;
}

static uint64_t varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    int shift = 0;
    while (*p < end && shift < 64) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) break;
        shift += 7;
    }
    return v;
}

// Takes the next whole gRPC message out of msg[]; returns its DATA payload length (-1: none
// complete yet) and the payload's first byte in *first.
static int next_response(int *first) {
    for (;;) {
        if (msg_len < 5) return -1;
        uint32_t len = ((uint32_t)msg[1] << 24) | ((uint32_t)msg[2] << 16) | ((uint32_t)msg[3] << 8) | msg[4];
        if (msg_len < 5 + len) return -1;
        const unsigned char *p = msg + 5, *end = msg + 5 + len;
        int payload = 0;
        *first = -1;
        while (p < end) {
            uint64_t key = varint(&p, end);
            if ((key & 7) == 2) {
                uint64_t n = varint(&p, end);
                if (key >> 3 == 1) {
                    payload = (int)n;
                    if (n > 0 && p < end) *first = *p;
                }
                p += n;
            } else if ((key & 7) == 0) {
                varint(&p, end);
            } else {
                break;
            }
        }
        memmove(msg, msg + 5 + len, msg_len - 5 - len);
        msg_len -= 5 + len;
        if (payload > 0) return payload;
    }
}

// Reads and handles frames until a response payload arrives (returns its length, first byte in
// *first) or the stream ends (returns -1 and sets *ended).
static int read_until_payload(int *first, const char **ended) {
    for (;;) {
        int got = next_response(first);
        if (got > 0) return got;
        // Handle every whole frame in the input buffer.
        size_t off = 0;
        while (in_len - off >= 9) {
            unsigned char *h = in + off;
            size_t len = ((size_t)h[0] << 16) | ((size_t)h[1] << 8) | h[2];
            if (in_len - off < 9 + len) break;
            int type = h[3], flags = h[4];
            uint32_t stream = ((uint32_t)(h[5] & 0x7F) << 24) | ((uint32_t)h[6] << 16) | ((uint32_t)h[7] << 8) | h[8];
            unsigned char *payload = h + 9;
            off += 9 + len;
            if (type == DATA && stream == 1) {
                size_t pad = 0, start = 0;
                if (flags & PADDED) {
                    pad = payload[0];
                    start = 1;
                }
                size_t n = len - start - pad;
                if (msg_len + n > sizeof msg) die("response message too large");
                memcpy(msg + msg_len, payload + start, n);
                msg_len += n;
                unacked += len;
                if (unacked >= 1 << 18) {
                    send_window_update(0, (uint32_t)unacked);
                    send_window_update(1, (uint32_t)unacked);
                    unacked = 0;
                }
                if (flags & END_STREAM) *ended = "data-end-stream";
            } else if (type == HEADERS && stream == 1 && (flags & END_STREAM)) {
                *ended = "trailers";
            } else if (type == RST_STREAM && stream == 1) {
                *ended = "reset";
            } else if (type == SETTINGS && !(flags & ACK)) {
                unsigned char f[9];
                frame_header(f, 0, SETTINGS, ACK, 0);
                write_all(f, sizeof f);
            } else if (type == PING && !(flags & ACK) && len == 8) {
                unsigned char f[17];
                frame_header(f, 8, PING, ACK, 0);
                memcpy(f + 9, payload, 8);
                write_all(f, sizeof f);
            } else if (type == GOAWAY) {
                *ended = "connection-goaway";
            }
        }
        memmove(in, in + off, in_len - off);
        in_len -= off;
        got = next_response(first);
        if (got > 0) return got;
        if (*ended) return -1;
        ssize_t r = read(fd, in + in_len, sizeof in - in_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read");
        if (r == 0) {
            *ended = "eof";
            return -1;
        }
        in_len += (size_t)r;
    }
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static double proc_cpu(long pid) {
    if (pid <= 0) return 0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long utime = 0, stime = 0;
    // Fields after the command: state(3) ... utime(14) stime(15).
    int field = 2;
    for (char *s = p + 1; *s; s++) {
        if (*s == ' ') {
            field++;
            if (field == 14) utime = strtoul(s + 1, NULL, 10);
            if (field == 15) {
                stime = strtoul(s + 1, NULL, 10);
                break;
            }
        }
    }
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1:50051", *route = "";
    int iters = 5000, warmup = 500;
    long pid = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--route")) route = argv[i + 1];
        else if (!strcmp(argv[i], "--pid")) pid = atol(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) {
        fprintf(stderr, "--addr must be HOST:PORT\n");
        return 2;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) die("getaddrinfo");
    fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) die("connect");
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    // Preface, SETTINGS (no push, 1 MiB stream window), connection window + 16 MiB.
    unsigned char out[1024];
    size_t o = 0;
    memcpy(out, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    o = 24;
    o += frame_header(out + o, 12, SETTINGS, 0, 0);
    out[o++] = 0;
    out[o++] = 2;  // ENABLE_PUSH
    o += put32(out + o, 0);
    out[o++] = 0;
    out[o++] = 4;  // INITIAL_WINDOW_SIZE
    o += put32(out + o, 1 << 20);
    o += frame_header(out + o, 4, WINDOW_UPDATE, 0, 0);
    o += put32(out + o, 16 << 20);
    // HEADERS for stream 1.
    unsigned char block[512];
    size_t b = 0;
    b += hpack_literal(block + b, ":method", "POST");
    b += hpack_literal(block + b, ":scheme", "http");
    b += hpack_literal(block + b, ":path", "/jumpstarter.v1.RouterService/Stream");
    b += hpack_literal(block + b, ":authority", addr);
    b += hpack_literal(block + b, "content-type", "application/grpc");
    b += hpack_literal(block + b, "te", "trailers");
    if (*route) b += hpack_literal(block + b, "jmp-route", route);
    o += frame_header(out + o, b, HEADERS, END_HEADERS, 1);
    memcpy(out + o, block, b);
    o += b;
    write_all(out, o);

    double *us = malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
    if (!us) die("malloc");
    int n = 0, bad = 0, ok = 1;
    const char *ended = NULL;
    double cpu0 = 0, t0 = now_us();
    for (int i = 0; i < warmup + iters; i++) {
        if (i == warmup) {
            cpu0 = proc_cpu(pid);
            t0 = now_us();
        }
        unsigned char byte = (unsigned char)('a' + i % 26), frame[9 + 16];
        size_t m = grpc_request(frame + 9, &byte, 1, 0);
        frame_header(frame, m, DATA, 0, 1);
        double a = now_us();
        write_all(frame, 9 + m);
        int first = -1;
        int got = read_until_payload(&first, &ended);
        double z = now_us();
        if (got < 0) {
            ok = 0;
            break;
        }
        if (got != 1 || first != byte) bad++;
        if (i >= warmup) us[n++] = z - a;
    }
    double total = (now_us() - t0) / 1e6, cpu = proc_cpu(pid) - cpu0;

    // GOAWAY frame, END_STREAM, then wait for the trailers (or a reset).
    if (!ended) {
        unsigned char frame[9 + 16];
        size_t m = grpc_request(frame + 9, NULL, 0, GOAWAY);
        frame_header(frame, m, DATA, END_STREAM, 1);
        write_all(frame, 9 + m);
        int first;
        while (!ended) {
            if (read_until_payload(&first, &ended) < 0) break;
        }
    }
    close(fd);

    qsort(us, (size_t)n, sizeof(double), compare);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += us[i];
#define PCT(q) (n ? us[(int)((q) * (n - 1) + 0.5) < n ? (int)((q) * (n - 1) + 0.5) : n - 1] : -1.0)
    ok = ok && bad == 0 && n == iters;
    printf("{\"ok\":%s,\"mode\":\"latency\",\"client\":\"raw-http2\",\"iters\":%d,\"bad\":%d,\"p50_us\":%.1f,"
           "\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,"
           "\"seconds\":%.3f,\"bridge_cpu_s\":%.3f,\"ended\":\"%s\"}\n",
           ok ? "true" : "false", n, bad, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), n ? us[n - 1] : -1.0,
           n ? sum / n : -1.0, total, cpu, ended ? ended : "none");
    return ok ? 0 : 1;
}
