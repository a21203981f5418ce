// Load client for the jmp-bridge benchmark (bench/README.md): grpc C++ (Debian's libgrpc++)
// speaking jumpstarter.v1.RouterService/Stream to a bridge on loopback, plaintext HTTP/2.
//
//   loadclient --addr 127.0.0.1:PORT --mode oneway|echo --size BYTES [--seconds S | --bytes N]
//   loadclient --addr ... --mode latency --iters N
//   loadclient --addr ... --mode streams --count N [--channels K]
//   loadclient --addr 127.0.0.1:0 --mode sink      (a grpc C++ server for the method: the ceiling)
//   common: --pid PID (the bridge: CPU and RSS are read from /proc/PID), --rss-sample-ms MS,
//           --route NAME (jmp-route metadata), --timeout S (hard deadline of every call),
//           --token T (authorization: Bearer T, as an exporter sends to a router or the gateway),
//           --tls-ca FILE (connect with TLS, trusting FILE), --tls-cert FILE --tls-key FILE (sink:
//           serve TLS with that certificate; ALPN h2, as gRPC servers do)
//
// Prints one JSON object on stdout. Exit status 0 unless the run failed (bad echo data, short
// transfer, a call that did not complete); the JSON says what happened either way.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "jumpstarter/v1/router.grpc.pb.h"

using jumpstarter::v1::FrameType;
using jumpstarter::v1::RouterService;
using jumpstarter::v1::StreamRequest;
using jumpstarter::v1::StreamResponse;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    std::string addr = "127.0.0.1:8083";
    std::string mode = "oneway";
    std::string route;
    std::string token;
    size_t size = 65536;
    double seconds = 3;
    uint64_t bytes = 0;
    int iters = 10000;
    int warmup = 500;
    int count = 1000;
    int channels = 1;
    int batch = 1;
    int pid = 0;
    int rss_sample_ms = 0;
    double timeout = 120;
    std::string tls_ca;
    std::string tls_cert;
    std::string tls_key;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        fprintf(stderr, "cannot read %s\n", path.c_str());
        exit(2);
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// Payload bytes follow a 256-byte pseudo-random period, so every message of a multiple of 256
// bytes is the same and the echo check is a memcmp at offset (stream position % 256).
constexpr size_t kPeriod = 256;
std::string g_pattern;

void make_pattern(size_t max_size) {
    g_pattern.resize(max_size + kPeriod);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < kPeriod; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g_pattern[i] = static_cast<char>(x & 0xff);
    }
    for (size_t i = kPeriod; i < g_pattern.size(); i++) g_pattern[i] = g_pattern[i % kPeriod];
}

// Whether data[0..n) is the pattern's bytes at stream offset `offset`.
bool matches_pattern(const char* data, size_t n, uint64_t offset) {
    size_t chunk = g_pattern.size() - kPeriod;
    for (size_t done = 0; done < n; done += chunk) {
        size_t len = std::min(chunk, n - done);
        if (std::memcmp(data + done, g_pattern.data() + ((offset + done) % kPeriod), len) != 0) return false;
    }
    return true;
}

double secs(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
}

// utime + stime of a process (all its threads), in seconds; -1 if unreadable.
double proc_cpu(int pid) {
    if (pid <= 0) return -1;
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto p = s.rfind(')');
    if (p == std::string::npos) return -1;
    std::istringstream in(s.substr(p + 2));
    std::string field;
    unsigned long long ut = 0, st = 0;
    // Fields after the command: state(3) ... utime(14) stime(15).
    for (int i = 3; i <= 15; i++) {
        in >> field;
        if (i == 14) ut = std::stoull(field);
        if (i == 15) st = std::stoull(field);
    }
    return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}

