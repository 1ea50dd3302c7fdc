package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// The tests of this file feed starstream what production will eventually feed it:
// records that are not what a topic promises, configurations with mistakes,
// services that are not there, and changes far larger than the usual ones.

// sharedBin is one starstream binary for the tests of this file that run at the
// same time: linking the 100+ MB binary once instead of once per test.
var sharedBin struct {
	mu   sync.Mutex
	dir  string
	path string
	refs int
}

// sharedBinary builds starstream once for the tests running now; the last one to
// finish removes it.
func sharedBinary(t *testing.T) string {
	t.Helper()
	sharedBin.mu.Lock()
	defer sharedBin.mu.Unlock()
	if sharedBin.refs == 0 {
		dir, err := os.MkdirTemp("", "starstream-bin-")
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "starstream")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("go build: %v\n%s", err, out)
		}
		sharedBin.dir, sharedBin.path = dir, bin
	}
	sharedBin.refs++
	t.Cleanup(func() {
		sharedBin.mu.Lock()
		defer sharedBin.mu.Unlock()
		if sharedBin.refs--; sharedBin.refs == 0 {
			os.RemoveAll(sharedBin.dir)
			sharedBin.dir, sharedBin.path = "", ""
		}
	})
	return sharedBin.path
}

// childEnv is the test's environment without STARSTREAM_* variables, which
// would override the configuration file the test writes.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STARSTREAM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// dropTopicsAtCleanup deletes, at the end of a test that passed, the topics of
// a source schema and of a namespace: a broker holding thousands of leftover
// partitions takes a minute or more to restart after a crash (it recovers every
// one of them).
func dropTopicsAtCleanup(t *testing.T, schema, ns string) {
	t.Cleanup(func() {
		if t.Failed() {
			return // evidence
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := &kafka.Client{Addr: kafka.TCP(capturetest.Brokers()...)}
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			t.Logf("cleanup: list topics: %v", err)
			return
		}
		var topics []string
		for _, tp := range md.Topics {
			if strings.HasPrefix(tp.Name, "cdc."+schema+".") || strings.HasPrefix(tp.Name, ns) {
				topics = append(topics, tp.Name)
			}
		}
		if len(topics) == 0 {
			return
		}
		if _, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics}); err != nil {
			t.Logf("cleanup: delete %d topics: %v", len(topics), err)
		}
	})
}

// closedPort returns a local TCP address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// boundedExit is how a bounded run of the binary ended.
type boundedExit struct {
	out      string
	err      error // from Wait; nil for exit status 0
	elapsed  time.Duration
	timedOut bool // still running at the limit: stopped by the test
}

// runBounded runs the binary until it exits or limit passes (then SIGTERM, and
// SIGKILL 20s later), with the test's environment minus STARSTREAM_* plus env.
func runBounded(t *testing.T, bin string, limit time.Duration, env []string, args ...string) boundedExit {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv(env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf // one writer: exec serialises the writes
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var e boundedExit
	select {
	case e.err = <-done:
		e.elapsed = time.Since(began)
	case <-time.After(limit):
		e.elapsed, e.timedOut = time.Since(began), true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case e.err = <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			e.err = <-done
		}
	}
	e.out = buf.String()
	return e
}

// yamlConfig renders sections of key: raw-YAML-value lines, sections and keys
// sorted, so a test can patch single keys of a valid configuration.
func yamlConfig(sections map[string]map[string]string) string {
	var b strings.Builder
	names := make([]string, 0, len(sections))
	for s := range sections {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		fmt.Fprintf(&b, "%s:\n", s)
		keys := make([]string, 0, len(sections[s]))
		for k := range sections[s] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s: %s\n", k, sections[s][k])
		}
	}
	return b.String()
}

// stackConfig writes dir/starstream.yaml, a configuration for the local stack
// with a schema, slot and namespace of the test's own and the warehouse
// dir/warehouse.duckdb; extra lines (a YAML fragment) are appended.
func stackConfig(t *testing.T, dir, schema, slot, extra string) string {
	t.Helper()
	return stackConfigAt(t, filepath.Join(dir, "starstream.yaml"), filepath.Join(dir, "warehouse.duckdb"), schema, slot, extra)
}

