// Free loopback TCP ports for servers the tests start.
#pragma once

namespace psync::test {

// A port that is free on 127.0.0.1 right now, chosen at random below the kernel's ephemeral
// range (so outgoing connections never take it), never handed out twice by this process.
// Another process may still grab it before our server binds: servers retry their first start.
int pick_free_port();

// A listening socket on 127.0.0.1 at a kernel-chosen port (SO_REUSEADDR, CLOEXEC, plus
// socket_flags such as SOCK_NONBLOCK); sets port. Throws std::runtime_error naming `who`.
int listen_on_loopback(const char* who, int backlog, int socket_flags, int& port);

}  // namespace psync::test
