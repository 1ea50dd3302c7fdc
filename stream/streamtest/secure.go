package streamtest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

// Defaults of the secured side of the local stack (deploy/local/README.md, "TLS and SASL").
const (
	DefaultSASLUsername = "starstream"
	DefaultSASLPassword = "starstream-secret"
)

// TLSCAFile returns the local stack's CA: STARSTREAM_TLS_CA_FILE, else
// $STARSTREAM_DATA_DIR/tls/ca.crt, else <repo>/.data/tls/ca.crt (which `make up` creates).
func TLSCAFile(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("STARSTREAM_TLS_CA_FILE"); v != "" {
		return v
	}
	if v := os.Getenv("STARSTREAM_DATA_DIR"); v != "" {
		return filepath.Join(v, "tls", "ca.crt")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".data", "tls", "ca.crt")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory: set STARSTREAM_TLS_CA_FILE")
		}
		dir = parent
	}
}

// SASLBrokers returns the SASL_SSL listener (STARSTREAM_KAFKA_SASL_BROKERS;
// default: the first plaintext broker's port + 2, as deploy/local does) and fails
// the test, never skips, when it does not answer: a stack started before the
// listener existed must be restarted.
func SASLBrokers(t testing.TB) []string {
	t.Helper()
	env := os.Getenv("STARSTREAM_KAFKA_SASL_BROKERS")
	if env == "" {
		plain := os.Getenv("STARSTREAM_KAFKA_BROKERS")
		if plain == "" {
			plain = DefaultBrokers
		}
		host, port, err := net.SplitHostPort(strings.Split(plain, ",")[0])
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			t.Fatalf("STARSTREAM_KAFKA_BROKERS %q is not host:port", plain)
		}
		env = net.JoinHostPort(host, strconv.Itoa(n+2))
	}
	brokers := strings.Split(env, ",")
	conn, err := net.DialTimeout("tcp", brokers[0], 3*time.Second)
	if err != nil {
		t.Fatalf("no Kafka SASL_SSL listener at %s: the stack was started before it existed; restart it "+
			"(make down && make up): %v", brokers[0], err)
	}
	conn.Close()
	return brokers
}

// SASLConfig returns the security settings of the SASL_SSL listener: SCRAM-SHA-512
// with the local user (STARSTREAM_KAFKA_SASL_USERNAME/_PASSWORD override it) over
// TLS verified against TLSCAFile.
func SASLConfig(t testing.TB) stream.SecurityConfig {
	t.Helper()
	ca := TLSCAFile(t)
	if _, err := os.Stat(ca); err != nil {
		t.Fatalf("the local CA %s is missing: restart the stack (make down && make up): %v", ca, err)
	}
	user, password := os.Getenv("STARSTREAM_KAFKA_SASL_USERNAME"), os.Getenv("STARSTREAM_KAFKA_SASL_PASSWORD")
	if user == "" {
		user, password = DefaultSASLUsername, DefaultSASLPassword
	}
	return stream.SecurityConfig{SASLMechanism: "SCRAM-SHA-512", Username: user, Password: password, TLSCAFile: ca}
}

// Security returns SASLConfig made ready for the clients.
func Security(t testing.TB) *stream.Security {
	t.Helper()
	sec, err := stream.NewSecurity(SASLConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return sec
}
