#include "lane/dialer.h"

#include <sys/resource.h>

#include <algorithm>

#include "common/log.h"
#include "common/strings.h"

namespace drawbridge::lane {
namespace {

constexpr auto kReprobeAfter = std::chrono::seconds(5);
constexpr char kProbeMethod[] = "Probe";

// Sends the hello alone and waits for the server's status: OK means the data
// port is reachable, speaks lanes and accepts our certificate.
class ProbeReactor final : public grpc::ClientBidiReactor<v1::Frame, v1::Frame> {
 public:
  explicit ProbeReactor(std::function<void(const grpc::Status&)> done) : done_(std::move(done)) {}
  void Start(LaneCall* call) {
    call->Bind(this);
    StartWrite(&out_);
    StartRead(&in_);
    StartCall();
  }
  void OnDone(const grpc::Status& status) override {
    done_(status);
    delete this;
  }

 private:
  std::function<void(const grpc::Status&)> done_;
  v1::Frame out_;
  v1::Frame in_;
};

// HOST of HOST:PORT or [V6]:PORT.
std::string HostOf(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    return close == std::string::npos ? address : address.substr(1, close - 1);
  }
  auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

int LaneDialer::LaneBudget() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return 1024;
  }
  return static_cast<int>(std::clamp<rlim_t>(limit.rlim_cur / 16, 16, 1024));
}

LaneDialer::LaneDialer(asio::io_context& io, const enroll::CertManager* certs,
                       std::string instance_id, const std::string& address)
    : io_(io), certs_(certs), instance_id_(std::move(instance_id)), maintenance_timer_(io) {
  if (!address.empty()) {
    host_ = HostOf(address);
  }
  server_name_ = certs_->credential().server_name.empty()
                     ? HostOf(certs_->credential().server_address)
                     : certs_->credential().server_name;
  Maintain();
}

std::string LaneDialer::Host() const {
  return host_.empty() ? HostOf(certs_->CurrentAddress()) : host_;
}

void LaneDialer::Maintain() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    const auto now = std::chrono::steady_clock::now();
    std::deque<PooledLane> keep;
    for (auto& pooled : pool_) {
      const bool surplus =
          static_cast<int>(keep.size()) >= kPoolSize && now - pooled.opened > kSurplusIdle;
      if (surplus || now - pooled.opened > kPoolMaxAge) {
        pooled.lane->Shutdown(TlsLane::Close::kGraceful, std::chrono::milliseconds(0));
      } else {
        keep.push_back(std::move(pooled));
      }
    }
    pool_ = std::move(keep);
    RefillLocked();
  }
  maintenance_timer_.expires_after(std::chrono::seconds(5));
  maintenance_timer_.async_wait([this](const asio::error_code& ec) {
    if (!ec) {
      Maintain();
    }
  });
}

void LaneDialer::Shutdown(std::chrono::milliseconds wait) {
  std::shared_ptr<LaneCall> probe;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    pool_.clear();
    maintenance_timer_.cancel();
    if (retry_timer_) {
      retry_timer_->cancel();
    }
    probe = std::move(probe_call_);
  }
  if (probe) {
    probe->Cancel();
  }
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return probes_in_flight_ == 0; };
  mu_.AwaitWithTimeout(absl::Condition(&idle), absl::FromChrono(wait));
}

LaneDialer::~LaneDialer() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  pool_.clear();
  // The error_code overloads: a destructor must not throw.
  asio::error_code ignored;
  maintenance_timer_.cancel(ignored);
  if (retry_timer_) {
    retry_timer_->cancel(ignored);
  }
}

bool LaneDialer::usable() const {
  absl::MutexLock lock(&mu_);
  return usable_;
}

size_t LaneDialer::ready() const {
  absl::MutexLock lock(&mu_);
  return usable_ ? pool_.size() : 0;
}

void LaneDialer::SetPort(int port) {
  uint64_t attempt;
  {
    absl::MutexLock lock(&mu_);
    if (port == port_ || stopping_) {
      return;
    }
    port_ = port;
    usable_ = false;
    attempt = ++probe_attempt_;
    DropPoolLocked();
  }
  if (port > 0) {
    Probe(port, attempt);
  }
}

std::optional<LaneTarget> LaneDialer::TargetLocked() {
  auto pair = certs_->CurrentKeyPair();
  if (!ssl_ || pair.generation != ssl_generation_) {
    auto ctx = MakeClientContext(pair.chain_pem, pair.key_pem, certs_->credential().ca_bundle_pem);
    if (!ctx.ok()) {
      common::LogWarn("lane.tls_context_failed", {{"error", std::string(ctx.status().message())}});
      return std::nullopt;
    }
    ssl_ = *ctx;
    ssl_generation_ = pair.generation;
  }
  LaneTarget target;
  target.host = Host();
  target.port = static_cast<uint16_t>(port_);
  target.server_name = server_name_;
  target.ssl = ssl_;
  target.proxy = certs_->ProxyFor(target.host, static_cast<uint16_t>(port_));
  return target;
}

