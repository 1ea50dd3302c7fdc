package capture_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// Capture with a schema registry (the real one `make up` starts): every record
// is in the Confluent wire format with the ids of cdc.<schema>.<table>-key and
// -value, each relation change (ADD, DROP, ALTER TYPE) registers a new value
// version without stopping the stream, and a consumer that knows nothing but the
// registry decodes every version.
func TestCaptureWithSchemaRegistry(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	reg := streamtest.Registry(t)
	topic := stream.Topic("cdc", schema, "t")
	deleteSubjectsAtCleanup(t, reg, topic)
	q := pgx.Identifier{schema, "t"}.Sanitize()
	exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, a int, b text, u uuid, j jsonb, d numeric(8,3))")
	exec(t, db, "INSERT INTO "+q+" VALUES (1, 10, 'x', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}', 12345.678)")

	cfg := capturetest.Config(t, schema)
	w := registryWriter(t, reg)
	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 60*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0
	})
	// A rewrite (ALTER ... TYPE below) racing the initial snapshot restarts it.
	capturetest.WaitSnapshot(t, db, cfg, 60*time.Second)
	exec(t, db, "INSERT INTO "+q+" VALUES (2, 20, 'y', NULL, NULL, -0.5)")
	exec(t, db, "ALTER TABLE "+q+" ADD COLUMN c numeric(5,1)")
	exec(t, db, "INSERT INTO "+q+" VALUES (3, 30, 'z', NULL, 'null', 1, 1.5)")
	exec(t, db, "ALTER TABLE "+q+" DROP COLUMN a")
	exec(t, db, "INSERT INTO "+q+" VALUES (4, 'w', NULL, '[]', 2, 2.5)")
	exec(t, db, "ALTER TABLE "+q+" ALTER COLUMN b TYPE int USING length(b)")
	exec(t, db, "INSERT INTO "+q+" VALUES (5, 42, NULL, NULL, 3, 3.5)")
	exec(t, db, "UPDATE "+q+" SET c = 9.5 WHERE id = 1")
	exec(t, db, "DELETE FROM "+q+" WHERE id = 2")
	fence := capturetest.Fence(t, db)

	fresh, err := stream.NewRegistry(stream.RegistryConfig{URL: streamtest.RegistryURL(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	codecs := stream.NewRegistryCodecs(fresh)
	recs := capturetest.ReadUntil(t, topic, codecs, fence, 60*time.Second)
	select {
	case err := <-run.Done():
		t.Fatalf("capture stopped: %v", err)
	default:
	}
	ids := map[int]bool{}
	last := map[int64]map[string]any{}
	for _, r := range recs {
		if r.Marker != 0 {
			continue
		}
		if r.Raw[0] != 0 {
			t.Fatalf("record p%d@%d starts %x, not the Confluent magic byte", r.Partition, r.Offset, r.Raw[:5])
		}
		ids[int(binary.BigEndian.Uint32(r.Raw[1:5]))] = true
		id := r.Key["id"].(int64)
		last[id] = r.Event.After
		if r.Event.Op == stream.OpDelete {
			last[id] = nil
		}
	}
	t.Logf("%d records, value schema ids %v", len(last), ids)
	if len(ids) != 4 {
		t.Errorf("%d value schema ids in the topic, want 4 (initial, ADD, DROP, ALTER TYPE)", len(ids))
	}
	if got, err := reg.Versions(context.Background(), topic+"-value"); err != nil || len(got) != 4 {
		t.Errorf("versions of %s-value: %v, %v; want 4", topic, got, err)
	}
	if got, err := reg.Versions(context.Background(), topic+"-key"); err != nil || !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("versions of %s-key: %v, %v; want [1]", topic, got, err)
	}
	checks := map[int64]map[string]any{
		1: {"b": int64(1), "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": `{"k": [1, 2]}`},
		3: {"a": int64(30), "b": "z", "j": "null"},
		4: {"b": "w", "j": "[]"},
		5: {"b": int64(42)},
	}
	for id, want := range checks {
		for k, v := range want {
			if last[id][k] != v {
				t.Errorf("id %d: %s = %#v, want %#v (row %v)", id, k, last[id][k], v, last[id])
			}
		}
	}
	if row, ok := last[2]; !ok || row != nil {
		t.Errorf("id 2: %v, want deleted", row)
	}
	if c := last[1]["c"]; c == nil || c.(interface{ FloatString(int) string }).FloatString(1) != "9.5" {
		t.Errorf("id 1: c = %v, want 9.5", c)
	}
	if d := last[1]["d"]; d == nil || d.(interface{ FloatString(int) string }).FloatString(3) != "12345.678" {
		t.Errorf("id 1: d = %v, want 12345.678", d)
	}
}

// A relation change the subject's compatibility level refuses does not pass
// silently: capture keeps retrying with the registry's reason in its log and
// writes nothing of the new version, and once the operator lowers the level it
// goes on by itself, losing nothing.
func TestCaptureRefusedSchemaWaitsForTheRegistry(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	reg := streamtest.Registry(t)
	topic := stream.Topic("cdc", schema, "t")
	deleteSubjectsAtCleanup(t, reg, topic)
	q := pgx.Identifier{schema, "t"}.Sanitize()
	exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, b text)")
	exec(t, db, "INSERT INTO "+q+" VALUES (1, 'x')")

	cfg := capturetest.Config(t, schema)
	w := registryWriter(t, reg)
	var logs syncBuffer
	c, err := capture.New(cfg, w, slog.New(slog.NewTextHandler(io.MultiWriter(&logs, testLog{t}), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	codecs := stream.NewRegistryCodecs(reg)
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 60*time.Second)

	if err := reg.SetCompatibility(context.Background(), topic+"-value", "BACKWARD"); err != nil {
		t.Fatal(err)
	}
	exec(t, db, "ALTER TABLE "+q+" ALTER COLUMN b TYPE int USING length(b)")
	exec(t, db, "INSERT INTO "+q+" VALUES (2, 22)")
	capturetest.Eventually(t, 60*time.Second, "the refusal in capture's log", func() bool {
		s := logs.String()
		return strings.Contains(s, "HTTP 409") && strings.Contains(s, "register schema under subject "+topic+"-value")
	})
	select {
	case err := <-done:
		t.Fatalf("capture stopped: %v", err)
	default:
	}
	if got, _ := reg.Versions(context.Background(), topic+"-value"); len(got) != 1 {
		t.Errorf("versions while refused: %v, want 1", got)
	}

	if err := reg.SetCompatibility(context.Background(), topic+"-value", "NONE"); err != nil {
		t.Fatal(err)
	}
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 60*time.Second)
	rows := map[int64]any{}
	for _, r := range recs {
		if r.Marker == 0 {
			rows[r.Key["id"].(int64)] = r.Event.After["b"]
		}
	}
	if rows[1] != "x" || rows[2] != int64(22) {
		t.Errorf("rows after the level was lowered: %v, want 1: x, 2: 22", rows)
	}
	if got, _ := reg.Versions(context.Background(), topic+"-value"); len(got) != 2 {
		t.Errorf("versions after the level was lowered: %v, want 2", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the capture's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// deleteSubjectsAtCleanup removes the key and value subjects of topic from the
// registry when the test ends.
func deleteSubjectsAtCleanup(t *testing.T, reg *stream.Registry, topic string) {
	t.Cleanup(func() {
		for _, s := range []string{topic + "-key", topic + "-value"} {
			_ = reg.DeleteSubject(context.Background(), s)
		}
	})
}

// registryWriter is a writer in the Confluent wire format of reg, closed when
// the test ends.
func registryWriter(t *testing.T, reg *stream.Registry) *stream.Writer {
	t.Helper()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: capturetest.Brokers(), Topics: stream.TopicConfig{Partitions: 3}},
		stream.NewRegistryCodecs(reg), capturetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}