long proc_rss_kib(int pid) {
    if (pid <= 0) return -1;
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

double self_cpu() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

// Samples the bridge's RSS in the background; keeps the maximum.
struct RssSampler {
    int pid, ms;
    std::atomic<bool> stop{false};
    std::atomic<long> max_kib{0};
    std::thread t;
    RssSampler(int pid, int ms) : pid(pid), ms(ms) {
        if (pid > 0 && ms > 0)
            t = std::thread([this] {
                while (!stop) {
                    long r = proc_rss_kib(this->pid);
                    if (r > max_kib) max_kib = r;
                    std::this_thread::sleep_for(std::chrono::milliseconds(this->ms));
                }
            });
    }
    ~RssSampler() {
        stop = true;
        if (t.joinable()) t.join();
    }
};

std::shared_ptr<grpc::Channel> make_channel(const Options& o, int index) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    // A distinct argument per channel gives each its own subchannel, hence its own connection.
    args.SetInt("jmpbench.channel_index", index);
    if (o.tls_ca.empty()) return grpc::CreateCustomChannel(o.addr, grpc::InsecureChannelCredentials(), args);
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = read_file(o.tls_ca);
    return grpc::CreateCustomChannel(o.addr, grpc::SslCredentials(tls), args);
}

void set_context(const Options& o, grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<long>(o.timeout * 1000)));
    if (!o.route.empty()) ctx.AddMetadata("jmp-route", o.route);
    if (!o.token.empty()) ctx.AddMetadata("authorization", "Bearer " + o.token);
}

bool wait_connected(const std::shared_ptr<grpc::Channel>& ch) {
    return ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

std::string json_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) continue;
        out += c;
    }
    return out;
}

// ---- oneway / echo: one stream, a writer thread and this thread reading ----
int run_bulk(const Options& o) {
    bool echo = o.mode == "echo";
    auto ch = make_channel(o, 0);
    if (!wait_connected(ch)) {
        printf("{\"ok\":false,\"error\":\"could not connect\"}\n");
        return 1;
    }
    // The stream is opened untyped (grpc::ByteBuffer messages) so that the one request message,
    // serialized once, is written again and again by reference: the client copies no payload
    // bytes in user space and stays cheap next to the bridge. Responses are parsed as usual.
    grpc::internal::RpcMethod method("/jumpstarter.v1.RouterService/Stream",
                                     grpc::internal::RpcMethod::BIDI_STREAMING);
    grpc::ClientContext ctx;
    set_context(o, ctx);
    std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
        grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(ch.get(), method,
                                                                                                &ctx));
    RssSampler sampler(o.pid, o.rss_sample_ms);

    auto to_buffer = [](const StreamRequest& m) {
        std::string wire = m.SerializeAsString();
        grpc::Slice slice(wire);
        return grpc::ByteBuffer(&slice, 1);
    };
    StreamRequest proto;
    proto.set_payload(g_pattern.data(), o.size);
    const grpc::ByteBuffer data = to_buffer(proto);
    std::atomic<uint64_t> sent{0};
    std::atomic<bool> write_failed{false};
    double cpu0 = proc_cpu(o.pid), self0 = self_cpu();
    auto t0 = Clock::now();
    auto deadline = t0 + std::chrono::milliseconds(static_cast<long>(o.seconds * 1000));
    std::thread writer([&] {
        uint64_t n = 0;
        while (o.bytes ? n < o.bytes : Clock::now() < deadline) {
            // With --batch B > 1, B-1 of every B writes carry gRPC's buffer hint (the transport
            // may hold them until the next unhinted write), so small frames are not limited by the
            // client's per-message cost.
            grpc::WriteOptions wo;
            if (o.batch > 1 && (n / o.size) % o.batch != uint64_t(o.batch - 1)) wo.set_buffer_hint();
            if (!stream->Write(data, wo)) {
                write_failed = true;
                break;
            }
            n += o.size;
            sent.store(n, std::memory_order_relaxed);
        }
        StreamRequest goaway;
        goaway.set_frame_type(jumpstarter::v1::FRAME_TYPE_GOAWAY);
        stream->Write(to_buffer(goaway));
        stream->WritesDone();
    });

    StreamResponse resp;
    grpc::ByteBuffer in;
    uint64_t received = 0, frames = 0, mismatches = 0, max_payload = 0;
    bool goaway = false;
    Clock::time_point t_end{};
    double cpu1 = -1, self1 = -1;
    while (stream->Read(&in)) {
        if (!grpc::SerializationTraits<StreamResponse>::Deserialize(&in, &resp).ok()) {
            mismatches++;
            continue;
        }
        if (resp.frame_type() == jumpstarter::v1::FRAME_TYPE_GOAWAY) {
            if (!goaway) {
                t_end = Clock::now();
                cpu1 = proc_cpu(o.pid);
                self1 = self_cpu();
            }
            goaway = true;
            continue;
        }
        const std::string& p = resp.payload();
        if (echo && !matches_pattern(p.data(), p.size(), received)) mismatches++;
        received += p.size();
        max_payload = std::max<uint64_t>(max_payload, p.size());
        frames++;
    }
    if (!goaway) {
        t_end = Clock::now();
        cpu1 = proc_cpu(o.pid);
        self1 = self_cpu();
    }
    writer.join();
    grpc::Status st = stream->Finish();
    double el = secs(t0, t_end);
    uint64_t s = sent.load();
    // Payload bytes that crossed the bridge (both directions for echo).
    uint64_t moved = s + received;
    bool ok = !write_failed && (echo ? (received == s && mismatches == 0) : true) && goaway;
    printf("{\"ok\":%s,\"mode\":\"%s\",\"size\":%zu,\"sent\":%llu,\"received\":%llu,\"frames_in\":%llu,"
           "\"max_payload_in\":%llu,\"mismatches\":%llu,\"goaway\":%s,\"write_failed\":%s,\"seconds\":%.6f,"
           "\"bytes_per_s\":%.1f,\"bridge_cpu_s\":%.3f,\"client_cpu_s\":%.3f,\"moved\":%llu,"
           "\"rss_max_kib\":%ld,\"rss_end_kib\":%ld,\"status\":%d,\"message\":\"%s\"}\n",
           ok ? "true" : "false", o.mode.c_str(), o.size, (unsigned long long)s, (unsigned long long)received,
           (unsigned long long)frames, (unsigned long long)max_payload, (unsigned long long)mismatches,
           goaway ? "true" : "false", write_failed ? "true" : "false", el, (echo ? received : s) / el,
           cpu1 - cpu0, self1 - self0, (unsigned long long)moved, sampler.max_kib.load(), proc_rss_kib(o.pid),
           int(st.error_code()), json_escape(st.error_message()).c_str());
    return ok ? 0 : 1;
}