std::shared_ptr<LaneCall> LaneDialer::NewCall(const std::string& method) {
  absl::MutexLock lock(&mu_);
  if (!usable_ || stopping_) {
    return nullptr;
  }
  const uint64_t generation = certs_->Current().generation;
  const auto now = std::chrono::steady_clock::now();
  std::shared_ptr<LaneCall> call;
  while (!pool_.empty() && call == nullptr) {
    PooledLane pooled = std::move(pool_.front());
    pool_.pop_front();
    if (pooled.generation != generation || now - pooled.opened > kPoolMaxAge ||
        !pooled.lane->LooksAlive()) {
      pooled.lane->Shutdown(TlsLane::Close::kGraceful, std::chrono::milliseconds(0));
      continue;
    }
    const uint64_t attempt = probe_attempt_;
    ++in_use_;
    call = LaneCall::CreateOn(
        std::move(pooled.lane), method, instance_id_,
        [this, attempt, generation = pooled.generation](std::shared_ptr<TlsLane> lane) {
          ReturnLane(std::move(lane), attempt, generation);
        });
  }
  RefillLocked();
  return call;
}

void LaneDialer::RefillLocked() {
  if (!usable_ || stopping_) {
    return;
  }
  while (static_cast<int>(pool_.size()) + connecting_ < kPoolSize &&
         static_cast<int>(pool_.size()) + connecting_ + in_use_ < budget_) {
    auto target = TargetLocked();
    if (!target) {
      return;
    }
    ++connecting_;
    const uint64_t attempt = probe_attempt_;
    const uint64_t generation = ssl_generation_;
    ConnectLane(asio::make_strand(io_), *target,
                [this, attempt, generation](absl::StatusOr<std::shared_ptr<TlsLane>> lane) {
                  OnPooledLaneConnected(attempt, generation, std::move(lane));
                });
  }
}

void LaneDialer::OnPooledLaneConnected(uint64_t attempt, uint64_t generation,
                                       absl::StatusOr<std::shared_ptr<TlsLane>> lane) {
  int port = 0;
  {
    absl::MutexLock lock(&mu_);
    --connecting_;
    if (lane.ok() && !stopping_ && usable_ && attempt == probe_attempt_) {
      pool_.push_back({std::move(*lane), generation, std::chrono::steady_clock::now()});
      return;
    }
    if (lane.ok()) {
      (*lane)->Shutdown(TlsLane::Close::kGraceful, std::chrono::milliseconds(0));
      return;
    }
    port = attempt == probe_attempt_ ? port_ : 0;
  }
  common::LogWarn("lane.connect_failed", {{"error", std::string(lane.status().message())}});
  if (port > 0) {
    OnLaneFailed(port);
  }
}

void LaneDialer::Probe(int port, uint64_t attempt) {
  std::shared_ptr<LaneCall> call;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || attempt != probe_attempt_) {
      return;
    }
    auto target = TargetLocked();
    if (!target) {
      return;
    }
    call = LaneCall::Create(asio::make_strand(io_), std::move(*target), kProbeMethod, instance_id_);
    probe_call_ = call;
    ++probes_in_flight_;
  }
  auto* reactor = new ProbeReactor(
      [this, port, attempt](const grpc::Status& status) { OnProbeDone(port, attempt, status); });
  reactor->Start(call.get());
}

void LaneDialer::OnProbeDone(int port, uint64_t attempt, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  --probes_in_flight_;
  if (stopping_ || attempt != probe_attempt_) {
    return;
  }
  if (status.ok()) {
    if (!usable_) {
      common::LogInfo("lane.ready", {{"address", common::StrCat(Host(), ":", port)}});
    }
    usable_ = true;
    RefillLocked();
    return;
  }
  common::LogWarn("lane.probe_failed", {{"address", common::StrCat(Host(), ":", port)},
                                        {"error", status.error_message()},
                                        {"fallback", "gRPC streams"}});
  usable_ = false;
  retry_timer_ = std::make_shared<asio::steady_timer>(io_);
  retry_timer_->expires_after(kReprobeAfter);
  retry_timer_->async_wait([this, port, attempt](const asio::error_code& ec) {
    if (!ec) {
      Probe(port, attempt);
    }
  });
}

void LaneDialer::OnLaneFailed(int port) {
  uint64_t attempt;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || port != port_ || !usable_) {
      return;
    }
    usable_ = false;
    attempt = ++probe_attempt_;
    DropPoolLocked();
  }
  Probe(port, attempt);
}

void LaneDialer::ReturnLane(std::shared_ptr<TlsLane> lane, uint64_t attempt, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  --in_use_;
  if (lane == nullptr) {
    return;
  }
  if (stopping_ || !usable_ || attempt != probe_attempt_ ||
      generation != certs_->Current().generation || static_cast<int>(pool_.size()) >= kMaxPooled) {
    lane->Shutdown(TlsLane::Close::kGraceful, std::chrono::milliseconds(0));
    return;
  }
  pool_.push_back({std::move(lane), generation, std::chrono::steady_clock::now()});
}

void LaneDialer::DropPoolLocked() {
  for (auto& pooled : pool_) {
    pooled.lane->Shutdown(TlsLane::Close::kGraceful, std::chrono::milliseconds(0));
  }
  pool_.clear();
}

}  // namespace drawbridge::lane