// stackConfigAt is stackConfig with the file and the warehouse named.
func stackConfigAt(t *testing.T, path, warehouse, schema, slot, extra string) string {
	t.Helper()
	writeConfig(t, path, yamlConfig(stackSections(schema, slot, warehouse))+extra)
	return path
}

// stackSections is the configuration stackConfigAt writes, as yamlConfig
// sections a test can add keys to.
func stackSections(schema, slot, warehouse string) map[string]map[string]string {
	return map[string]map[string]string{
		"postgres":  {"dsn": fmt.Sprintf("%q", capturetest.DSN()), "schema": schema, "slot": slot, "publication": slot},
		"kafka":     {"brokers": "[" + strings.Join(capturetest.Brokers(), ", ") + "]"},
		"pipelines": {"namespace": schema + "."},
		"warehouse": {"duckdb_path": warehouse},
		"http":      {"addr": `""`},
	}
}

// requireAlive fails the test if the process has exited.
func requireAlive(t *testing.T, p *process, what string) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("starstream exited %s: %v", what, err)
	default:
	}
}

// waitTopic waits until every partition of topic passed a marker >= lsn.
func waitTopic(t *testing.T, topic string, lsn stream.LSN, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	admin := stream.NewAdmin(capturetest.Brokers(), nil)
	for { // the pipeline creates its output topic once it runs
		_, err := admin.Partitions(ctx, topic)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	streamtest.ReadAll(ctx, t, capturetest.Brokers(), topic, stream.NewCodecs(), lsn, nil)
}

// lastMarkers returns the highest watermark marker of each partition of a topic.
func lastMarkers(ctx context.Context, topic string) (map[int]stream.LSN, error) {
	n, err := stream.NewAdmin(capturetest.Brokers(), nil).Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int]stream.LSN{}
	for p := 0; p < n; p++ {
		out[p] = 0
	}
	err = stream.ScanToEnd(ctx, capturetest.Brokers(), nil, topic, func(m kafka.Message) error {
		if lsn, ok := stream.MarkerLSN(m); ok && lsn > out[m.Partition] {
			out[m.Partition] = lsn
		}
		return nil
	})
	return out, err
}

