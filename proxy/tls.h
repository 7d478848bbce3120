// TLS on the replica port (--tls-port) and the status port (--status-tls), with OpenSSL, under Redis's own
// option names: --tls-cert-file, --tls-key-file, --tls-ca-cert-file,
// --tls-auth-clients yes|no|optional.
//
// One server context for the process; each connection on the TLS port gets
// its SSL object (ReplicaSession). Full resyncs over TLS cannot use plain
// sendfile(2): with kernel TLS (the "tls" kernel module, OpenSSL 3 built with
// it) the records are encrypted by the kernel and SSL_sendfile() serves the
// snapshot and the log from the page cache as sendfile does; without it they
// are read in bounded chunks (kChunk, per session) and written with
// SSL_write(). /status says which (tls.ktls).
#pragma once

#include <cstddef>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace psync::proxy {

struct Config;

class TlsContext {
 public:
  static constexpr size_t kChunk = 64 * 1024;  // bytes of a file read per SSL_write without kTLS

  TlsContext() = default;
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Loads the certificate, key and CA of the config; "" or what is wrong
  // (naming the file and OpenSSL's reason).
  std::string load(const Config& config);
  bool loaded() const { return ctx_ != nullptr; }
  // A server SSL object on fd (non-blocking), null when OpenSSL refuses.
  SSL* accept_on(int fd) const;
  // One between two memory buffers (the status port: libuv owns the
  // socket): rbio takes what the peer sent, wbio holds what goes to it.
  SSL* accept_in_memory(BIO*& rbio, BIO*& wbio) const;
  // Whether kernel TLS can be asked for (the module is loaded and OpenSSL
  // has it): each connection then says whether it got it.
  bool ktls_possible() const { return ktls_possible_; }

  // OpenSSL's error queue as one line (and emptied).
  static std::string errors();

 private:
  SSL_CTX* ctx_ = nullptr;
  bool ktls_possible_ = false;
};

}  // namespace psync::proxy
