// The data plane's ceilings on this machine (issue 12): how fast the same bytes
// go through
//   tls   one TLS 1.3 connection over loopback TCP (OpenSSL, one writer thread,
//         one reader thread): what any mTLS hop can do at most;
//   grpc  one gRPC bidi stream over TLS 1.3 carrying our Tunnel.Dial frames, with
//         gRPC's default HTTP/2 settings (or the ones given): what one gRPC hop
//         can do at most;
//   relay two such hops with a relay between them that forwards each frame as
//         the broker does (one read and one write in flight): what two gRPC
//         hops can do at most, without sockets at either end;
// in one process (every thread shares the same 2 cores, as the tunnel's three
// processes do). Compare them
// with BM_SocketBridgeEcho / BM_TunnelEcho (micro_bench) and with `make bench`.
//
//   ceiling tls  [--mib N] [--chunk BYTES] [--cipher TLS_AES_128_GCM_SHA256]
//   ceiling grpc|relay [--mib N] [--chunk BYTES] [--cipher ...] [--max-frame BYTES]
//                [--lookahead BYTES] [--bdp 0|1]
//
// Prints one line: mode, settings, Gbit/s, and CPU seconds per GiB of the whole
// process (user + system, both ends: for a hop, sender plus receiver).
#include <grpcpp/grpcpp.h>
#include <openssl/conf.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>

#include <asio.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "drawbridge/v1/tunnel.grpc.pb.h"

namespace {

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "ceiling: %s\n", why.c_str());
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

struct Flags {
  std::string mode;
  uint64_t mib = 2048;
  size_t chunk = 64 * 1024;
  std::string cipher = "TLS_AES_128_GCM_SHA256";
  int max_frame = 0;  // 0: gRPC's default
  int lookahead = 0;  // 0: gRPC's default
  int bdp = -1;       // -1: gRPC's default
};

Flags ParseFlags(int argc, char** argv) {
  if (argc < 2) {
    Die("usage: ceiling tls|grpc|relay [--mib N] [--chunk BYTES] [--cipher NAME] [--max-frame B] "
        "[--lookahead B] [--bdp 0|1]");
  }
  Flags f;
  f.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--mib") {
      f.mib = std::stoull(v);
    } else if (k == "--chunk") {
      f.chunk = std::stoul(v);
    } else if (k == "--cipher") {
      f.cipher = v;
    } else if (k == "--max-frame") {
      f.max_frame = std::stoi(v);
    } else if (k == "--lookahead") {
      f.lookahead = std::stoi(v);
    } else if (k == "--bdp") {
      f.bdp = std::stoi(v);
    } else {
      Die("unknown flag " + k);
    }
  }
  if ((f.mode != "tls" && f.mode != "grpc" && f.mode != "relay") || f.chunk == 0 || f.mib == 0) {
    Die("bad arguments");
  }
  return f;
}

// A throwaway P-256 key and a self-signed certificate for "ceiling.test".
struct Identity {
  std::string key_pem;
  std::string cert_pem;
};

Identity MakeIdentity() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr) {
    Die("key generation");
  }
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ceiling.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name,
                                            const_cast<char*>("DNS:ceiling.test"));
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  if (X509_sign(cert, key, EVP_sha256()) == 0) {
    Die("self-sign");
  }
  Identity id;
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  id.key_pem.assign(p, static_cast<size_t>(n));
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  n = BIO_get_mem_data(b, &p);
  id.cert_pem.assign(p, static_cast<size_t>(n));
  BIO_free(b);
  X509_free(cert);
  EVP_PKEY_free(key);
  return id;
}

double CpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct Result {
  double seconds;
  double cpu;
};

void Report(const Flags& f, const std::string& settings, const Result& r) {
  const double bytes = static_cast<double>(f.mib) * 1024 * 1024;
  std::printf("%-5s %-60s %7.2f Gbit/s  %5.2f CPU s/GiB\n", f.mode.c_str(), settings.c_str(),
              bytes * 8 / r.seconds / 1e9, r.cpu / (bytes / (1024.0 * 1024 * 1024)));
}

