// rawclient: RouterService/Stream through a minimal HTTP/2 client, for round trips and one-way load.
//
// The grpc C++ client hands every message to its own completion-queue threads, which costs tens
// of microseconds per round trip on a 2-core machine and dominates a keystroke's latency; for bulk
// data it tops out near 0.7 GB/s here, below what a bridge may carry. This client speaks HTTP/2
// itself over one TCP socket (prior knowledge, no TLS): it sends the connection preface, SETTINGS,
// one HEADERS frame (HPACK literals, no Huffman), then StreamRequest{payload} messages in DATA
// frames. It answers SETTINGS and PING, honours the peer's flow-control windows and frame size,
// returns window, and ends with a GOAWAY frame and END_STREAM. Both bridges are measured with it
// the same way.
//
//   rawclient [--mode latency] --addr HOST:PORT --iters N [--warmup N] [--route NAME] [--pid PID]
//     1-byte round trips: one DATA frame per request, wait for the byte to come back.
//     Prints one JSON line like the load client's latency mode: p50_us, p90_us, p99_us, p999_us,
//     max_us, mean_us, ok, bad; "ended" says how the stream ended (trailers, reset or none).
//   rawclient --mode oneway --addr HOST:PORT --size BYTES --seconds S [--route NAME] [--pid PID]
//     Writes messages of BYTES payload for S seconds (a prepared buffer written again and again,
//     no per-message work), then the GOAWAY frame; the time runs until the stream's trailers,
//     that is until the bridge has delivered every byte to its target. Prints the load client's
//     oneway fields: sent, seconds, bytes_per_s, bridge_cpu_s, client_cpu_s, status.
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
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
    printf("{\"ok\":false,\"error\":\"%s: %s\"}\n", what, strerror(errno));
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

// Flow control and settings the peer gave us (we only send on stream 1).
static int64_t conn_window = 65535, stream_window = 65535;
static uint32_t peer_initial_window = 65535, peer_max_frame = 16384;
static int settings_seen = 0;
static int collect = 1;  // keep response messages in msg[] (round trips) or only count them (one-way)
static const char *ended = NULL;

// Handles every whole frame in in[]: settings, pings, windows, responses, the stream's end.
static void handle_frames(void) {
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
            if (collect) {
                if (msg_len + n > sizeof msg) die("response message too large");
                memcpy(msg + msg_len, payload + start, n);
                msg_len += n;
            }
            unacked += len;
            if (unacked >= 1 << 18) {
                send_window_update(0, (uint32_t)unacked);
                send_window_update(1, (uint32_t)unacked);
                unacked = 0;
            }
            if (flags & END_STREAM) ended = "data-end-stream";
        } else if (type == HEADERS && stream == 1 && (flags & END_STREAM)) {
            ended = "trailers";
        } else if (type == RST_STREAM && stream == 1) {
            ended = "reset";
        } else if (type == SETTINGS && !(flags & ACK)) {
            for (size_t i = 0; i + 6 <= len; i += 6) {
                unsigned id = ((unsigned)payload[i] << 8) | payload[i + 1];
                uint32_t v = ((uint32_t)payload[i + 2] << 24) | ((uint32_t)payload[i + 3] << 16) |
                             ((uint32_t)payload[i + 4] << 8) | payload[i + 5];
                if (id == 4) {  // INITIAL_WINDOW_SIZE applies to open streams as a delta
                    stream_window += (int64_t)v - (int64_t)peer_initial_window;
                    peer_initial_window = v;
                } else if (id == 5) {  // MAX_FRAME_SIZE
                    peer_max_frame = v;
                }
            }
            settings_seen = 1;
            unsigned char f[9];
            frame_header(f, 0, SETTINGS, ACK, 0);
            write_all(f, sizeof f);
        } else if (type == PING && !(flags & ACK) && len == 8) {
            unsigned char f[17];
            frame_header(f, 8, PING, ACK, 0);
            memcpy(f + 9, payload, 8);
            write_all(f, sizeof f);
        } else if (type == WINDOW_UPDATE && len == 4) {
            uint32_t inc = (((uint32_t)payload[0] & 0x7F) << 24) | ((uint32_t)payload[1] << 16) |
                           ((uint32_t)payload[2] << 8) | payload[3];
            if (stream == 0) conn_window += inc;
            else if (stream == 1) stream_window += inc;
        } else if (type == GOAWAY) {
            ended = "connection-goaway";
        }
    }
    memmove(in, in + off, in_len - off);
    in_len -= off;
}

// Reads what the socket has (waiting for it when block is set) and handles it; 0 at EOF.
static int read_some(int block) {
    if (!block) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0) return 1;
    }
    for (;;) {
        ssize_t r = read(fd, in + in_len, sizeof in - in_len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("read");
        if (r == 0) {
            if (!ended) ended = "eof";
            return 0;
        }
        in_len += (size_t)r;
        handle_frames();
        return 1;
    }
}