// ---- latency: 1-byte round trips, one at a time ----
int run_latency(const Options& o) {
    auto ch = make_channel(o, 0);
    if (!wait_connected(ch)) {
        printf("{\"ok\":false,\"error\":\"could not connect\"}\n");
        return 1;
    }
    auto stub = RouterService::NewStub(ch);
    grpc::ClientContext ctx;
    set_context(o, ctx);
    auto stream = stub->Stream(&ctx);
    StreamRequest req;
    StreamResponse resp;
    std::vector<double> us;
    us.reserve(o.iters);
    bool ok = true;
    int bad = 0;
    double cpu0 = 0, self0 = 0;
    Clock::time_point t0 = Clock::now();
    for (int i = 0; i < o.warmup + o.iters && ok; i++) {
        if (i == o.warmup) {
            cpu0 = proc_cpu(o.pid);
            self0 = self_cpu();
            t0 = Clock::now();
        }
        char b = g_pattern[i % kPeriod];
        req.set_payload(&b, 1);
        auto a = Clock::now();
        if (!stream->Write(req)) {
            ok = false;
            break;
        }
        for (;;) {
            if (!stream->Read(&resp)) {
                ok = false;
                break;
            }
            if (resp.frame_type() == jumpstarter::v1::FRAME_TYPE_DATA && !resp.payload().empty()) break;
        }
        if (!ok) break;
        auto z = Clock::now();
        if (resp.payload().size() != 1 || resp.payload()[0] != b) bad++;
        if (i >= o.warmup) us.push_back(secs(a, z) * 1e6);
    }
    double total = secs(t0, Clock::now());
    double cpu = proc_cpu(o.pid) - cpu0, self = self_cpu() - self0;
    StreamRequest goaway;
    goaway.set_frame_type(jumpstarter::v1::FRAME_TYPE_GOAWAY);
    stream->Write(goaway);
    stream->WritesDone();
    while (stream->Read(&resp)) {
    }
    grpc::Status st = stream->Finish();
    std::sort(us.begin(), us.end());
    auto pct = [&](double q) {
        if (us.empty()) return -1.0;
        size_t i = std::min(us.size() - 1, size_t(q * (us.size() - 1) + 0.5));
        return us[i];
    };
    double sum = 0;
    for (double v : us) sum += v;
    ok = ok && bad == 0 && int(us.size()) == o.iters;
    printf("{\"ok\":%s,\"mode\":\"latency\",\"iters\":%zu,\"bad\":%d,\"p50_us\":%.1f,\"p90_us\":%.1f,"
           "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f,\"seconds\":%.3f,"
           "\"bridge_cpu_s\":%.3f,\"client_cpu_s\":%.3f,\"status\":%d,\"message\":\"%s\"}\n",
           ok ? "true" : "false", us.size(), bad, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
           us.empty() ? -1 : us.back(), us.empty() ? -1 : sum / us.size(), total, cpu, self,
           int(st.error_code()), json_escape(st.error_message()).c_str());
    return ok ? 0 : 1;
}

