// A plain client connection to the master that writes markers into its
// replication stream: PUBLISH <channel> <nonce>. PUBLISH is force-replicated
// to every replica (2.4, 2.6 and later), so the same marker shows up on every
// link of that master, and tells where two links' streams meet.
//
//   resolving ─▶ connecting ─▶ [AUTH] ─▶ ready ─▶ publish() ... ─▶ closed
//
// Replies are read with hiredis's reader. An error reply (PUBLISH renamed
// away, a read-only ACL user, a wrong password) or any socket error ends the
// client: on_failed(why) is called once, and nothing after it.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "proxy/config.h"

struct redisReader;

namespace psync::proxy {

class MarkerClient {
 public:
  struct Callbacks {
    std::function<void()> on_ready;                       // connected (and authenticated)
    std::function<void(const std::string&)> on_failed;    // why, once
  };

  MarkerClient(uv_loop_t* loop, HostPort address, std::string user, std::string password,
               std::string channel, Callbacks callbacks);
  ~MarkerClient();
  MarkerClient(const MarkerClient&) = delete;
  MarkerClient& operator=(const MarkerClient&) = delete;

  void start();
  bool ready() const { return state_ == State::kReady; }
  // Sends PUBLISH <channel> <nonce>; only when ready().
  void publish(const std::string& nonce);
  uint64_t published() const { return published_; }
  // Closes the connection without a callback (the client is done with).
  void close();

 private:
  enum class State { kIdle, kResolving, kConnecting, kAuth, kReady, kFailed };
  struct Anchor;
  struct Resolve;
  struct Connect;

  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void send(std::string bytes);
  void fail(const std::string& why);
  void on_reply(bool is_error, const std::string& text);

  uv_loop_t* loop_;
  HostPort address_;
  std::string user_;
  std::string password_;
  std::string channel_;
  Callbacks callbacks_;
  State state_ = State::kIdle;
  std::shared_ptr<Anchor> anchor_;
  uv_tcp_t* tcp_ = nullptr;  // owned until its close callback
  redisReader* reader_ = nullptr;
  uint64_t published_ = 0;
  uint64_t replies_due_ = 0;
};

}  // namespace psync::proxy
