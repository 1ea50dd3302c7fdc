package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/capture/capturetest"
)

// The registry keys: from the file or the environment, the password from a file
// too, validated with messages naming the key, and never shown.
func TestRegistryConfigKeys(t *testing.T) {
	t.Parallel()
	const secret = "Reg-s3cr3t-Planted"
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig("", []string{
		"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=http://127.0.0.1:18081/apis/ccompat/v7",
		"STARSTREAM_KAFKA_SCHEMA_REGISTRY_USERNAME=starstream",
		"STARSTREAM_KAFKA_SCHEMA_REGISTRY_PASSWORD_FILE=" + pw,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Kafka.SchemaRegistryPassword != secret || c.Kafka.SchemaRegistryUsername != "starstream" {
		t.Fatalf("credentials not loaded: user %q", c.Kafka.SchemaRegistryUsername)
	}
	if strings.Contains(c.Redacted(), secret) || !strings.Contains(c.Redacted(), "schema_registry_url: http://127.0.0.1:18081/apis/ccompat/v7") {
		t.Errorf("Redacted:\n%s", c.Redacted())
	}
	a, err := newApp(c)
	if err != nil {
		t.Fatal(err)
	}
	if reg := a.codecs.Registry(); reg == nil || strings.Contains(reg.String(), secret) {
		t.Errorf("app registry %v", reg)
	}
	if got := c.secrets(); len(got) < 2 || got[len(got)-1] != secret {
		t.Errorf("secrets for scrubbing: %d entries", len(got))
	}

	// Credentials in the URL are masked as well.
	c.Kafka.SchemaRegistryURL = "https://starstream:" + secret + "@registry.example:8081"
	c.Kafka.SchemaRegistryPassword = ""
	if strings.Contains(c.Redacted(), secret) {
		t.Errorf("Redacted shows the URL's password:\n%s", c.Redacted())
	}
	if got := c.secrets(); len(got) == 0 || got[len(got)-1] != secret {
		t.Errorf("the URL's password is not scrubbed")
	}

	for name, env := range map[string][]string{
		"not http":            {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=ftp://u:" + secret + "@host/x"},
		"no host":             {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=http://"},
		"credentials, no url": {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_PASSWORD=" + secret},
		"ca file, no url":     {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_CA_FILE=" + pw},
		"ca file, http url": {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=http://127.0.0.1:18081",
			"STARSTREAM_KAFKA_SCHEMA_REGISTRY_CA_FILE=" + pw},
		"ca file not pem": {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=https://registry.example:8081",
			"STARSTREAM_KAFKA_SCHEMA_REGISTRY_CA_FILE=" + pw},
		"ca file missing": {"STARSTREAM_KAFKA_SCHEMA_REGISTRY_URL=https://registry.example:8081",
			"STARSTREAM_KAFKA_SCHEMA_REGISTRY_CA_FILE=/nonexistent/ca.crt"},
	} {
		c, err := LoadConfig("", env)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		if err == nil || !strings.Contains(err.Error(), "kafka.schema_registry_") || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadConfig("", []string{"STARSTREAM_KAFKA_SCHEMA_REGISTRY_PASSWORD_FILE=/nonexistent/pw"}); err == nil ||
		!strings.Contains(err.Error(), "kafka.schema_registry_password_file") {
		t.Errorf("missing password file: %v", err)
	}
}

// A registry that is not there makes capture fail at once, naming the key and
// the address and never the password.
func TestRegistryUnreachableFailsFast(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	schema := capturetest.NewSchema(t)
	slot := capturetest.Unique(t, "s")
	t.Cleanup(func() { capturetest.DropSlot(t, capturetestConfig(schema, slot)) })
	const secret = "Unreachable-Reg-S3cret"
	dead := closedPort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	yaml := yamlConfig(map[string]map[string]string{
		"postgres": {"dsn": fmt.Sprintf("%q", capturetest.DSN()), "schema": schema, "slot": slot, "publication": slot},
		"kafka": {"brokers": "[" + strings.Join(capturetest.Brokers(), ", ") + "]",
			"schema_registry_url": fmt.Sprintf("%q", "http://starstream:"+secret+"@"+dead+"/apis/ccompat/v7")},
		"pipelines": {"namespace": schema + "."},
		"warehouse": {"duckdb_path": filepath.Join(dir, "warehouse.duckdb")},
		"http":      {"addr": `""`},
	})
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	e := runBounded(t, bin, time.Minute, nil, "--config", file, "capture")
	msg := finalMessage(e.out)
	t.Logf("after %v: exit %v; %s", e.elapsed.Round(time.Millisecond), e.err, msg)
	switch {
	case e.timedOut:
		t.Errorf("still running after %v", e.elapsed.Round(time.Second))
	case e.err == nil:
		t.Errorf("exited 0")
	case e.elapsed > 30*time.Second:
		t.Errorf("took %v to fail", e.elapsed.Round(time.Second))
	}
	if strings.Contains(e.out, secret) {
		t.Errorf("the password appears in the output")
	}
	for _, want := range []string{"kafka.schema_registry_url", dead, "unavailable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("final message %q does not name %q", msg, want)
		}
	}
}