// ---- streams: N concurrent streams, each echoes a small message, then they idle ----
struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    int echoed = 0, done = 0, bad = 0;
    // Progress of the close handshake, to tell where streams stop if they do.
    std::atomic<int> goaway_written{0}, writes_done{0}, goaway_received{0}, read_ended{0};
    std::map<int, int> statuses;
};

class Echoer : public grpc::ClientBidiReactor<StreamRequest, StreamResponse> {
public:
    Echoer(Shared& sh, size_t size) : sh_(sh), size_(size) {
        req_.set_payload(g_pattern.data(), size);
        goaway_.set_frame_type(jumpstarter::v1::FRAME_TYPE_GOAWAY);
    }
    grpc::ClientContext ctx;
    void Start(RouterService::Stub* stub) {
        stub->async()->Stream(&ctx, this);
        StartWrite(&req_);
        StartRead(&resp_);
        StartCall();
    }
    // Half-closes once the first write has completed.
    void Release() {
        std::lock_guard<std::mutex> l(mu_);
        release_ = true;
        if (first_write_done_ && !goaway_started_) {
            goaway_started_ = true;
            StartWrite(&goaway_);
        }
    }
    void OnWriteDone(bool ok) override {
        std::lock_guard<std::mutex> l(mu_);
        if (!first_write_done_) {
            first_write_done_ = true;
            if (!ok) return;
            if (release_ && !goaway_started_) {
                goaway_started_ = true;
                StartWrite(&goaway_);
            }
        } else if (ok) {
            sh_.goaway_written++;
            StartWritesDone();
        }
    }
    void OnWritesDoneDone(bool ok) override {
        if (ok) sh_.writes_done++;
    }
    void OnReadDone(bool ok) override {
        if (!ok) {
            sh_.read_ended++;
            return;
        }
        if (resp_.frame_type() == jumpstarter::v1::FRAME_TYPE_GOAWAY) sh_.goaway_received++;
        if (resp_.frame_type() == jumpstarter::v1::FRAME_TYPE_DATA) {
            const std::string& p = resp_.payload();
            bool good = got_ + p.size() <= size_ && matches_pattern(p.data(), p.size(), got_);
            got_ += p.size();
            if (!good || (got_ == size_ && !echoed_)) {
                std::lock_guard<std::mutex> l(sh_.mu);
                if (!good) sh_.bad++;
                if (got_ == size_ && !echoed_) {
                    echoed_ = true;
                    sh_.echoed++;
                    sh_.cv.notify_all();
                }
            }
        }
        StartRead(&resp_);
    }
    void OnDone(const grpc::Status& s) override {
        std::lock_guard<std::mutex> l(sh_.mu);
        sh_.done++;
        sh_.statuses[int(s.error_code())]++;
        sh_.cv.notify_all();
    }

private:
    Shared& sh_;
    size_t size_;
    size_t got_ = 0;
    bool echoed_ = false;
    std::mutex mu_;
    bool release_ = false, first_write_done_ = false, goaway_started_ = false;
    StreamRequest req_, goaway_;
    StreamResponse resp_;
};