// insertCustomer adds a customer and returns its id.
func insertCustomer(t *testing.T, db *pgx.Conn, schema, name, city string) int64 {
	t.Helper()
	var id int64
	err := db.QueryRow(context.Background(), `INSERT INTO `+pgx.Identifier{schema, "customers"}.Sanitize()+`
		(email, full_name, city, state, country) VALUES ($1, $2, $3, 'ZZ', 'US') RETURNING customer_id`,
		strings.ToLower(strings.ReplaceAll(name, " ", "."))+"@example.com", name, city).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Records that are not what the topic promises — not Avro at all, Avro naming a
// schema nobody registered, a record cut in half — go to the pipeline's
// dead-letter topic with a reason that names the problem and where it came from;
// the pipeline keeps running, and the good changes before, between and after
// them reach the warehouse.
func TestBadInputPoisonRecordsAreDeadLettered(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 21)
	dir := t.TempDir()
	ns := schema + "."
	config := stackConfig(t, dir, schema, slot, "")
	dropTopicsAtCleanup(t, schema, ns)

	proc := start(t, bin, config, "run", "--capture", "--pipelines", "dim_customer")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, db), 3*time.Minute)

	// A real record of the topic, to truncate.
	input := stream.Topic("cdc", schema, "customers")
	real := firstRecord(t, input)

	before := insertCustomer(t, db, schema, "Before Poison", "Lisbon")
	fp := rand.Uint64() | 1 // never a registered schema's fingerprint, in all likelihood
	unknown := append([]byte{0xC3, 0x01}, binary.LittleEndian.AppendUint64(nil, fp)...)
	unknown = append(unknown, real.Value[10:]...)
	poison := []struct {
		name       string
		key, value []byte
		reason     []string // every one must be in the reason header
	}{
		{"not avro", []byte("not-avro-key"), []byte(`{"customer_id": 1, "json": "is not avro"}`),
			[]string{input, "undecodable record", "neither avro single-object encoding nor the Confluent wire format"}},
		{"unknown fingerprint", real.Key, unknown,
			[]string{input, "unknown schema fingerprint", fmt.Sprintf("%016x", fp)}},
		{"truncated", real.Key, real.Value[:len(real.Value)/2],
			[]string{input, "undecodable record", "short buffer"}},
	}
	for i, p := range poison {
		writeToPartition(t, input, i%3, kafka.Message{Key: p.key, Value: p.value})
	}
	// Good changes after the poison, in the same topic: an update and an insert.
	if _, err := db.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "customers"}.Sanitize()+` SET city = 'Porto' WHERE customer_id = $1`, before); err != nil {
		t.Fatal(err)
	}
	after := insertCustomer(t, db, schema, "After Poison", "Faro")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, db), 3*time.Minute)
	requireAlive(t, proc, "after the poison records")

	// Dead letters are written before the watermark that covers them advances;
	// a topic just created may take a moment to show in the broker's metadata.
	dlq := map[string]kafka.Message{}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := stream.ScanToEnd(ctx, capturetest.Brokers(), nil, ns+"dlq.dim_customer", func(m kafka.Message) error {
			dlq[string(m.Value)] = m
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(dlq) >= len(poison) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(dlq) != len(poison) {
		t.Errorf("%s holds %d records, want the %d poison records", ns+"dlq.dim_customer", len(dlq), len(poison))
	}
	for _, p := range poison {
		m, ok := dlq[string(p.value)]
		if !ok {
			t.Errorf("%s: not in %sdlq.dim_customer", p.name, ns)
			continue
		}
		h := map[string]string{}
		for _, kv := range m.Headers {
			h[kv.Key] = string(kv.Value)
		}
		t.Logf("%s: rule=%q reason=%q source=%q", p.name, h["starstream.dlq.rule"], h["starstream.dlq.reason"], h["starstream.dlq.source"])
		if !bytes.Equal(m.Key, p.key) {
			t.Errorf("%s: dead letter key %q, want the original %q", p.name, m.Key, p.key)
		}
		for _, want := range p.reason {
			if !strings.Contains(h["starstream.dlq.reason"], want) {
				t.Errorf("%s: reason %q does not mention %q", p.name, h["starstream.dlq.reason"], want)
			}
		}
		if !strings.HasPrefix(h["starstream.dlq.source"], input+"[") {
			t.Errorf("%s: source header %q does not name %s", p.name, h["starstream.dlq.source"], input)
		}
		if h["starstream.dlq.rule"] == "" || h["starstream.dlq.time"] == "" {
			t.Errorf("%s: rule or time header missing: %v", p.name, h)
		}
	}

	// Still running: one more change goes through.
	last := insertCustomer(t, db, schema, "Still Running", "Braga")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, db), 3*time.Minute)
	requireAlive(t, proc, "after the poison records")
	proc.stop(t)

	wh, err := duckdb.Open(filepath.Join(dir, "warehouse.duckdb"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	_, rows, err := wh.Query(ctx, `SELECT customer_id, city FROM dim_customer WHERE is_current AND customer_id IN (?, ?, ?) ORDER BY customer_id`, before, after, last)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(rows), fmt.Sprintf("[[%d Porto] [%d Faro] [%d Braga]]", before, after, last); got != want {
		t.Errorf("dim_customer current rows %s, want %s", got, want)
	}
	_, n, err := wh.Query(ctx, `SELECT count(*) FROM dim_customer WHERE is_current AND customer_key <> -1`)
	if err != nil {
		t.Fatal(err)
	}
	var src int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "customers"}.Sanitize()).Scan(&src); err != nil {
		t.Fatal(err)
	}
	if n[0][0] != src {
		t.Errorf("dim_customer has %v current members, the source %d customers", n[0][0], src)
	}
}