// Reads and handles frames until a response payload arrives (returns its length, first byte in
// *first) or the stream ends (returns -1 and sets ended).
static int read_until_payload(int *first) {
    for (;;) {
        int got = next_response(first);
        if (got > 0) return got;
        if (ended || !read_some(1)) return -1;
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

static double self_cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

// Sends the GOAWAY frame with END_STREAM (waiting for window if need be) and reads until the
// stream ends.
static void finish_stream(void) {
    if (ended) return;
    unsigned char frame[9 + 16];
    size_t m = grpc_request(frame + 9, NULL, 0, GOAWAY);
    while (!ended && (conn_window < (int64_t)m || stream_window < (int64_t)m)) read_some(1);
    if (!ended) {
        frame_header(frame, m, DATA, END_STREAM, 1);
        write_all(frame, 9 + m);
        conn_window -= (int64_t)m;
        stream_window -= (int64_t)m;
    }
    while (!ended && read_some(1)) {
        int first;
        while (next_response(&first) > 0) {}
    }
}

static int run_latency(int iters, int warmup, long pid) {
    double *us = malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
    if (!us) die("malloc");
    int n = 0, bad = 0, ok = 1;
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
        int got = read_until_payload(&first);
        double z = now_us();
        if (got < 0) {
            ok = 0;
            break;
        }
        if (got != 1 || first != byte) bad++;
        if (i >= warmup) us[n++] = z - a;
    }
    double total = (now_us() - t0) / 1e6, cpu = proc_cpu(pid) - cpu0;
    finish_stream();
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

// Appends a varint; returns its length.
static size_t put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static int run_oneway(size_t size, double seconds, long pid) {
    collect = 0;
    // One gRPC message: prefix, field 1 (payload) of `size` bytes. The buffer repeats it so that
    // one pass is about 1 MiB; it is written again and again, whole messages at a time.
    unsigned char head[16];
    size_t h = put_varint(head + 6, size);
    size_t body = 1 + h + size, msg_bytes = 5 + body;
    size_t per_buf = msg_bytes >= (1 << 20) ? 1 : (1 << 20) / msg_bytes;
    size_t buf_len = per_buf * msg_bytes;
    unsigned char *buf = malloc(buf_len);
    if (!buf) die("malloc");
    for (size_t k = 0; k < per_buf; k++) {
        unsigned char *p = buf + k * msg_bytes;
        p[0] = 0;
        put32(p + 1, (uint32_t)body);
        p[5] = 0x0A;
        memcpy(p + 6, head + 6, h);
        for (size_t i = 0; i < size; i++) p[6 + h + i] = (unsigned char)(i * 31 + k);
    }
    while (!settings_seen && !ended) read_some(1);  // the peer's frame size and window first

    double cpu0 = proc_cpu(pid), self0 = self_cpu(), t0 = now_us(), until = t0 + seconds * 1e6;
    uint64_t passes = 0, frames = 0;
    size_t pos = 0;
    while (!ended) {
        int64_t room = conn_window < stream_window ? conn_window : stream_window;
        if (room <= 0) {
            if (!read_some(1)) break;
            continue;
        }
        size_t chunk = buf_len - pos;
        if ((int64_t)chunk > room) chunk = (size_t)room;
        if (chunk > peer_max_frame) chunk = peer_max_frame;
        unsigned char fh[9];
        frame_header(fh, chunk, DATA, 0, 1);
        struct iovec iov[2] = {{fh, 9}, {buf + pos, chunk}};
        size_t left = 9 + chunk;
        while (left > 0) {
            ssize_t w = writev(fd, iov, 2);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) die("writev");
            left -= (size_t)w;
            for (int i = 0; i < 2 && w > 0; i++) {
                size_t take = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
                iov[i].iov_base = (unsigned char *)iov[i].iov_base + take;
                iov[i].iov_len -= take;
                w -= (ssize_t)take;
            }
        }
        conn_window -= (int64_t)chunk;
        stream_window -= (int64_t)chunk;
        pos += chunk;
        if (++frames % 8 == 0) read_some(0);
        if (pos == buf_len) {
            pos = 0;
            passes++;
            if (now_us() >= until) break;
        }
    }
    int ok = !ended;
    finish_stream();
    double el = (now_us() - t0) / 1e6, cpu = proc_cpu(pid) - cpu0, self = self_cpu() - self0;
    close(fd);
    ok = ok && ended && !strcmp(ended, "trailers");
    uint64_t sent = passes * per_buf * size;
    printf("{\"ok\":%s,\"mode\":\"oneway\",\"client\":\"raw-http2\",\"size\":%zu,\"sent\":%llu,\"frames\":%llu,"
           "\"max_frame\":%u,\"seconds\":%.6f,\"bytes_per_s\":%.1f,\"bridge_cpu_s\":%.3f,\"client_cpu_s\":%.3f,"
           "\"moved\":%llu,\"ended\":\"%s\"}\n",
           ok ? "true" : "false", size, (unsigned long long)sent, (unsigned long long)frames, peer_max_frame, el,
           sent / el, cpu, self, (unsigned long long)sent, ended ? ended : "none");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1:50051", *route = "", *mode = "latency";
    int iters = 5000, warmup = 500;
    size_t size = 65536;
    double seconds = 2;
    long pid = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--addr")) addr = argv[i + 1];
        else if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size")) size = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--route")) route = argv[i + 1];
        else if (!strcmp(argv[i], "--pid")) pid = atol(argv[i + 1]);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(mode, "latency") && strcmp(mode, "oneway")) {
        fprintf(stderr, "--mode must be latency or oneway\n");
        return 2;
    }
    if (size == 0 || size > (64u << 20)) {
        fprintf(stderr, "--size must be 1 to 64 MiB\n");
        return 2;
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

    return strcmp(mode, "oneway") ? run_latency(iters, warmup, pid) : run_oneway(size, seconds, pid);
}
