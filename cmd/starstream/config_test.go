package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("postgres:\n  schema: sales\nkafka:\n  partitions: 6\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(file, []string{"STARSTREAM_KAFKA_BROKERS=a:1,b:2", "STARSTREAM_POSTGRES_SLOT=s2", "OTHER=x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.Schema != "sales" || c.Kafka.Partitions != 6 || c.Postgres.Slot != "s2" || strings.Join(c.Kafka.Brokers, ",") != "a:1,b:2" {
		t.Fatalf("layers not applied: %+v", c)
	}
	if c.Warehouse.Kind != "duckdb" || c.HTTP.Addr != "127.0.0.1:8080" {
		t.Fatalf("defaults lost: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsAreClearAndSecretFree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, tt := range map[string]struct {
		yaml, env, want string
	}{
		"unknown key":   {"kafka:\n  brokerz: [x]\n", "", "field brokerz not found"},
		"bad broker":    {"", "STARSTREAM_KAFKA_BROKERS=nohost", `"nohost" is not host:port`},
		"bad number":    {"", "STARSTREAM_KAFKA_PARTITIONS=many", "STARSTREAM_KAFKA_PARTITIONS"},
		"bad kind":      {"warehouse:\n  kind: snowflake\n", "", `warehouse.kind "snowflake"`},
		"no bq project": {"warehouse:\n  kind: bigquery\n", "", "bigquery_project"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".yaml")
		_ = os.WriteFile(file, []byte(tt.yaml), 0o600)
		var env []string
		if tt.env != "" {
			env = []string{tt.env}
		}
		c, err := LoadConfig(file, env)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tt.want)
		}
	}
}

func TestPasswordFileAndRedaction(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cr3t-Planted!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig("", []string{"STARSTREAM_POSTGRES_PASSWORD_FILE=" + pw})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Postgres.DSN, "s3cr3t-Planted%21@") {
		t.Fatalf("password not applied to the DSN")
	}
	if strings.Contains(c.Redacted(), "s3cr3t") {
		t.Fatal("Redacted shows the password")
	}
	if msg := redact(c.Postgres.DSN, errString("connect to "+c.Postgres.DSN+" failed: s3cr3t-Planted%21")); strings.Contains(msg, "s3cr3t") {
		t.Fatalf("redact left the password: %s", msg)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// Kafka SASL/TLS and PostgreSQL TLS keys: TLS settings reach the DSN, the SASL
// password comes from the environment or a file, and neither shows in Redacted.
func TestSecurityKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "c.yaml")
	yaml := "postgres:\n  sslmode: verify-full\n  sslrootcert: " + ca + "\nkafka:\n  sasl_mechanism: SCRAM-SHA-512\n  sasl_username: svc\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(file, []string{"STARSTREAM_KAFKA_SASL_PASSWORD=Pl4nted-env-pw", "STARSTREAM_KAFKA_TLS=true"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Postgres.DSN, "sslmode=verify-full") || !strings.Contains(c.Postgres.DSN, "sslrootcert="+strings.ReplaceAll(ca, "/", "%2F")) ||
		strings.Contains(c.Postgres.DSN, "sslmode=disable") {
		t.Errorf("TLS keys not in the DSN: %s", c.Postgres.DSN)
	}
	if !c.Kafka.TLS || c.Kafka.SASLPassword != "Pl4nted-env-pw" {
		t.Errorf("environment not applied: tls %v", c.Kafka.TLS)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.Redacted(); strings.Contains(r, "Pl4nted-env-pw") || !strings.Contains(r, "sasl_password: xxxxx") {
		t.Errorf("Redacted:\n%s", r)
	}
	a, err := newApp(c)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.kafka.String(); got != "SASL_SSL (SCRAM-SHA-512)" {
		t.Errorf("kafka security %q", got)
	}
	if s := c.secrets(); len(s) != 2 || s[1] != "Pl4nted-env-pw" {
		t.Errorf("secrets() has %d values, want the DSN's and the SASL password", len(s))
	}

	for _, tc := range []struct{ dsn, want string }{
		{"host=h user=u password='p w' sslmode=disable", "host=h user=u password='p w' sslmode='require'"},
		{"postgres://u:p@h/db?sslmode=disable&application_name=x", "postgres://u:p@h/db?application_name=x&sslmode=require"},
	} {
		got, err := withParams(tc.dsn, map[string]string{"sslmode": "require", "sslrootcert": ""})
		if err != nil || got != tc.want {
			t.Errorf("withParams(%q) = %q, %v; want %q", tc.dsn, got, err, tc.want)
		}
	}
}