int run_streams(const Options& o) {
    std::vector<std::shared_ptr<grpc::Channel>> chans;
    std::vector<std::unique_ptr<RouterService::Stub>> stubs;
    for (int i = 0; i < o.channels; i++) {
        chans.push_back(make_channel(o, i));
        if (!wait_connected(chans.back())) {
            printf("{\"ok\":false,\"error\":\"could not connect\"}\n");
            return 1;
        }
        stubs.push_back(RouterService::NewStub(chans.back()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    long rss_before = proc_rss_kib(o.pid);
    Shared sh;
    std::vector<std::unique_ptr<Echoer>> es;
    size_t msg = std::min<size_t>(o.size, 4096);
    for (int i = 0; i < o.count; i++) {
        es.push_back(std::make_unique<Echoer>(sh, msg));
        set_context(o, es.back()->ctx);
    }
    auto t0 = Clock::now();
    for (int i = 0; i < o.count; i++) es[i]->Start(stubs[i % o.channels].get());
    bool all_echoed;
    {
        std::unique_lock<std::mutex> l(sh.mu);
        all_echoed = sh.cv.wait_for(l, std::chrono::milliseconds(static_cast<long>(o.timeout * 1000)),
                                    [&] { return sh.echoed + sh.done >= o.count; }) &&
                     sh.echoed == o.count;
    }
    double echo_s = secs(t0, Clock::now());
    int echoed = 0;
    {
        std::lock_guard<std::mutex> l(sh.mu);
        echoed = sh.echoed;
    }
    // All streams open and idle: let the bridge settle, then read its RSS.
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    long rss_open = proc_rss_kib(o.pid);
    auto t1 = Clock::now();
    for (auto& e : es) e->Release();
    bool all_done;
    // If closing takes over 5 s, note how far the streams got at that moment.
    std::string stall = "null";
    {
        std::unique_lock<std::mutex> l(sh.mu);
        all_done = sh.cv.wait_for(l, std::chrono::seconds(5), [&] { return sh.done == o.count; });
        if (!all_done) {
            stall = "{\"done\":" + std::to_string(sh.done) +
                    ",\"goaway_written\":" + std::to_string(sh.goaway_written.load()) +
                    ",\"writes_done\":" + std::to_string(sh.writes_done.load()) +
                    ",\"goaway_received\":" + std::to_string(sh.goaway_received.load()) +
                    ",\"read_ended\":" + std::to_string(sh.read_ended.load()) + "}";
            all_done = sh.cv.wait_for(l, std::chrono::milliseconds(static_cast<long>(o.timeout * 1000)),
                                      [&] { return sh.done == o.count; });
        }
    }
    double close_s = secs(t1, Clock::now());
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
    long rss_closed = proc_rss_kib(o.pid);
    std::string st;
    {
        std::lock_guard<std::mutex> l(sh.mu);
        for (auto& kv : sh.statuses) {
            if (!st.empty()) st += ",";
            st += "\"" + std::to_string(kv.first) + "\":" + std::to_string(kv.second);
        }
    }
    bool ok = all_echoed && all_done && sh.bad == 0;
    printf("{\"ok\":%s,\"mode\":\"streams\",\"count\":%d,\"channels\":%d,\"message_size\":%zu,\"echoed\":%d,"
           "\"bad\":%d,\"echo_all_s\":%.4f,\"close_all_s\":%.4f,\"rss_before_kib\":%ld,\"rss_open_kib\":%ld,"
           "\"rss_closed_kib\":%ld,\"per_stream_kib\":%.2f,\"all_done\":%s,\"statuses\":{%s},"
           "\"stalled_5s\":%s,\"close\":{\"goaway_written\":%d,\"writes_done\":%d,\"goaway_received\":%d,\"read_ended\":%d}}\n",
           ok ? "true" : "false", o.count, o.channels, msg, echoed, sh.bad, echo_s, close_s, rss_before, rss_open,
           rss_closed, double(rss_open - rss_before) / o.count, all_done ? "true" : "false", st.c_str(),
           stall.c_str(), sh.goaway_written.load(), sh.writes_done.load(), sh.goaway_received.load(), sh.read_ended.load());
    fflush(stdout);
    if (!all_done) _exit(1);  // reactors still referenced by gRPC: do not destroy them
    return ok ? 0 : 1;
}

// ---- sink: a grpc C++ server for the same method, no bridge and no Unix socket behind it ----
// It discards, or echoes when the call's jmp-route metadata is "echo"; on GOAWAY (or the end of
// the client's messages) it answers GOAWAY and OK. Measures what the client and gRPC alone reach.
class SinkService final : public RouterService::Service {
    grpc::Status Stream(grpc::ServerContext* ctx,
                        grpc::ServerReaderWriter<StreamResponse, StreamRequest>* s) override {
        auto route = ctx->client_metadata().find("jmp-route");
        bool echo = route != ctx->client_metadata().end() && route->second == "echo";
        StreamRequest in;
        StreamResponse out;
        while (s->Read(&in)) {
            if (in.frame_type() == jumpstarter::v1::FRAME_TYPE_GOAWAY) break;
            if (echo && !in.payload().empty()) {
                out.set_payload(in.payload());
                if (!s->Write(out)) break;
            }
        }
        StreamResponse goaway;
        goaway.set_frame_type(jumpstarter::v1::FRAME_TYPE_GOAWAY);
        s->Write(goaway);
        return grpc::Status::OK;
    }
};

int run_sink(const Options& o) {
    SinkService service;
    grpc::ServerBuilder builder;
    int port = 0;
    std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
    if (!o.tls_cert.empty()) {
        grpc::SslServerCredentialsOptions tls;
        tls.pem_key_cert_pairs.push_back({read_file(o.tls_key), read_file(o.tls_cert)});
        credentials = grpc::SslServerCredentials(tls);
    }
    builder.AddListeningPort(o.addr, credentials, &port);
    builder.SetMaxReceiveMessageSize(-1);
    builder.RegisterService(&service);
    auto server = builder.BuildAndStart();
    if (!server) return 1;
    printf("listening address=tcp:127.0.0.1:%d\nready\n", port);
    fflush(stdout);
    server->Wait();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                fprintf(stderr, "missing value for %s\n", a.c_str());
                exit(2);
            }
            return argv[++i];
        };
        if (a == "--addr") o.addr = next();
        else if (a == "--mode") o.mode = next();
        else if (a == "--route") o.route = next();
        else if (a == "--token") o.token = next();
        else if (a == "--size") o.size = std::stoul(next());
        else if (a == "--seconds") o.seconds = std::stod(next());
        else if (a == "--bytes") o.bytes = std::stoull(next());
        else if (a == "--iters") o.iters = std::stoi(next());
        else if (a == "--warmup") o.warmup = std::stoi(next());
        else if (a == "--count") o.count = std::stoi(next());
        else if (a == "--batch") o.batch = std::max(1, std::stoi(next()));
        else if (a == "--channels") o.channels = std::max(1, std::stoi(next()));
        else if (a == "--pid") o.pid = std::stoi(next());
        else if (a == "--rss-sample-ms") o.rss_sample_ms = std::stoi(next());
        else if (a == "--timeout") o.timeout = std::stod(next());
        else if (a == "--tls-ca") o.tls_ca = next();
        else if (a == "--tls-cert") o.tls_cert = next();
        else if (a == "--tls-key") o.tls_key = next();
        else {
            fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if ((o.mode == "oneway" || o.mode == "echo") && (o.size == 0 || o.size % kPeriod != 0)) {
        fprintf(stderr, "--size must be a positive multiple of %zu\n", kPeriod);
        return 2;
    }
    make_pattern(std::max<size_t>(o.size, 65536));
    if (o.mode == "oneway" || o.mode == "echo") return run_bulk(o);
    if (o.mode == "latency") return run_latency(o);
    if (o.mode == "streams") return run_streams(o);
    if (o.mode == "sink") return run_sink(o);
    fprintf(stderr, "unknown mode %s\n", o.mode.c_str());
    return 2;
}
