# shellcheck shell=bash
# Local certificate authority and server certificate for the stack's TLS listeners
# (PostgreSQL ssl=on, Kafka SASL_SSL). Sourced by postgres.sh and kafka.sh after lib.sh.
#
#   $TLS_DIR/ca.crt       the CA clients trust (sslrootcert=, kafka.tls_ca_file)
#   $TLS_DIR/server.crt   server certificate for 127.0.0.1 and localhost, signed by the CA
#   $TLS_DIR/server.key   its key (PKCS#8, unencrypted; readable by the owner only)
#   $TLS_DIR/server.p12   the same pair as a PKCS#12 keystore for Kafka (password $TLS_STORE_PASSWORD)
#
# Idempotent: files are made once; the server certificate is re-issued when it no longer
# verifies against the CA or expires within 30 days. A dev/test CA: never trust it elsewhere.

TLS_DIR="$DATA/tls"
TLS_STORE_PASSWORD=starstream

# ensure_tls: create the CA and server certificate if missing or stale. Both services call it
# at the same moment from up.sh, so it runs under its own lock.
ensure_tls() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  mkdir -p "$TLS_DIR"
  (
    flock -w 120 7 || die "timed out waiting for $TLS_DIR/.lock"
    cd "$TLS_DIR" || exit 1
    umask 077
    if ! [ -s ca.crt ] || ! [ -s ca.key ] || ! openssl x509 -in ca.crt -noout -checkend 2592000 >/dev/null 2>&1; then
      log "creating the local certificate authority $TLS_DIR/ca.crt"
      rm -f ca.crt ca.key server.crt server.key server.p12
      openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.crt \
        -subj "/CN=starstream local CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 || die "openssl: CA creation failed"
    fi
    if ! [ -s server.crt ] || ! [ -s server.key ] || ! [ -s server.p12 ] ||
       ! openssl verify -CAfile ca.crt server.crt >/dev/null 2>&1 ||
       ! openssl x509 -in server.crt -noout -checkend 2592000 >/dev/null 2>&1; then
      log "issuing the server certificate $TLS_DIR/server.crt (127.0.0.1, localhost)"
      openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr \
        -subj "/CN=localhost" >/dev/null 2>&1 || die "openssl: server key creation failed"
      printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" >server.ext
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 825 \
        -extfile server.ext -out server.crt >/dev/null 2>&1 || die "openssl: signing the server certificate failed"
      openssl pkcs12 -export -in server.crt -inkey server.key -certfile ca.crt -name server \
        -passout "pass:$TLS_STORE_PASSWORD" -out server.p12 >/dev/null 2>&1 || die "openssl: PKCS#12 export failed"
      rm -f server.csr server.ext
    fi
    # Clients (tests, the CLI tools) read the CA from any user: it is public.
    chmod 0644 ca.crt server.crt
  ) 7>"$TLS_DIR/.lock"
}