// A marker may follow a record above it in the same partition: the marker's
// contract is that everything at or below its LSN came before it, and capture
// does write such markers while a later transaction's write is in flight (the
// chaos rounds caught cdc.<schema>.orders[1] holding @1305 a change at
// 4/BE794960, then @1306 a marker 4/BE7947D7). A pipeline that releases up to
// that marker must still resume before the record after a crash; this test
// builds the case by hand: capture stopped, a change above every marker, then a
// lower marker behind it; the pipeline releases up to the marker, is SIGKILLed,
// a marker above the change arrives, and the restarted pipeline must apply it.
func TestBadInputRecordAboveLaterMarkerSurvivesRestart(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 34)
	dir := t.TempDir()
	ns := schema + "."
	warehouse := filepath.Join(dir, "warehouse.duckdb")
	configs := map[string]string{}
	for _, name := range []string{"capture", "pipelines"} {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		configs[name] = stackConfigAt(t, filepath.Join(d, "starstream.yaml"), warehouse, schema, slot, "")
	}
	dropTopicsAtCleanup(t, schema, ns)

	capture := start(t, bin, configs["capture"], "capture")
	proc := start(t, bin, configs["pipelines"], "run", "--pipelines", "dim_customer")
	waitTopic(t, ns+"dim.customer", capturetest.Fence(t, db), 3*time.Minute)
	capture.stop(t) // from here on the test is the only producer

	input := stream.Topic("cdc", schema, "customers")
	marks, err := lastMarkers(ctx, input)
	if err != nil {
		t.Fatal(err)
	}
	var top stream.LSN
	for _, m := range marks {
		top = max(top, m)
	}
	above, below := top+0x1000, top+1
	real := firstRecord(t, input)
	change := withPosition(t, real, above, "Marker Test City")
	writeToPartition(t, input, real.Partition, change)
	for p := range marks {
		writeToPartition(t, input, p, markerAt(input, p, below))
	}
	waitTopic(t, ns+"dim.customer", below, time.Minute) // released up to the lower marker, checkpointed
	proc.kill()
	for p := range marks {
		writeToPartition(t, input, p, markerAt(input, p, above))
	}
	proc = start(t, bin, configs["pipelines"], "run", "--pipelines", "dim_customer")
	waitTopic(t, ns+"dim.customer", above, time.Minute)
	proc.stop(t)

	wh, err := duckdb.Open(warehouse, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	id := change.Key // for the message only
	_, rows, err := wh.Query(ctx, `SELECT customer_id, city, source_lsn FROM dim_customer WHERE is_current AND city = 'Marker Test City'`)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Errorf("the change at %s (%s[%d], before a marker at %s) is not in dim_customer after the restart: current rows %v (key %q)",
			above, input, real.Partition, below, rows, id)
	}
}

// withPosition re-encodes a change record of a capture topic as an update at
// lsn (seq 0) whose city is city.
func withPosition(t *testing.T, m kafka.Message, lsn stream.LSN, city string) kafka.Message {
	t.Helper()
	codecs := stream.NewCodecs()
	if _, err := stream.LoadSchemas(context.Background(), capturetest.Brokers(), nil, "", codecs); err != nil {
		t.Fatal(err)
	}
	fp, err := stream.Fingerprint(m.Value)
	if err != nil {
		t.Fatal(err)
	}
	codec, ok := codecs.Lookup(fp)
	if !ok {
		t.Fatalf("schema %016x not in the schema topic", fp)
	}
	native, _, err := codec.NativeFromSingle(m.Value)
	if err != nil {
		t.Fatal(err)
	}
	env := native.(map[string]any)
	env["op"] = string(stream.OpUpdate)
	env["lsn"] = int64(lsn)
	env["seq"] = int64(0)
	set := false
	if after, ok := env["after"].(map[string]any); ok { // union: {"<row record>": row}
		for _, row := range after {
			if r, ok := row.(map[string]any); ok {
				if c, ok := r["city"].(map[string]any); ok { // nullable: {"string": value}
					for branch := range c {
						c[branch] = city
						set = true
					}
				} else if _, ok := r["city"]; ok {
					r["city"], set = city, true
				}
			}
		}
	}
	if !set {
		t.Fatalf("no city in %v", env["after"])
	}
	value, err := codec.SingleFromNative(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	var headers []kafka.Header
	for _, h := range m.Headers {
		switch h.Key {
		case stream.HeaderLSN:
			h.Value = []byte(fmt.Sprint(uint64(lsn)))
		case stream.HeaderSeq:
			h.Value = []byte("0")
		}
		headers = append(headers, h)
	}
	return kafka.Message{Key: m.Key, Value: value, Headers: headers}
}

// markerAt is a watermark marker as capture writes it.
func markerAt(topic string, partition int, lsn stream.LSN) kafka.Message {
	return kafka.Message{Topic: topic, Key: []byte("__starstream_watermark"), Headers: []kafka.Header{
		{Key: stream.HeaderControl, Value: []byte(stream.ControlWatermark)},
		{Key: stream.HeaderWatermark, Value: []byte(fmt.Sprint(uint64(lsn)))},
		{Key: "starstream.partition", Value: []byte(fmt.Sprint(partition))},
	}}
}

// firstRecord returns the first data record (not a marker) of a topic.
func firstRecord(t *testing.T, topic string) kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var found *kafka.Message
	errFound := errors.New("found")
	err := stream.ScanToEnd(ctx, capturetest.Brokers(), nil, topic, func(m kafka.Message) error {
		if _, marker := stream.MarkerLSN(m); marker || len(m.Value) < 20 {
			return nil
		}
		found = &m
		return errFound
	})
	if found == nil {
		t.Fatalf("no data record in %s: %v", topic, err)
	}
	return *found
}

