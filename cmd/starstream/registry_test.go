package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
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

// The binary with kafka.schema_registry_url set, against the real registry `make
// up` starts: capture writes the Confluent wire format, dim_customer consumes it
// and writes its own topic the same way, an ADD
// COLUMN registers a new version of the customers subject while everything keeps
// running, a record naming an id the registry does not know is dead-lettered
// with that reason, pipeline state stays single-object encoded, and the
// warehouse ends up matching the source.
func TestRegistryCaptureAndPipeline(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	ctx := context.Background()
	reg := streamtest.Registry(t)
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 5)
	dir := t.TempDir()
	ns := schema + "."
	dropTopicsAtCleanup(t, schema, ns)
	t.Cleanup(func() { deleteSubjects(t, reg, schema) })
	config := filepath.Join(dir, "starstream.yaml")
	sections := stackSections(schema, slot, filepath.Join(dir, "warehouse.duckdb"))
	sections["kafka"]["schema_registry_url"] = fmt.Sprintf("%q", streamtest.RegistryURL(t))
	writeConfig(t, config, yamlConfig(sections))

	proc := start(t, bin, config, "run", "--capture", "--pipelines", "dim_customer")
	input := stream.Topic("cdc", schema, "customers")
	output := ns + "dim.customer"
	waitRegistryTopic(t, reg, output, capturetest.Fence(t, db))

	// A schema change while running: a new version of the input's value subject.
	versions := func(subject string) []int {
		vs, err := reg.Versions(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	if vs := versions(input + "-value"); len(vs) != 1 {
		t.Fatalf("%s-value has versions %v before the change, want one", input, vs)
	}
	customers := pgx.Identifier{schema, "customers"}.Sanitize()
	if _, err := db.Exec(ctx, `ALTER TABLE `+customers+` ADD COLUMN nickname text`); err != nil {
		t.Fatal(err)
	}
	moved := insertCustomer(t, db, schema, "Registry Mover", "Lisbon")
	if _, err := db.Exec(ctx, `UPDATE `+customers+` SET city = 'Coimbra', nickname = 'reg' WHERE customer_id = $1`, moved); err != nil {
		t.Fatal(err)
	}
	// A record in the Confluent wire format naming an id nobody registered.
	real := firstRecord(t, input)
	bogus := binary.BigEndian.AppendUint32([]byte{0}, 0x7FFFFF00)
	writeToPartition(t, input, 0, kafka.Message{Key: real.Key, Value: append(bogus, real.Value[5:]...)})
	late := insertCustomer(t, db, schema, "After Bogus", "Faro")
	waitRegistryTopic(t, reg, output, capturetest.Fence(t, db))
	requireAlive(t, proc, "after the schema change")
	if vs := versions(input + "-value"); len(vs) != 2 {
		t.Errorf("%s-value has versions %v after ADD COLUMN, want two", input, vs)
	}
	if vs := versions(input + "-key"); len(vs) != 1 {
		t.Errorf("%s-key has versions %v, want one", input, vs)
	}
	if vs := versions(output + "-value"); len(vs) != 1 {
		t.Errorf("%s-value has versions %v, want one", output, vs)
	}

	// Every data record of the input and output topics is in the Confluent wire
	// format; the state topic is single-object encoded.
	formats := func(topic string) map[byte]int {
		seen := map[byte]int{}
		if err := stream.ScanToEnd(ctx, capturetest.Brokers(), nil, topic, func(m kafka.Message) error {
			if _, marker := stream.MarkerLSN(m); !marker && len(m.Value) > 0 {
				seen[m.Value[0]]++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	for _, topic := range []string{input, output} {
		if f := formats(topic); f[0] == 0 || len(f) != 1 {
			t.Errorf("%s: first value bytes %v, want only 0 (Confluent)", topic, f)
		}
	}
	if f := formats(ns + "_starstream.state.dim_customer"); f[0xC3] == 0 || len(f) != 1 {
		t.Errorf("state topic: first value bytes %v, want only 0xC3 (single-object encoding)", f)
	}

	// The bogus record is a dead letter naming the unknown id.
	var reasons []string
	for deadline := time.Now().Add(30 * time.Second); len(reasons) == 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if err := stream.ScanToEnd(ctx, capturetest.Brokers(), nil, ns+"dlq.dim_customer", func(m kafka.Message) error {
			for _, h := range m.Headers {
				if h.Key == "starstream.dlq.reason" {
					reasons = append(reasons, string(h.Value))
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(reasons) != 1 || !strings.Contains(reasons[0], fmt.Sprintf("unknown schema id %d", 0x7FFFFF00)) || !strings.Contains(reasons[0], "not found") {
		t.Errorf("dead letters %q, want one naming schema id %d as not found", reasons, 0x7FFFFF00)
	}
	proc.stop(t)

	wh, err := duckdb.Open(filepath.Join(dir, "warehouse.duckdb"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	_, rows, err := wh.Query(ctx, `SELECT customer_id, city FROM dim_customer WHERE is_current AND customer_id IN (?, ?) ORDER BY customer_id`, moved, late)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(rows), fmt.Sprintf("[[%d Coimbra] [%d Faro]]", moved, late); got != want {
		t.Errorf("dim_customer current rows %s, want %s", got, want)
	}
	_, n, err := wh.Query(ctx, `SELECT count(*) FROM dim_customer WHERE is_current AND customer_key <> -1`)
	if err != nil {
		t.Fatal(err)
	}
	var src int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+customers).Scan(&src); err != nil {
		t.Fatal(err)
	}
	if n[0][0] != src {
		t.Errorf("dim_customer has %v current members, the source %d customers", n[0][0], src)
	}
	t.Logf("%d customers; %s-value versions %v", src, input, versions(input+"-value"))
}

// waitRegistryTopic waits until every partition of a registry-encoded topic
// passed a marker >= lsn, decoding its records through the registry.
func waitRegistryTopic(t *testing.T, reg *stream.Registry, topic string, lsn stream.LSN) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := stream.NewAdmin(capturetest.Brokers(), nil)
	for { // the pipeline creates its output topic once it runs
		if _, err := admin.Partitions(ctx, topic); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("topic %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	streamtest.ReadAll(ctx, t, capturetest.Brokers(), topic, stream.NewRegistryCodecs(reg), lsn, nil)
}

// deleteSubjects removes the registry subjects of a test's topics.
func deleteSubjects(t *testing.T, reg *stream.Registry, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subjects, err := reg.Subjects(ctx)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	for _, s := range subjects {
		if strings.Contains(s, schema+".") {
			if err := reg.DeleteSubject(ctx, s); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
	}
}

func writeConfig(t *testing.T, path, yaml string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}
