// Package capturetest helps tests run capture against the real PostgreSQL and
// Kafka that `make up` starts: addresses from the environment, unique schemas,
// slots and publications cleaned up after the test, a running capture, and
// reading a topic back up to a watermark.
package capturetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/stream"
)

// Defaults of the local stack (deploy/local/env.sh).
const (
	DefaultDSN     = "postgres://starstream:starstream@127.0.0.1:15432/starstream?sslmode=disable"
	DefaultBrokers = "127.0.0.1:19092"
)

// DSN returns STARSTREAM_PG_DSN or the local default.
func DSN() string {
	if v := os.Getenv("STARSTREAM_PG_DSN"); v != "" {
		return v
	}
	return DefaultDSN
}

// Brokers returns STARSTREAM_KAFKA_BROKERS (comma-separated) or the local default.
func Brokers() []string {
	v := os.Getenv("STARSTREAM_KAFKA_BROKERS")
	if v == "" {
		v = DefaultBrokers
	}
	return strings.Split(v, ",")
}

// Connect opens a connection to the test database, closed at cleanup; it fails
// the test (never skips) when PostgreSQL is unreachable.
func Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN())
	if err != nil {
		t.Fatalf("postgres unreachable at %s (run `make up`): %v", capture.RedactDSN(DSN()), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// RequireKafka fails the test when no broker answers.
func RequireKafka(t testing.TB) {
	t.Helper()
	for _, b := range Brokers() {
		c, err := net.DialTimeout("tcp", b, 3*time.Second)
		if err != nil {
			t.Fatalf("kafka unreachable at %s (run `make up`): %v", b, err)
		}
		c.Close()
	}
}

// Unique returns a lower-case name unique to this test run, from prefix and the test name.
func Unique(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
	if len(name) > 30 {
		name = name[:30]
	}
	return prefix + "_" + name + "_" + hex.EncodeToString(b[:])
}

// NewSchema creates a schema unique to the test and drops it at cleanup.
func NewSchema(t testing.TB) string {
	t.Helper()
	db := Connect(t)
	schema := Unique(t, "t")
	if _, err := db.Exec(context.Background(), "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, DSN())
		if err != nil {
			t.Logf("cleanup: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("cleanup: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// Config returns a capture config for the tables of schema with a unique slot
// and publication, both dropped (with the slot's state record) at cleanup.
func Config(t testing.TB, schema string) capture.Config {
	t.Helper()
	cfg := capture.Config{
		DSN:            DSN(),
		Slot:           Unique(t, "s"),
		Publication:    Unique(t, "p"),
		Schemas:        []string{schema},
		TopicPrefix:    "cdc",
		Brokers:        Brokers(),
		StatusInterval: time.Second,
		MarkInterval:   100 * time.Millisecond,
		RetryMin:       100 * time.Millisecond,
		RetryMax:       time.Second,
	}
	t.Cleanup(func() { DropSlot(t, cfg) })
	return cfg
}

// DropSlot drops the slot (terminating a walsender still holding it), the
// publication and the slot's state record.
func DropSlot(t testing.TB, cfg capture.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close(ctx)
	for i := 0; i < 50; i++ {
		_, err = conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, cfg.Slot)
		if err == nil {
			_, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, cfg.Slot)
		}
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Logf("cleanup: drop slot %s: %v", cfg.Slot, err)
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{cfg.Publication}.Sanitize()); err != nil {
		t.Logf("cleanup: drop publication %s: %v", cfg.Publication, err)
	}
	st := cfg.StateTable
	if st == "" {
		st = "public.starstream_capture_state"
	}
	s, n, _ := strings.Cut(st, ".")
	_, _ = conn.Exec(ctx, "DELETE FROM "+pgx.Identifier{s, n}.Sanitize()+" WHERE slot_name = $1", cfg.Slot)
}

// NewWriter returns a stream.Writer on the test brokers and its codecs, closed at cleanup.
func NewWriter(t testing.TB) (*stream.Writer, *stream.Codecs) {
	t.Helper()
	RequireKafka(t)
	codecs := stream.NewCodecs()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: Brokers(), Topics: stream.TopicConfig{Partitions: 3}}, codecs, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, codecs
}

// Logger returns a logger writing into the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Running is a capture running in the background.
type Running struct {
	cancel context.CancelFunc
	done   chan error
}

// Start runs capture in the background; it is stopped at cleanup if Stop was not called.
func Start(t testing.TB, cfg capture.Config, w capture.Writer) *Running {
	t.Helper()
	c, err := capture.New(cfg, w, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.cancel(); <-r.done; r.done <- nil })
	return r
}

// Stop cancels the capture and returns what Run returned.
func (r *Running) Stop() error {
	r.cancel()
	err := <-r.done
	r.done <- err
	return err
}

// Done is closed-like: it delivers Run's result if the capture ended by itself.
func (r *Running) Done() <-chan error { return r.done }

// Fence returns the current WAL position after the caller's commits and then
// pushes WAL forward, so an idle capture receives a keepalive beyond it and
// publishes a marker >= the returned LSN. Wait for that marker to know that
// every change committed before Fence was called is in Kafka.
func Fence(t testing.TB, db *pgx.Conn) stream.LSN {
	t.Helper()
	ctx := context.Background()
	var s string
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := stream.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "SELECT pg_logical_emit_message(false, 'starstream-fence', 'x')"); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// WaitSnapshot waits until the initial snapshot of cfg's slot is recorded as
// finished. An initial snapshot interrupted by a crash finishes while
// streaming, its last rows at positions after those of changes made
// meanwhile: wait for it before taking a Fence that must cover every row.
func WaitSnapshot(t testing.TB, db *pgx.Conn, cfg capture.Config, timeout time.Duration) {
	t.Helper()
	st := cfg.StateTable
	if st == "" {
		st = "public.starstream_capture_state"
	}
	s, n, _ := strings.Cut(st, ".")
	Eventually(t, timeout, "initial snapshot of "+cfg.Slot+" finished", func() bool {
		var done bool
		_ = db.QueryRow(context.Background(), "SELECT snapshot_done FROM "+pgx.Identifier{s, n}.Sanitize()+
			" WHERE slot_name = $1", cfg.Slot).Scan(&done)
		return done
	})
}

// Record is one record of a topic: a decoded event, or a watermark marker.
type Record struct {
	Partition int
	Offset    int64
	Marker    stream.LSN // non-zero for markers
	Event     stream.Event
	Key       map[string]any
	Headers   map[string]string
	Raw       []byte // the record's value as written
}

// ReadUntil reads every partition of topic from the start until a marker >=
// watermark, and returns the records in partition then offset order. It fails
// the test if that does not happen within timeout.
func ReadUntil(t testing.TB, topic string, codecs *stream.Codecs, watermark stream.LSN, timeout time.Duration) []Record {
	t.Helper()
	recs, err := readUntil(topic, codecs, watermark, timeout)
	if err != nil {
		t.Fatalf("read %s up to watermark %s: %v", topic, watermark, err)
	}
	return recs
}

func readUntil(topic string, codecs *stream.Codecs, watermark stream.LSN, timeout time.Duration) ([]Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	admin := stream.NewAdmin(Brokers(), nil)
	var n int
	var err error
	for {
		if n, err = admin.Partitions(ctx, topic); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("topic never appeared: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if codecs == nil {
		codecs = stream.NewCodecs()
	}
	parts := make([][]Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[p], errs[p] = readPartition(ctx, topic, p, codecs, watermark)
			if errs[p] != nil {
				errs[p] = fmt.Errorf("partition %d: %w", p, errs[p])
			}
		}()
	}
	wg.Wait()
	var out []Record
	for _, recs := range parts {
		out = append(out, recs...)
	}
	return out, errors.Join(errs...)
}

func readPartition(ctx context.Context, topic string, p int, codecs *stream.Codecs, watermark stream.LSN) ([]Record, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: Brokers(), Topic: topic, Partition: p, MaxWait: time.Second, MaxBytes: 16 << 20})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return nil, err
	}
	var out []Record
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return out, fmt.Errorf("no marker >= %s after %d records: %w", watermark, len(out), err)
		}
		rec := Record{Partition: p, Offset: m.Offset, Headers: map[string]string{}, Raw: m.Value}
		for _, h := range m.Headers {
			rec.Headers[h.Key] = string(h.Value)
		}
		if lsn, ok := stream.MarkerLSN(m); ok {
			rec.Marker = lsn
			out = append(out, rec)
			if lsn >= watermark {
				return out, nil
			}
			continue
		}
		d, err := codecs.DecodeEvent(m.Value)
		if errors.Is(err, stream.ErrUnknownSchema) {
			if d.SchemaID > 0 { // Confluent wire format: the registry knows the id
				if rerr := codecs.Resolve(ctx, m.Value); rerr != nil {
					return out, fmt.Errorf("offset %d: %w", m.Offset, rerr)
				}
			} else if _, lerr := stream.LoadSchemas(ctx, Brokers(), nil, "", codecs); lerr != nil {
				return out, lerr
			}
			d, err = codecs.DecodeEvent(m.Value)
		}
		if err != nil {
			return out, fmt.Errorf("decode offset %d: %w", m.Offset, err)
		}
		rec.Event = d.Event
		if len(m.Key) > 0 && d.Event.Op != stream.OpTruncate {
			if err := codecs.Resolve(ctx, m.Key); err != nil {
				return out, fmt.Errorf("key at offset %d: %w", m.Offset, err)
			}
			if rec.Key, err = codecs.DecodeKey(m.Key); err != nil {
				return out, fmt.Errorf("decode key at offset %d: %w", m.Offset, err)
			}
			rec.Event.Key = rec.Key
		}
		out = append(out, rec)
	}
}

// Events returns the data events of records sorted by position (stable for
// equal positions, which only duplicates share).
func Events(recs []Record) []stream.Event {
	var evs []stream.Event
	for _, r := range recs {
		if r.Marker == 0 {
			evs = append(evs, r.Event)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Pos.Less(evs[j].Pos) })
	return evs
}

// SlotInfo is a row of pg_replication_slots.
type SlotInfo struct {
	ConfirmedFlush stream.LSN
	Active         bool
	WALStatus      string
}

// Slot reads the slot's row; ok is false if it does not exist.
func Slot(t testing.TB, db *pgx.Conn, slot string) (SlotInfo, bool) {
	t.Helper()
	var s SlotInfo
	var lsn, ws *string
	err := db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text, active, wal_status FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&lsn, &s.Active, &ws)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false
	}
	if err != nil {
		t.Fatal(err)
	}
	if lsn != nil {
		s.ConfirmedFlush, _ = stream.ParseLSN(*lsn)
	}
	if ws != nil {
		s.WALStatus = *ws
	}
	return s, true
}

// Eventually polls cond every 50ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