// writeToPartition appends a message to one partition, as a misbehaving producer would.
func writeToPartition(t *testing.T, topic string, partition int, m kafka.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", capturetest.Brokers()[0], topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.WriteMessages(m); err != nil {
		t.Fatal(err)
	}
}

// A configuration with a mistake stops the binary at once, with a non-zero exit
// and a message that names the key (or variable) at fault. The valid part of each
// configuration points at closed ports and a namespace of the test's own, so a
// mistake that slips through fails later instead of touching shared topics.
func TestBadInputConfigFailsFast(t *testing.T) {
	t.Parallel()
	const plantedSASL = "STARSTREAM_KAFKA_SASL_PASSWORD=Pl4nted-SASL-in-config-test"
	bin := sharedBinary(t)
	dir := t.TempDir()
	ns := capturetest.Unique(t, "ns") + "."
	base := func() map[string]map[string]string {
		return map[string]map[string]string{
			"postgres":  {"dsn": fmt.Sprintf("%q", "postgres://u:unused-password@"+closedPort(t)+"/db?sslmode=disable"), "schema": "nothing_here"},
			"kafka":     {"brokers": "[" + closedPort(t) + "]"},
			"pipelines": {"namespace": ns},
			"warehouse": {"duckdb_path": filepath.Join(dir, "warehouse.duckdb")},
			"http":      {"addr": `""`},
		}
	}
	for _, tc := range []struct {
		name             string
		section, key, to string   // the patched key and its raw YAML value
		env              []string // or a variable
		want             []string // every one in the message
		capture          bool     // also through capture (validation is shared by every command)
	}{
		{name: "unknown key", section: "postgres", key: "slott", to: "s1", want: []string{"slott"}, capture: true},
		{name: "unknown section", section: "kafak", key: "brokers", to: "[127.0.0.1:1]", want: []string{"kafak"}},
		{name: "broker without port", section: "kafka", key: "brokers", to: "[localhost]", want: []string{"kafka.brokers", "localhost"}, capture: true},
		{name: "broker port out of range", section: "kafka", key: "brokers", to: `["127.0.0.1:99999"]`, want: []string{"kafka.brokers", "127.0.0.1:99999"}},
		{name: "broker port not a number", section: "kafka", key: "brokers", to: `["127.0.0.1:abc"]`, want: []string{"kafka.brokers", "127.0.0.1:abc"}},
		{name: "text for a number", section: "kafka", key: "partitions", to: "many", want: []string{"partitions"}},
		{name: "fraction for a whole number", section: "pipelines", key: "max_batch", to: "2.5", want: []string{"max_batch"}},
		{name: "negative batch", section: "pipelines", key: "max_batch", to: "-3", want: []string{"pipelines.max_batch"}},
		{name: "zero partitions", section: "kafka", key: "partitions", to: "0", want: []string{"kafka.partitions"}},
		{name: "fault rate above 1", section: "faults", key: "sink_fail_rate", to: "2", want: []string{"sink_fail_rate"}},
		{name: "unknown log level", section: "log", key: "level", to: "loud", want: []string{"log.level", "loud"}},
		{name: "http addr without port", section: "http", key: "addr", to: "8080", want: []string{"http.addr"}},
		{name: "env text for a number", env: []string{"STARSTREAM_KAFKA_PARTITIONS=many"}, want: []string{"STARSTREAM_KAFKA_PARTITIONS"}},
		{name: "env broker without port", env: []string{"STARSTREAM_KAFKA_BROKERS=nohost"}, want: []string{"kafka.brokers", "nohost"}},
		{name: "unknown sasl mechanism", section: "kafka", key: "sasl_mechanism", to: "GSSAPI", env: []string{plantedSASL},
			want: []string{"kafka.sasl_mechanism", "GSSAPI"}, capture: true},
		{name: "sasl without username", section: "kafka", key: "sasl_mechanism", to: "SCRAM-SHA-512", env: []string{plantedSASL},
			want: []string{"kafka.sasl_username"}},
		{name: "sasl password file missing", section: "kafka", key: "sasl_password_file", to: "/nonexistent/kafka-password",
			want: []string{"kafka.sasl_password_file", "sasl_mechanism is empty"}},
		{name: "tls CA file missing", section: "kafka", key: "tls_ca_file", to: "/nonexistent/ca.crt", want: []string{"kafka.tls_ca_file"}, capture: true},
		{name: "tls not a boolean", section: "kafka", key: "tls", to: "maybe", want: []string{"kafka.tls", "maybe"}},
		{name: "env tls not a boolean", env: []string{"STARSTREAM_KAFKA_TLS=perhaps"}, want: []string{"STARSTREAM_KAFKA_TLS"}},
		{name: "unknown sslmode", section: "postgres", key: "sslmode", to: "sometimes", want: []string{"postgres.sslmode", "sometimes"}, capture: true},
		{name: "sslrootcert missing", section: "postgres", key: "sslrootcert", to: "/nonexistent/root.crt", want: []string{"postgres.sslrootcert"}},
	} {
		commands := []string{"run"}
		if tc.capture {
			commands = append(commands, "capture")
		}
		for _, command := range commands {
			t.Run(strings.ReplaceAll(tc.name, " ", "_")+"/"+command, func(t *testing.T) {
				t.Parallel()
				sections := base()
				if tc.section != "" {
					if sections[tc.section] == nil {
						sections[tc.section] = map[string]string{}
					}
					sections[tc.section][tc.key] = tc.to
				}
				file := filepath.Join(t.TempDir(), "bad.yaml")
				if err := os.WriteFile(file, []byte(yamlConfig(sections)), 0o600); err != nil {
					t.Fatal(err)
				}
				e := runBounded(t, bin, 20*time.Second, tc.env, "--config", file, command)
				t.Logf("%s in %v: %v\n%s", command, e.elapsed.Round(time.Millisecond), e.err, tail(e.out, 5))
				switch {
				case e.timedOut:
					t.Errorf("still running after %v", e.elapsed.Round(time.Second))
				case e.err == nil:
					t.Errorf("exited 0")
				case e.elapsed > 10*time.Second:
					t.Errorf("took %v to fail: not at once", e.elapsed.Round(time.Millisecond))
				}
				for _, w := range tc.want {
					if !strings.Contains(e.out, w) {
						t.Errorf("message does not name %q", w)
					}
				}
				for _, secret := range []string{"unused-password", strings.TrimPrefix(plantedSASL, "STARSTREAM_KAFKA_SASL_PASSWORD=")} {
					if strings.Contains(e.out, secret) {
						t.Errorf("message shows the password %q", secret)
					}
				}
			})
		}
	}
}

