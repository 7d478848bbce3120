#include "proxy/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <fstream>

#include "proxy/config.h"

namespace psync::proxy {

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

std::string TlsContext::errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "no reason given by OpenSSL" : out;
}

std::string TlsContext::load(const Config& c) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return "cannot make a TLS context: " + errors();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Partial writes, and a retried write may come from another buffer
  // holding the same bytes (the file chunk is read again).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  auto fail = [&](const std::string& what) {
    SSL_CTX_free(ctx);
    return what + ": " + errors();
  };
  if (SSL_CTX_use_certificate_chain_file(ctx, c.tls_cert_file.c_str()) != 1) {
    return fail("--tls-cert-file " + c.tls_cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, c.tls_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("--tls-key-file " + c.tls_key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("--tls-key-file does not match --tls-cert-file");
  if (!c.tls_ca_cert_file.empty() && SSL_CTX_load_verify_locations(ctx, c.tls_ca_cert_file.c_str(), nullptr) != 1) {
    return fail("--tls-ca-cert-file " + c.tls_ca_cert_file);
  }
  int mode = SSL_VERIFY_NONE;
  if (c.tls_auth_clients == TlsAuthClients::kYes) mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  if (c.tls_auth_clients == TlsAuthClients::kOptional) mode = SSL_VERIFY_PEER;
  SSL_CTX_set_verify(ctx, mode, nullptr);
#ifdef SSL_OP_ENABLE_KTLS
  std::ifstream modules("/proc/modules");
  std::string line;
  bool module = false;
  while (std::getline(modules, line)) module = module || line.rfind("tls ", 0) == 0;
  if (module) {
    SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);
    ktls_possible_ = true;
  }
#endif
  ctx_ = ctx;
  return "";
}

SSL* TlsContext::accept_on(int fd) const {
  if (!ctx_) return nullptr;
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  if (SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace psync::proxy

namespace psync::proxy {

SSL* TlsContext::accept_in_memory(BIO*& rbio, BIO*& wbio) const {
  if (!ctx_) return nullptr;
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  rbio = BIO_new(BIO_s_mem());
  wbio = BIO_new(BIO_s_mem());
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_bio(ssl, rbio, wbio);  // owned by ssl from here
  SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace psync::proxy
