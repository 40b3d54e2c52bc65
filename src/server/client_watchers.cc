#include "server/client_watchers.h"

namespace drawbridge::server {

void ClientWatchers::Add(const std::string& identity, const std::string& instance,
                         WatchSink* sink) {
  absl::MutexLock lock(&mu_);
  WatchSink*& slot = sinks_[{identity, instance}];
  if (slot != nullptr && slot != sink) {
    // A reconnect whose old stream the server has not yet seen die.
    slot->End(grpc::Status(grpc::StatusCode::ABORTED, "replaced by a newer watch stream"));
  }
  slot = sink;
}

void ClientWatchers::Remove(const std::string& identity, const std::string& instance,
                            WatchSink* sink) {
  absl::MutexLock lock(&mu_);
  auto it = sinks_.find({identity, instance});
  if (it != sinks_.end() && it->second == sink) {
    sinks_.erase(it);
  }
}

bool ClientWatchers::NotifyEnded(const std::string& identity, const std::string& instance,
                                 const std::string& conn_id, const std::string& reason) {
  v1::WatchEvent event;
  event.mutable_ended()->set_conn_id(conn_id);
  event.mutable_ended()->set_reason(reason);
  absl::MutexLock lock(&mu_);
  auto it = sinks_.find({identity, instance});
  return it != sinks_.end() && it->second->Send(event);
}

int ClientWatchers::EndIdentity(const std::string& identity, const std::string& key_id,
                                const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  int ended = 0;
  for (auto& [key, sink] : sinks_) {
    if (key.first == identity && (key_id.empty() || sink->key_id() == key_id)) {
      sink->End(status);
      ++ended;
    }
  }
  return ended;
}

void ClientWatchers::SendAll(const v1::WatchEvent& event) {
  absl::MutexLock lock(&mu_);
  for (auto& [key, sink] : sinks_) {
    sink->Send(event);
  }
}

void ClientWatchers::EndAll(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  for (auto& [key, sink] : sinks_) {
    sink->End(status);
  }
}

size_t ClientWatchers::size() const {
  absl::MutexLock lock(&mu_);
  return sinks_.size();
}

}  // namespace drawbridge::server