// Services that are not there (PostgreSQL or Kafka on a closed port) make
// capture and run fail within a bounded time, with a message naming the address
// and never the password.
func TestBadInputUnreachableServicesFailInBoundedTime(t *testing.T) {
	t.Parallel()
	bin := sharedBinary(t)
	const limit = 2 * time.Minute
	password := "Pl4nted-" + strings.ToUpper(capturetest.Unique(t, "pw")) + "-S3cret"
	up := capturetest.DSN()
	deadPG := closedPort(t)
	deadPGDSN := "postgres://starstream:" + password + "@" + deadPG + "/starstream?sslmode=disable"
	deadKafka := closedPort(t)

	// capture with Kafka down needs a real schema and slot; both cleaned up.
	schema := capturetest.NewSchema(t)
	if err := shop.Create(context.Background(), capturetest.Connect(t), schema); err != nil {
		t.Fatal(err)
	}
	slot := capturetest.Unique(t, "s")
	dropTopicsAtCleanup(t, schema, schema+".")
	t.Cleanup(func() { capturetest.DropSlot(t, capturetestConfig(schema, slot)) })

	for _, tc := range []struct {
		name, command, dsn, brokers, address string
	}{
		{"postgres closed/capture", "capture", deadPGDSN, capturetest.Brokers()[0], deadPG},
		{"kafka closed/capture", "capture", up, deadKafka, deadKafka},
		{"kafka closed, postgres closed/run", "run", deadPGDSN, deadKafka, deadKafka},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			file := filepath.Join(dir, "c.yaml")
			yaml := yamlConfig(map[string]map[string]string{
				"postgres":  {"dsn": fmt.Sprintf("%q", tc.dsn), "schema": schema, "slot": slot, "publication": slot},
				"kafka":     {"brokers": "[" + tc.brokers + "]"},
				"pipelines": {"namespace": schema + "."},
				"warehouse": {"duckdb_path": filepath.Join(dir, "warehouse.duckdb")},
				"http":      {"addr": `""`},
			})
			if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			e := runBounded(t, bin, limit, nil, "--config", file, tc.command)
			last := tail(strings.TrimSpace(e.out), 3)
			t.Logf("%s: after %v: exit %v, timed out %v; last lines:\n%s", tc.name, e.elapsed.Round(time.Millisecond), e.err, e.timedOut, last)
			if e.timedOut {
				t.Errorf("%s: still running after %v (want a failure within %v)", tc.command, e.elapsed.Round(time.Second), limit)
			} else if e.err == nil {
				t.Errorf("%s: exited 0", tc.command)
			}
			if strings.Contains(e.out, password) {
				t.Errorf("the password appears in the output")
			}
			if msg := finalMessage(e.out); !strings.Contains(msg, tc.address) {
				t.Errorf("final message %q does not name the address %s", msg, tc.address)
			}
		})
	}
}

