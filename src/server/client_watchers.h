#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "drawbridge/v1/tunnel.pb.h"

namespace drawbridge::server {

// One client process's Tunnel.Watch stream, as the registry sees it.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Queues `event`; never blocks. False once the stream is ending.
  virtual bool Send(const v1::WatchEvent& event) = 0;
  // Ends the stream with `status` once what is queued has been written.
  virtual void End(const grpc::Status& status) = 0;
  virtual const std::string& key_id() const = 0;
};

// The live Watch streams, by client identity and instance id: how the server
// reaches a client process to reset one of its tunnels at once (TunnelEnded),
// whether or not a read is outstanding on that tunnel's Dial stream.
//
// Thread-safe. A sink registers itself when its stream starts and unregisters
// in its OnDone, before it is deleted; every call into a sink happens under mu_,
// so a sink never runs after it unregistered.
class ClientWatchers {
 public:
  // Registers `sink`; an older sink of the same instance is ended (replaced).
  void Add(const std::string& identity, const std::string& instance, WatchSink* sink);
  void Remove(const std::string& identity, const std::string& instance, WatchSink* sink);
  // Tells the instance that tunnel `conn_id` ended with an error. False if the
  // instance has no watch stream (its client then learns of it on its next read).
  bool NotifyEnded(const std::string& identity, const std::string& instance,
                   const std::string& conn_id, const std::string& reason);
  // Ends the watch streams of `identity` (only those authenticated with `key_id`
  // when it is not empty); returns how many.
  int EndIdentity(const std::string& identity, const std::string& key_id,
                  const grpc::Status& status);
  // Sends `event` on every watch stream.
  void SendAll(const v1::WatchEvent& event);
  // Ends every watch stream (server shutdown).
  void EndAll(const grpc::Status& status);
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, WatchSink*> sinks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace drawbridge::server
