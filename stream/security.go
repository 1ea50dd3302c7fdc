package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SecurityConfig says how Kafka clients authenticate (SASL) and encrypt (TLS).
// The zero value is plaintext without authentication. Field errors name the
// configuration keys of the same name under kafka: (sasl_mechanism, tls_ca_file,
// ...), and never contain the password.
type SecurityConfig struct {
	SASLMechanism string // "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username      string
	Password      string
	PasswordFile  string // read when Password is empty; surrounding white space is trimmed

	TLS           bool   // encrypt; implied by any of the TLS files
	TLSCAFile     string // PEM roots to verify the broker with; empty: the system roots
	TLSServerName string // name to verify in the broker's certificate; default: the host dialed
	TLSCertFile   string // client certificate (PEM), with TLSKeyFile, for mutual TLS
	TLSKeyFile    string
}

// Enabled reports whether the config asks for anything but plaintext.
func (c SecurityConfig) Enabled() bool {
	return c.SASLMechanism != "" || c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != ""
}

// Security is a validated SecurityConfig ready for kafka-go: the Dialer of
// Readers, ConsumerGroups and Conns, and the Transport of Writers and Clients.
// A nil *Security is plaintext without authentication.
type Security struct {
	mechanism sasl.Mechanism
	tls       *tls.Config
	transport *kafka.Transport // shared: one connection pool per process
}

// dialTimeout bounds connecting, TLS handshake and SASL exchange included, so a
// broker that does not speak what we expect fails fast instead of hanging.
const dialTimeout = 10 * time.Second

// NewSecurity validates c and loads its files; it returns nil for plaintext.
func NewSecurity(c SecurityConfig) (*Security, error) {
	if c.SASLMechanism == "" {
		var set []string
		for _, f := range []struct{ key, v string }{{"sasl_username", c.Username}, {"sasl_password", c.Password},
			{"sasl_password_file", c.PasswordFile}} {
			if f.v != "" {
				set = append(set, f.key)
			}
		}
		if len(set) > 0 {
			return nil, fmt.Errorf("%s set but sasl_mechanism is empty (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", strings.Join(set, ", "))
		}
	}
	if !c.Enabled() {
		return nil, nil
	}
	s := &Security{}
	var errs []error
	if c.SASLMechanism != "" {
		mech, err := saslMechanism(c)
		if err != nil {
			errs = append(errs, err)
		}
		s.mechanism = mech
	}
	if c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" {
		cfg, err := tlsConfig(c)
		if err != nil {
			errs = append(errs, err)
		}
		s.tls = cfg
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.transport = &kafka.Transport{
		DialTimeout: dialTimeout,
		IdleTimeout: 30 * time.Second,
		MetadataTTL: 6 * time.Second,
		SASL:        s.mechanism,
		TLS:         s.tls,
		ClientID:    "starstream",
	}
	return s, nil
}

func saslMechanism(c SecurityConfig) (sasl.Mechanism, error) {
	mech := strings.ToUpper(c.SASLMechanism)
	if mech != "PLAIN" && mech != "SCRAM-SHA-256" && mech != "SCRAM-SHA-512" {
		return nil, fmt.Errorf("sasl_mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	password := c.Password
	if password == "" && c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			// The path is not secret; the error of ReadFile names only it.
			return nil, fmt.Errorf("sasl_password_file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	switch {
	case c.Username == "":
		return nil, fmt.Errorf("sasl_username is empty but sasl_mechanism is %s", c.SASLMechanism)
	case password == "":
		return nil, fmt.Errorf("sasl_password (or sasl_password_file) is empty but sasl_mechanism is %s", c.SASLMechanism)
	}
	switch mech {
	case "PLAIN":
		return plain.Mechanism{Username: c.Username, Password: password}, nil
	case "SCRAM-SHA-256":
		m, err := scram.Mechanism(scram.SHA256, c.Username, password)
		if err != nil {
			return nil, errors.New("sasl_username or sasl_password is not valid SASLprep text")
		}
		return m, nil
	case "SCRAM-SHA-512":
		m, err := scram.Mechanism(scram.SHA512, c.Username, password)
		if err != nil {
			return nil, errors.New("sasl_username or sasl_password is not valid SASLprep text")
		}
		return m, nil
	}
	return nil, fmt.Errorf("sasl_mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
}

func tlsConfig(c SecurityConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	var errs []error
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("tls_ca_file: %w", err))
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("tls_ca_file %s holds no PEM certificate", c.TLSCAFile))
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("tls_cert_file/tls_key_file: %w", err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.TLSCertFile != "" || c.TLSKeyFile != "":
		errs = append(errs, errors.New("tls_cert_file and tls_key_file go together: set both or neither"))
	}
	return cfg, errors.Join(errs...)
}

// Dialer returns a dialer for kafka.ReaderConfig, kafka.ConsumerGroupConfig and
// kafka.DialContext; plaintext for a nil Security.
func (s *Security) Dialer() *kafka.Dialer {
	d := &kafka.Dialer{Timeout: dialTimeout, DualStack: true, ClientID: "starstream"}
	if s != nil {
		d.SASLMechanism = s.mechanism
		d.TLS = s.tls
	}
	return d
}

// Transport returns the round tripper for kafka.Writer and kafka.Client;
// kafka.DefaultTransport for a nil Security.
func (s *Security) Transport() kafka.RoundTripper {
	if s == nil {
		return kafka.DefaultTransport
	}
	return s.transport
}

// Reader returns kafka.NewReader(cfg) with cfg.Dialer set from s.
func (s *Security) Reader(cfg kafka.ReaderConfig) *kafka.Reader {
	cfg.Dialer = s.Dialer()
	return kafka.NewReader(cfg)
}

// String describes the protocol without secrets, e.g. "SASL_SSL (SCRAM-SHA-512)".
func (s *Security) String() string {
	switch {
	case s == nil:
		return "PLAINTEXT"
	case s.mechanism != nil && s.tls != nil:
		return "SASL_SSL (" + s.mechanism.Name() + ")"
	case s.mechanism != nil:
		return "SASL_PLAINTEXT (" + s.mechanism.Name() + ")"
	default:
		return "SSL"
	}
}

// describeSecurityError explains a connection the broker closed during the
// handshake: the usual cause is a security protocol mismatch, which Kafka
// reports by hanging up, not with an error code.
func describeSecurityError(s *Security, err error) error {
	if s == nil || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return err
	}
	var hint string
	switch {
	case s.tls != nil && s.mechanism != nil:
		hint = "the broker hung up during the TLS handshake or SASL exchange: is this a SASL_SSL listener? " +
			"(TLS to a plaintext listener fails like this)"
	case s.tls != nil:
		hint = "the broker hung up after the TLS handshake: the listener may require SASL (set kafka.sasl_mechanism), " +
			"or not speak TLS at all"
	default:
		hint = "the broker hung up during the SASL exchange: the listener may require TLS (set kafka.tls), " +
			"or not speak SASL at all"
	}
	return fmt.Errorf("%w (connecting with %s: %s)", err, s, hint)
}