// --- one TLS 1.3 connection -----------------------------------------------

SSL_CTX* MakeTlsContext(bool server, const Identity& id, const std::string& cipher) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_set_ciphersuites(ctx, cipher.c_str()) != 1) {
    Die("cipher " + cipher);
  }
  if (server) {
    BIO* kb = BIO_new_mem_buf(id.key_pem.data(), static_cast<int>(id.key_pem.size()));
    EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
    BIO* cb = BIO_new_mem_buf(id.cert_pem.data(), static_cast<int>(id.cert_pem.size()));
    X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
    SSL_CTX_use_certificate(ctx, cert);
    SSL_CTX_use_PrivateKey(ctx, key);
    BIO_free(kb);
    BIO_free(cb);
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  return ctx;
}

Result RunTls(const Flags& f, const Identity& id) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = acceptor.local_endpoint().port();
  const uint64_t total = f.mib * 1024 * 1024;
  std::thread reader([&] {
    asio::ip::tcp::socket s = acceptor.accept();
    s.set_option(asio::ip::tcp::no_delay(true));
    SSL_CTX* ctx = MakeTlsContext(true, id, f.cipher);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, s.native_handle());
    if (SSL_accept(ssl) != 1) {
      Die("TLS accept");
    }
    std::string buf(256 * 1024, '\0');
    uint64_t got = 0;
    while (got < total) {
      int n = SSL_read(ssl, buf.data(), static_cast<int>(buf.size()));
      if (n <= 0) {
        Die("TLS read");
      }
      got += static_cast<uint64_t>(n);
    }
    SSL_write(ssl, "k", 1);  // the end, seen by the writer
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  });
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  s.set_option(asio::ip::tcp::no_delay(true));
  SSL_CTX* ctx = MakeTlsContext(false, id, f.cipher);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, s.native_handle());
  if (SSL_connect(ssl) != 1) {
    Die("TLS connect");
  }
  std::string chunk(f.chunk, 'x');
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t sent = 0; sent < total;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), total - sent));
    if (SSL_write(ssl, chunk.data(), static_cast<int>(n)) != static_cast<int>(n)) {
      Die("TLS write");
    }
    sent += n;
  }
  char ack = 0;
  SSL_read(ssl, &ack, 1);
  const auto t1 = std::chrono::steady_clock::now();
  const double cpu1 = CpuSeconds();
  reader.join();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return {std::chrono::duration<double>(t1 - t0).count(), cpu1 - cpu0};
}

// --- one gRPC bidi stream over TLS ----------------------------------------

// Tunnel.Dial that counts and drops data frames and finishes on the fin.
class SinkService final : public drawbridge::v1::Tunnel::CallbackService {
 public:
  grpc::ServerBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame>* Dial(
      grpc::CallbackServerContext*) override {
    return new Sink();
  }

 private:
  class Sink final : public grpc::ServerBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame> {
   public:
    Sink() { StartRead(&in_); }
    void OnReadDone(bool ok) override {
      if (!ok || in_.fin()) {
        Finish(grpc::Status::OK);
        return;
      }
      StartRead(&in_);
    }
    void OnDone() override { delete this; }

   private:
    drawbridge::v1::Frame in_;
  };
};

// Tunnel.Dial that forwards every frame on its own stream to `next` (the sink)
// and finishes when that stream has: the broker's splice, reduced to the gRPC
// part (one read and one write in flight per direction, no policy, no audit).
class RelayService final : public drawbridge::v1::Tunnel::CallbackService {
 public:
  explicit RelayService(drawbridge::v1::Tunnel::Stub* next) : next_(next) {}
  grpc::ServerBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame>* Dial(
      grpc::CallbackServerContext*) override {
    return new Relay(next_);
  }