// finalMessage is the message a failed run ends with ("starstream: ..."), or the
// last line when it was stopped.
func finalMessage(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "starstream: ") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// bigTxRows is the size of the big transaction of TestBadInputHugeChanges:
// 100,000 in `make test`; the chaos build tag runs the 1,000,000-row version.
const bigTxRows = 100_000

// A 10 MB row and a 100,000-row transaction pass through capture, the
// dimension and the fact: every row arrives once.
func TestBadInputHugeChanges(t *testing.T) {
	t.Parallel()
	hugeChanges(t, bigTxRows, 10<<20)
}

// hugeChanges writes one product with a description of rowBytes and one
// transaction of an order with rows items, then checks dim_product and fact_sales.
// Capture and the pipelines run as separate processes, so each one's peak
// memory is reported (a figure, not a bound: memory targets are benchmarks').
func hugeChanges(t *testing.T, rows, rowBytes int) {
	bin := sharedBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 5)
	dir := t.TempDir()
	ns := schema + "."
	warehouse := filepath.Join(dir, "warehouse.duckdb")
	configs := map[string]string{}
	for _, name := range []string{"capture", "pipelines"} {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		configs[name] = stackConfigAt(t, filepath.Join(d, "starstream.yaml"), warehouse, schema, slot, "")
	}
	dropTopicsAtCleanup(t, schema, ns)
	s := func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }

	capture := start(t, bin, configs["capture"], "capture")
	proc := start(t, bin, configs["pipelines"], "run", "--pipelines", "fact_sales")
	waitTopic(t, ns+"fact.sales", capturetest.Fence(t, db), 3*time.Minute)

	// The big row: a new product with a description of rowBytes (incompressible
	// enough that TOAST does not make it small), then a price change that leaves
	// the description unchanged (a TOAST pointer in the WAL), then a sale of it.
	began := time.Now()
	var seller, customer, product int64
	if err := db.QueryRow(ctx, `SELECT min(seller_id) FROM `+s("sellers")).Scan(&seller); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT min(customer_id) FROM `+s("customers")).Scan(&customer); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `INSERT INTO `+s("products")+` (seller_id, sku, name, category, list_price, unit_cost, description)
		SELECT $1, 'HUGE-1', 'Huge description', 'Books', 12.50, 3.25,
			(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, $2::int / 32) g)
		RETURNING product_id`, seller, rowBytes).Scan(&product); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE `+s("products")+` SET list_price = 13.75 WHERE product_id = $1`, product); err != nil {
		t.Fatal(err)
	}
	var small int64
	if err := db.QueryRow(ctx, `WITH o AS (INSERT INTO `+s("orders")+` (customer_id) VALUES ($1) RETURNING order_id)
		INSERT INTO `+s("order_items")+` (order_id, product_id, seller_id, quantity, unit_price)
		SELECT order_id, $2, $3, 2, 13.75 FROM o RETURNING order_id`, customer, product, seller).Scan(&small); err != nil {
		t.Fatal(err)
	}
	// The big transaction: one order with rows items, in one statement.
	var big int64
	if err := db.QueryRow(ctx, `WITH o AS (INSERT INTO `+s("orders")+` (customer_id) VALUES ($1) RETURNING order_id),
		i AS (INSERT INTO `+s("order_items")+` (order_id, product_id, seller_id, quantity, unit_price, discount)
			SELECT o.order_id, p.product_id, p.seller_id, 1 + g % 3, p.list_price, 0
			FROM o, generate_series(1, $2::int) g, (SELECT product_id, seller_id, list_price FROM `+s("products")+` ORDER BY product_id LIMIT 1) p)
		SELECT order_id FROM o`, customer, rows).Scan(&big); err != nil {
		t.Fatal(err)
	}
	written := time.Since(began)
	fence := capturetest.Fence(t, db)
	waitTopic(t, ns+"fact.sales", fence, 10*time.Minute)
	through := time.Since(began)
	requireAlive(t, capture, "after the huge changes")
	requireAlive(t, proc, "after the huge changes")
	captureRSS, rss := childPeakRSS(capture.cmd.Process.Pid), childPeakRSS(proc.cmd.Process.Pid)
	capture.stop(t)
	proc.stop(t)
	t.Logf("%d-byte row and %d-row transaction: written in %v, in fact_sales after %v; peak RSS: capture %d MiB, pipelines %d MiB (GOMEMLIMIT=%q, STARSTREAM_MEMORY_LIMIT=%q)",
		rowBytes, rows, written.Round(time.Millisecond), through.Round(time.Millisecond), captureRSS>>10, rss>>10,
		os.Getenv("GOMEMLIMIT"), os.Getenv("STARSTREAM_MEMORY_LIMIT"))

	wh, err := duckdb.Open(warehouse, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	_, got, err := wh.Query(ctx, `SELECT count(*), count(DISTINCT order_item_id), sum(quantity), count(*) FILTER (WHERE product_key = -1 OR customer_key = -1)
		FROM fact_sales WHERE order_id = ?`, big)
	if err != nil {
		t.Fatal(err)
	}
	var wantQty int64
	if err := db.QueryRow(ctx, `SELECT sum(quantity) FROM `+s("order_items")+` WHERE order_id = $1`, big).Scan(&wantQty); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]any{int64(rows), int64(rows), wantQty, int64(0)}); fmt.Sprint(got[0]) != want {
		t.Errorf("fact_sales of the big order: [rows distinct quantity unknown-keys] = %v, want %s", got[0], want)
	}
	_, prod, err := wh.Query(ctx, `SELECT CAST(list_price AS VARCHAR), product_key FROM dim_product WHERE product_id = ? AND is_current`, product)
	if err != nil {
		t.Fatal(err)
	}
	if len(prod) != 1 || !sameNumber(prod[0][0], "13.75") {
		t.Fatalf("dim_product current version of the huge product: %v, want list_price 13.75", prod)
	}
	_, sale, err := wh.Query(ctx, `SELECT product_key FROM fact_sales WHERE order_id = ?`, small)
	if err != nil {
		t.Fatal(err)
	}
	if len(sale) != 1 || sale[0][0] != prod[0][1] {
		t.Errorf("fact_sales of the huge product's order: %v, want product_key %v", sale, prod[0][1])
	}
	var descLen int
	if err := db.QueryRow(ctx, `SELECT octet_length(description) FROM `+s("products")+` WHERE product_id = $1`, product).Scan(&descLen); err != nil || descLen < rowBytes-32 {
		t.Errorf("the source description is %d bytes (%v), want about %d", descLen, err, rowBytes)
	}
}

// childPeakRSS is a process's peak resident set in KiB (VmHWM), as Linux
// reports it; -1 when unknown.
func childPeakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kib); err == nil {
				return kib
			}
		}
	}
	return -1
}

// sameNumber compares a warehouse decimal rendering with a number.
func sameNumber(v any, want string) bool {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprint(v), "0"), ".")
	return s == strings.TrimRight(strings.TrimRight(want, "0"), ".")
}
