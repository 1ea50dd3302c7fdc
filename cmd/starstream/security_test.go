package main

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// scramUser creates a SCRAM-SHA-512 user on the broker, as an operator would
// with kafka-configs (through the plaintext listener). It is left in place: on
// Kafka 4.1.2, deleting it made the broker drop, at its next restart, the
// SCRAM-SHA-512 credential of the stack's own user (the one `kafka-storage
// format --add-scram` created), and `make up` failed its SASL check.
func scramUser(t *testing.T, name, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	salt := make([]byte, 32)
	_, _ = rand.Read(salt)
	const iterations = 4096
	salted, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512.Size)
	if err != nil {
		t.Fatal(err)
	}
	c := &kafka.Client{Addr: kafka.TCP(capturetest.Brokers()...)}
	res, err := c.AlterUserScramCredentials(ctx, &kafka.AlterUserScramCredentialsRequest{Upsertions: []kafka.UserScramCredentialsUpsertion{{
		Name: name, Mechanism: kafka.ScramMechanismSha512, Iterations: iterations, Salt: salt, SaltedPassword: salted}}})
	if err == nil && len(res.Results) == 1 {
		err = res.Results[0].Error
	}
	if err != nil {
		t.Fatalf("create SCRAM user %s: %v", name, err)
	}
	// The credential reaches the broker through the metadata log a moment later.
	sec, err := stream.NewSecurity(stream.SecurityConfig{SASLMechanism: "SCRAM-SHA-512", Username: name, Password: password,
		TLSCAFile: streamtest.TLSCAFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.NewAdmin(streamtest.SASLBrokers(t), sec).Partitions(ctx, stream.DefaultSchemaTopic)
		if err == nil || errors.Is(err, kafka.UnknownTopicOrPartition) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("SCRAM user %s cannot log in: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freeAddr returns a local address nothing listens on yet, for the status page.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// assertNoSecrets fails the test for every secret found in text.
func assertNoSecrets(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s shows the secret %q", where, s)
		}
	}
}

// Capture and a pipeline run as the least-privilege role starstream_capture
// over TLS (sslmode=verify-full) and Kafka over SASL_SSL (SCRAM-SHA-512, a user
// whose password is planted for this test and given through the environment);
// no superuser is involved. Then misconfigured runs — wrong passwords, plaintext
// to TLS-only listeners, an unreachable broker — fail fast. The passwords appear
// nowhere: not in the logs, command output and errors, /metrics, nor the status
// page (HTML, scripts and the JSON it serves).
func TestSecurityEndToEndAndPlantedSecrets(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	ctx := context.Background()
	admin := capturetest.Connect(t)
	captureDSN := capturetest.CaptureDSN(t)
	saslBrokers := strings.Join(streamtest.SASLBrokers(t), ",")
	ca := streamtest.TLSCAFile(t)

	// The source and what its admin does for a least-privilege capture role:
	// SELECT on the captured tables and the publication, created beforehand.
	schema, slot := shopSource(ctx, t, admin, 7)
	for _, sql := range []string{
		"GRANT USAGE ON SCHEMA " + pgx.Identifier{schema}.Sanitize() + " TO " + capturetest.CaptureRole,
		"GRANT SELECT ON ALL TABLES IN SCHEMA " + pgx.Identifier{schema}.Sanitize() + " TO " + capturetest.CaptureRole,
		"CREATE PUBLICATION " + pgx.Identifier{slot}.Sanitize() + " FOR TABLES IN SCHEMA " + pgx.Identifier{schema}.Sanitize() +
			", TABLE public.starstream_signal",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	ns := schema + "."
	dropTopicsAtCleanup(t, schema, ns)

	// Planted secrets: the Kafka user's password, and wrong ones for the failures.
	kafkaUser := capturetest.Unique(t, "u")
	kafkaPW := "Pl4nted-Kafka-" + capturetest.Unique(t, "pw")
	badKafkaPW := "Pl4nted-BadKafka-" + capturetest.Unique(t, "pw")
	badPGPW := "Pl4nted-BadPG-" + capturetest.Unique(t, "pw")
	scramUser(t, kafkaUser, kafkaPW)
	secrets := []string{kafkaPW, badKafkaPW, badPGPW, capturetest.CapturePassword}

	dir := t.TempDir()
	httpAddr := freeAddr(t)
	sections := func(dsn, brokers string) map[string]map[string]string {
		return map[string]map[string]string{
			"postgres": {"dsn": fmt.Sprintf("%q", dsn), "schema": schema, "slot": slot, "publication": slot},
			"kafka": {"brokers": "[" + brokers + "]", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": kafkaUser,
				"tls_ca_file": fmt.Sprintf("%q", ca)},
			"pipelines": {"namespace": ns},
			"warehouse": {"duckdb_path": filepath.Join(dir, "warehouse.duckdb")},
			"http":      {"addr": fmt.Sprintf("%q", httpAddr)},
		}
	}
	config := filepath.Join(dir, "starstream.yaml")
	if err := os.WriteFile(config, []byte(yamlConfig(sections(captureDSN, saslBrokers))), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"STARSTREAM_KAFKA_SASL_PASSWORD=" + kafkaPW}

	proc := startWith(t, bin, config, env, "run", "--capture", "--pipelines", "dim_customer")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, admin), 3*time.Minute)
	id := insertCustomer(t, admin, schema, "Secure Customer", "Coimbra")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, admin), 3*time.Minute)
	requireAlive(t, proc, "while streaming securely")

	var conns, encrypted int
	if err := admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
		JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1 AND a.application_name LIKE 'starstream-capture/%'`,
		capturetest.CaptureRole).Scan(&conns, &encrypted); err != nil {
		t.Fatal(err)
	}
	if conns < 2 || encrypted != conns {
		t.Errorf("capture's connections as %s: %d, encrypted %d; want at least 2, all encrypted", capturetest.CaptureRole, conns, encrypted)
	}

	// Everything the status server serves.
	pages := map[string]string{}
	for _, path := range []string{"/", "/api/status", "/metrics", "/healthz", "/readyz", "/static/app.js", "/static/style.css"} {
		res, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		pages[path] = string(b)
		assertNoSecrets(t, "GET "+path, string(b), secrets...)
	}
	if !strings.Contains(pages["/api/status"], "starstream_capture:xxxxx@") {
		t.Errorf("/api/status does not show capture's DSN redacted:\n%s", tail(pages["/api/status"], 10))
	}
	if !strings.Contains(pages["/metrics"], "starstream_") {
		t.Errorf("/metrics serves no starstream metric")
	}
	proc.stop(t)
	logText, err := os.ReadFile(filepath.Join(dir, "starstream.log"))
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecrets(t, "the log of the secure run", string(logText), secrets...)

	wh, err := duckdb.Open(filepath.Join(dir, "warehouse.duckdb"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, rows, err := wh.Query(ctx, `SELECT count(*) FILTER (WHERE customer_id = ?), count(*) FROM dim_customer WHERE is_current AND customer_key <> -1`, id)
	wh.Close()
	if err != nil {
		t.Fatal(err)
	}
	var src int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "customers"}.Sanitize()).Scan(&src); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rows) != fmt.Sprintf("[[1 %d]]", src) {
		t.Errorf("dim_customer (new customer, current members) = %v; want [[1 %d]]", rows, src)
	}

	// Misconfigurations fail fast, say what is wrong, and show no password.
	withPW := func(dsn, user, pw string) string {
		u := strings.Index(dsn, "://") + 3
		return dsn[:u] + user + ":" + pw + dsn[strings.Index(dsn, "@"):]
	}
	pwFile := filepath.Join(dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte(badKafkaPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	plainDSN := strings.Replace(captureDSN, "sslmode=verify-full", "sslmode=disable", 1)
	for _, tc := range []struct {
		name    string
		command []string
		dsn     string
		brokers string
		patch   map[string]string // kafka keys
		env     []string
		want    string
	}{
		{name: "wrong postgres password", command: []string{"capture"}, dsn: withPW(captureDSN, capturetest.CaptureRole, badPGPW),
			brokers: saslBrokers, env: env, want: "password authentication failed"},
		{name: "plaintext postgres to a TLS-only role", command: []string{"capture"}, dsn: plainDSN,
			brokers: saslBrokers, env: env, want: "no encryption"},
		{name: "wrong kafka password from a file", command: []string{"run", "--capture", "--pipelines", "dim_customer"}, dsn: captureDSN,
			brokers: saslBrokers, patch: map[string]string{"sasl_password_file": fmt.Sprintf("%q", pwFile)}, want: "SASL Authentication failed"},
		{name: "wrong kafka password/lag", command: []string{"lag"}, dsn: captureDSN, brokers: saslBrokers,
			env: []string{"STARSTREAM_KAFKA_SASL_PASSWORD=" + badKafkaPW}, want: "SASL Authentication failed"},
		{name: "plaintext kafka to the SASL_SSL listener", command: []string{"capture"}, dsn: captureDSN, brokers: saslBrokers,
			patch: map[string]string{"sasl_mechanism": `""`, "sasl_username": `""`, "tls_ca_file": `""`}, want: "expecting TLS"},
		{name: "SASL_SSL to the plaintext listener", command: []string{"capture"}, dsn: captureDSN,
			brokers: strings.Join(capturetest.Brokers(), ","), env: env, want: "TLS handshake"},
		{name: "unreachable broker", command: []string{"run", "--capture", "--pipelines", "dim_customer"}, dsn: captureDSN,
			brokers: closedPort(t), env: env, want: "unreachable"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			s := sections(tc.dsn, tc.brokers)
			s["http"]["addr"] = `""`
			for k, v := range tc.patch {
				s["kafka"][k] = v
			}
			file := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(file, []byte(yamlConfig(s)), 0o600); err != nil {
				t.Fatal(err)
			}
			e := runBounded(t, bin, 2*time.Minute, tc.env, append([]string{"--config", file}, tc.command...)...)
			t.Logf("%s: after %v: exit %v; last lines:\n%s", tc.name, e.elapsed.Round(time.Millisecond), e.err, tail(strings.TrimSpace(e.out), 3))
			switch {
			case e.timedOut:
				t.Errorf("still running after %v", e.elapsed.Round(time.Second))
			case e.err == nil:
				t.Errorf("exited 0")
			case e.elapsed > time.Minute:
				t.Errorf("took %v to fail", e.elapsed.Round(time.Second))
			}
			if msg := finalMessage(e.out); !strings.Contains(msg, tc.want) {
				t.Errorf("final message %q does not say %q", msg, tc.want)
			}
			assertNoSecrets(t, "the output", e.out, secrets...)
		})
	}

	// The effective configuration masks both passwords.
	e := runBounded(t, bin, 30*time.Second, append(env[:1:1], "STARSTREAM_POSTGRES_DSN="+withPW(captureDSN, "someone", badPGPW)),
		"--config", config, "config")
	if e.err != nil || !strings.Contains(e.out, "sasl_password: xxxxx") {
		t.Errorf("config: %v\n%s", e.err, e.out)
	}
	assertNoSecrets(t, "starstream config", e.out, secrets...)
}