 private:
  class Relay;
  // The outbound half: a client stream to the sink.
  class Out final : public grpc::ClientBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame> {
   public:
    explicit Out(Relay* relay) : relay_(relay) {}
    void OnWriteDone(bool ok) override;
    void OnDone(const grpc::Status& s) override;
    grpc::ClientContext ctx;

   private:
    Relay* relay_;
  };
  class Relay final : public grpc::ServerBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame> {
   public:
    explicit Relay(drawbridge::v1::Tunnel::Stub* next) : out_(this) {
      next->async()->Dial(&out_.ctx, &out_);
      out_.StartCall();
      StartRead(&frame_);
    }
    // Inbound frame arrived: pass it on; the next read starts when it is written.
    void OnReadDone(bool ok) override {
      if (!ok) {
        out_.StartWritesDone();
        return;
      }
      out_.StartWrite(&frame_);
    }
    void Written(bool ok) {
      if (!ok) {
        Die("relay write");
      }
      if (frame_.fin()) {
        out_.StartWritesDone();
        return;
      }
      StartRead(&frame_);
    }
    void OutDone(const grpc::Status& s) { Finish(s); }
    void OnDone() override { delete this; }

   private:
    Out out_;
    drawbridge::v1::Frame frame_;
  };
  drawbridge::v1::Tunnel::Stub* next_;
};

void RelayService::Out::OnWriteDone(bool ok) { relay_->Written(ok); }
void RelayService::Out::OnDone(const grpc::Status& s) { relay_->OutDone(s); }

// Writes `total` bytes in frames of `chunk`, one write in flight (as the bridge
// does), then a fin; Await returns when the server has finished the call.
class Source final : public grpc::ClientBidiReactor<drawbridge::v1::Frame, drawbridge::v1::Frame> {
 public:
  Source(drawbridge::v1::Tunnel::Stub* stub, uint64_t total, size_t chunk)
      : total_(total), chunk_(chunk) {
    stub->async()->Dial(&ctx_, this);
    frame_.set_data(std::string(chunk_, 'x'));
    Next();
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Die("gRPC write");
    }
    Next();
  }
  void OnDone(const grpc::Status& s) override {
    if (!s.ok()) {
      Die("gRPC stream: " + s.error_message());
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }
  void Await() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  void Next() {
    if (sent_ >= total_) {
      if (!fin_sent_) {
        fin_sent_ = true;
        fin_.set_fin(true);
        StartWrite(&fin_);
      } else {
        StartWritesDone();
      }
      return;
    }
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_, total_ - sent_));
    if (n != frame_.data().size()) {
      frame_.mutable_data()->resize(n);
    }
    sent_ += n;
    StartWrite(&frame_);
  }

  grpc::ClientContext ctx_;
  const uint64_t total_;
  const size_t chunk_;
  uint64_t sent_ = 0;
  bool fin_sent_ = false;
  drawbridge::v1::Frame frame_;
  drawbridge::v1::Frame fin_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

template <typename Builder>
void ApplyHttp2Settings(const Flags& f, Builder* set) {
  if (f.max_frame > 0) {
    (*set)(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, f.max_frame);
  }
  if (f.lookahead > 0) {
    (*set)(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, f.lookahead);
  }
  if (f.bdp >= 0) {
    (*set)(GRPC_ARG_HTTP2_BDP_PROBE, f.bdp);
  }
}

