package stream_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

const plantedPassword = "planted-Kafka-secret-7f3a9c"

// Every bad setting is reported with its key, and the password never appears.
func TestSecurityConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("no certificate here"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := stream.SecurityConfig{SASLMechanism: "SCRAM-SHA-512", Username: "u", Password: plantedPassword}
	for _, tc := range []struct {
		name string
		edit func(*stream.SecurityConfig)
		want string
	}{
		{"unknown mechanism", func(c *stream.SecurityConfig) { c.SASLMechanism = "GSSAPI" }, "sasl_mechanism"},
		{"no username", func(c *stream.SecurityConfig) { c.Username = "" }, "sasl_username"},
		{"no password", func(c *stream.SecurityConfig) { c.Password = "" }, "sasl_password"},
		{"missing password file", func(c *stream.SecurityConfig) { c.Password, c.PasswordFile = "", filepath.Join(dir, "nope") }, "sasl_password_file"},
		{"missing CA", func(c *stream.SecurityConfig) { c.TLSCAFile = filepath.Join(dir, "nope.crt") }, "tls_ca_file"},
		{"CA not PEM", func(c *stream.SecurityConfig) { c.TLSCAFile = notPEM }, "tls_ca_file"},
		{"cert without key", func(c *stream.SecurityConfig) { c.TLSCertFile = notPEM }, "tls_key_file"},
		{"credentials without mechanism", func(c *stream.SecurityConfig) { c.SASLMechanism = "" }, "sasl_mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			_, err := stream.NewSecurity(c)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
			if strings.Contains(err.Error(), plantedPassword) {
				t.Errorf("error shows the password: %q", err)
			}
		})
	}
	if sec, err := stream.NewSecurity(stream.SecurityConfig{}); sec != nil || err != nil {
		t.Errorf("zero config: %v, %v; want plaintext (nil, nil)", sec, err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(plantedPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec, err := stream.NewSecurity(stream.SecurityConfig{SASLMechanism: "scram-sha-256", Username: "u", PasswordFile: pwFile, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := sec.String(); got != "SASL_SSL (SCRAM-SHA-256)" || strings.Contains(got, plantedPassword) {
		t.Errorf("String() = %q", got)
	}
}

// Writer, Admin, ScanToEnd and a consumer group all work over SASL_SSL
// (SCRAM-SHA-512, certificate verified against the local CA).
func TestSecurityRoundTripOverSASLSSL(t *testing.T) {
	t.Parallel()
	brokers := streamtest.SASLBrokers(t)
	sec := streamtest.Security(t)
	ns := streamtest.Name(t, "sec")
	topic := "cdc." + ns + ".items"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: sec.Transport()}
		_, _ = c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Security: sec}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Register(ctx, topic, itemsSchema(ns, "items")); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := 0; i < n; i++ {
		lsn := stream.LSN(100 + i)
		if err := w.Write(ctx, []stream.Event{event(ns, "items", int64(i), lsn, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Mark(ctx, 100+n); err != nil {
		t.Fatal(err)
	}

	scanned := 0
	if err := stream.ScanToEnd(ctx, brokers, sec, topic, func(m kafka.Message) error {
		if _, ok := stream.MarkerLSN(m); !ok {
			scanned++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if scanned != n {
		t.Errorf("scanned %d records over SASL_SSL, want %d", scanned, n)
	}

	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Security: sec, Group: streamtest.Name(t, "g"),
		Topics: []string{topic}}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := 0
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	err = c.Run(cctx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			if r.Err != nil {
				t.Errorf("record %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, r.Err)
			}
		}
		got += len(b.Records)
		if got >= n {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("consumed %d records over SASL_SSL, want %d", got, n)
	}
}

// A wrong password, plaintext to the TLS listener and TLS to the plaintext one
// fail within seconds, with an error that says what is wrong and never the password.
func TestSecurityMisconfigurationFailsFast(t *testing.T) {
	t.Parallel()
	sasl := streamtest.SASLBrokers(t)
	plain := streamtest.Brokers(t)
	good := streamtest.SASLConfig(t)
	wrong := good
	wrong.Password = plantedPassword
	tlsOnly := good
	tlsOnly.SASLMechanism, tlsOnly.Username, tlsOnly.Password = "", "", ""
	for _, tc := range []struct {
		name    string
		brokers []string
		cfg     stream.SecurityConfig
		want    string
	}{
		{"wrong password", sasl, wrong, "authentication failed"},
		{"plaintext to the SASL_SSL listener", sasl, stream.SecurityConfig{}, "TLS"},
		{"SASL_SSL to the plaintext listener", plain, good, "TLS"},
		{"TLS without SASL to the SASL_SSL listener", sasl, tlsOnly, "SASL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sec, err := stream.NewSecurity(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			_, err = stream.NewAdmin(tc.brokers, sec).Partitions(ctx, stream.DefaultSchemaTopic)
			took := time.Since(start)
			if err == nil || errors.Is(err, kafka.UnknownTopicOrPartition) {
				t.Fatalf("metadata succeeded (%v)", err)
			}
			t.Logf("%s after %s: %v", tc.name, took.Round(time.Millisecond), err)
			if took > 30*time.Second {
				t.Errorf("took %s to fail", took)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.want)) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), plantedPassword) || strings.Contains(err.Error(), good.Password) {
				t.Errorf("error shows the password: %q", err)
			}
		})
	}
}