// gRPC has no setter for TLS 1.3 suites: like common/tls_policy.cc, install them
// (and TLS 1.3 only) through OpenSSL's system_default configuration, which every
// new SSL_CTX picks up.
void ApplyOpenSslPolicy(const std::string& ciphersuites) {
  const std::string text =
      "ceiling_conf = ceiling_init\n[ceiling_init]\nssl_conf = ceiling_ssl\n"
      "[ceiling_ssl]\nsystem_default = ceiling_tls\n[ceiling_tls]\n"
      "MinProtocol = TLSv1.3\nCiphersuites = " +
      ciphersuites + "\n";
  OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, nullptr);
  CONF* conf = NCONF_new(nullptr);
  BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
  long line = 0;
  if (NCONF_load_bio(conf, bio, &line) <= 0 || CONF_modules_load(conf, "ceiling_conf", 0) <= 0) {
    Die("OpenSSL policy");
  }
  BIO_free(bio);
  NCONF_free(conf);
}

std::unique_ptr<grpc::Server> StartServer(const Flags& f, const Identity& id,
                                          grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  grpc::SslServerCredentialsOptions sopts;
  sopts.pem_key_cert_pairs.push_back({id.key_pem, id.cert_pem});
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(sopts), port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(1 << 24);
  auto set = [&builder](const char* k, int v) { builder.AddChannelArgument(k, v); };
  ApplyHttp2Settings(f, &set);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    Die("gRPC server");
  }
  return server;
}

std::unique_ptr<drawbridge::v1::Tunnel::Stub> Connect(const Flags& f, const Identity& id,
                                                      int port) {
  grpc::SslCredentialsOptions copts;
  copts.pem_root_certs = id.cert_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("ceiling.test");
  args.SetMaxSendMessageSize(1 << 24);
  args.SetMaxReceiveMessageSize(1 << 24);
  auto set = [&args](const char* k, int v) { args.SetInt(k, v); };
  ApplyHttp2Settings(f, &set);
  return drawbridge::v1::Tunnel::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(port), grpc::SslCredentials(copts), args));
}

// grpc: source -> sink. relay: source -> relay -> sink (two TLS connections).
Result RunGrpc(const Flags& f, const Identity& id) {
  ApplyOpenSslPolicy(f.cipher);
  SinkService sink;
  int sink_port = 0;
  std::unique_ptr<grpc::Server> sink_server = StartServer(f, id, &sink, &sink_port);
  std::unique_ptr<drawbridge::v1::Tunnel::Stub> to_sink = Connect(f, id, sink_port);
  std::unique_ptr<RelayService> relay;
  std::unique_ptr<grpc::Server> relay_server;
  std::unique_ptr<drawbridge::v1::Tunnel::Stub> stub;
  if (f.mode == "relay") {
    relay = std::make_unique<RelayService>(to_sink.get());
    int relay_port = 0;
    relay_server = StartServer(f, id, relay.get(), &relay_port);
    stub = Connect(f, id, relay_port);
  } else {
    stub = std::move(to_sink);
  }
  {  // Connect and warm up outside the timed part.
    Source warm(stub.get(), 4 * 1024 * 1024, f.chunk);
    warm.Await();
  }
  const double cpu0 = CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  Source source(stub.get(), f.mib * 1024 * 1024, f.chunk);
  source.Await();
  const auto t1 = std::chrono::steady_clock::now();
  const double cpu1 = CpuSeconds();
  if (relay_server) {
    relay_server->Shutdown();
  }
  sink_server->Shutdown();
  return {std::chrono::duration<double>(t1 - t0).count(), cpu1 - cpu0};
}

}  // namespace

int main(int argc, char** argv) {
  Flags f = ParseFlags(argc, argv);
  Identity id = MakeIdentity();
  std::string settings = "chunk=" + std::to_string(f.chunk) + " " + f.cipher;
  if (f.mode == "tls") {
    Report(f, settings, RunTls(f, id));
    return 0;
  }
  settings += " max_frame=" + (f.max_frame > 0 ? std::to_string(f.max_frame) : "default") +
              " lookahead=" + (f.lookahead > 0 ? std::to_string(f.lookahead) : "default") +
              " bdp=" + (f.bdp >= 0 ? std::to_string(f.bdp) : "default");
  Report(f, settings, RunGrpc(f, id));
  return 0;
}
