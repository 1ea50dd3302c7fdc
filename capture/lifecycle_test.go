package capture_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

// TestRestartResumes: stop capture, change rows while it is down, start it
// again: every change is present, nothing is snapshotted twice, and a change
// sent twice carries the same position and content.
func TestRestartResumes(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "kv"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (k int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, 0 FROM generate_series(1, 10) g")
	cfg := capturetest.Config(t, schema)
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "kv")

	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 30*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	for i := 11; i <= 30; i++ {
		exec(t, db, "INSERT INTO "+tbl+" VALUES ($1, 1)", i)
	}
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 60*time.Second)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	// While capture is down.
	for i := 31; i <= 60; i++ {
		exec(t, db, "INSERT INTO "+tbl+" VALUES ($1, 2)", i)
	}
	exec(t, db, "UPDATE "+tbl+" SET v = v + 10 WHERE k % 3 = 0")
	exec(t, db, "DELETE FROM "+tbl+" WHERE k % 7 = 0")

	run = capturetest.Start(t, cfg, w)
	for i := 61; i <= 70; i++ {
		exec(t, db, "INSERT INTO "+tbl+" VALUES ($1, 3)", i)
	}
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 60*time.Second)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}

	state := map[int64]int64{}
	byPos := map[stream.Position]string{}
	snaps := 0
	for _, ev := range capturetest.Events(recs) {
		desc := fmt.Sprintf("%s %v %v", ev.Op, ev.Key, ev.After)
		if prev, dup := byPos[ev.Pos]; dup {
			if prev != desc {
				t.Fatalf("position %s carries two different changes: %s and %s", ev.Pos, prev, desc)
			}
			continue // at-least-once duplicate
		}
		byPos[ev.Pos] = desc
		k := ev.Key["k"].(int64)
		switch ev.Op {
		case stream.OpSnapshot:
			snaps++
			state[k] = ev.After["v"].(int64)
		case stream.OpInsert, stream.OpUpdate:
			state[k] = ev.After["v"].(int64)
		case stream.OpDelete:
			delete(state, k)
		}
	}
	if snaps != 10 {
		t.Fatalf("%d snapshot rows, want 10 (no second snapshot)", snaps)
	}
	assertTable(t, db, tbl, state)
}

func assertTable(t *testing.T, db *pgx.Conn, tbl string, state map[int64]int64) {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT k, v FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]int64{}
	for rows.Next() {
		var k, v int32
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		want[int64(k)] = int64(v)
	}
	if len(want) != len(state) {
		t.Fatalf("replayed %d rows, table has %d", len(state), len(want))
	}
	for k, v := range want {
		if got, ok := state[k]; !ok || got != v {
			t.Fatalf("key %d: replayed %v (present %v), table has %d", k, got, ok, v)
		}
	}
}

// TestMarkersIdle: every partition of every captured topic gets markers, and
// they (and confirmed_flush_lsn) keep advancing while only an uncaptured
// table is written, so WAL is not retained behind the idle slot.
func TestMarkersIdle(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	other := capturetest.NewSchema(t)
	exec(t, db, "CREATE TABLE "+pgx.Identifier{schema, "quiet"}.Sanitize()+" (id int PRIMARY KEY)")
	exec(t, db, "CREATE TABLE "+pgx.Identifier{schema, "quiet2"}.Sanitize()+" (id int PRIMARY KEY)")
	busy := pgx.Identifier{other, "busy"}.Sanitize()
	exec(t, db, "CREATE TABLE "+busy+" (id serial PRIMARY KEY, pad text)")
	cfg := capturetest.Config(t, schema)
	w, codecs := capturetest.NewWriter(t)
	capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 30*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	first, _ := capturetest.Slot(t, db, cfg.Slot)

	for round := 0; round < 3; round++ {
		for i := 0; i < 20; i++ {
			exec(t, db, "INSERT INTO "+busy+" (pad) SELECT repeat('x', 1000) FROM generate_series(1, 50)")
		}
		fence := capturetest.Fence(t, db)
		for _, table := range []string{"quiet", "quiet2"} {
			recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, table), codecs, fence, 30*time.Second)
			reached := map[int]bool{}
			for _, r := range recs {
				if r.Marker == 0 {
					t.Fatalf("%s has a data record at offset %d", table, r.Offset)
				}
				if r.Marker >= fence {
					reached[r.Partition] = true
				}
			}
			if len(reached) != 3 {
				t.Fatalf("%s: marker >= %s in %d partitions, want 3", table, fence, len(reached))
			}
		}
		capturetest.Eventually(t, 15*time.Second, "confirmed_flush_lsn past the fence", func() bool {
			s, _ := capturetest.Slot(t, db, cfg.Slot)
			return s.ConfirmedFlush >= fence
		})
	}
	last, _ := capturetest.Slot(t, db, cfg.Slot)
	t.Logf("confirmed_flush_lsn moved from %s to %s while captured tables were idle", first.ConfirmedFlush, last.ConfirmedFlush)
}

// gatedWriter holds Write until opened, to observe what is confirmed meanwhile.
type gatedWriter struct {
	capture.Writer
	mu     sync.Mutex
	closed bool
	open   chan struct{}
	writes int
}

func (g *gatedWriter) Write(ctx context.Context, evs []stream.Event) error {
	g.mu.Lock()
	closed, ch := g.closed, g.open
	g.writes++
	g.mu.Unlock()
	if closed {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Writer.Write(ctx, evs)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed, g.open = true, make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedWriter) release() {
	g.mu.Lock()
	g.closed = false
	close(g.open)
	g.mu.Unlock()
}

// TestConfirmAfterKafkaAck: while Kafka has not acknowledged a transaction,
// confirmed_flush_lsn stays before it, even across keepalives and status
// updates; once acknowledged, it moves past it.
func TestConfirmAfterKafkaAck(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "t"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY)")
	cfg := capturetest.Config(t, schema)
	sw, codecs := capturetest.NewWriter(t)
	gw := &gatedWriter{Writer: sw}
	capturetest.Start(t, cfg, gw)
	capturetest.Eventually(t, 30*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	capturetest.ReadUntil(t, stream.Topic("cdc", schema, "t"), codecs, capturetest.Fence(t, db), 30*time.Second)

	gw.close()
	exec(t, db, "INSERT INTO "+tbl+" VALUES (1)")
	// Keepalives and status updates go on meanwhile (StatusInterval is 1s),
	// and other tests write WAL: confirmed_flush_lsn may move up to, never
	// past, the start of the held transaction's commit record.
	var held stream.LSN
	for i := 0; i < 3; i++ {
		capturetest.Fence(t, db)
		time.Sleep(time.Second)
		s, _ := capturetest.Slot(t, db, cfg.Slot)
		held = max(held, s.ConfirmedFlush)
	}
	gw.release()
	fence := capturetest.Fence(t, db)
	capturetest.Eventually(t, 15*time.Second, "confirmed_flush_lsn past the transaction", func() bool {
		s, _ := capturetest.Slot(t, db, cfg.Slot)
		return s.ConfirmedFlush >= fence
	})
	recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, "t"), codecs, fence, 30*time.Second)
	evs := capturetest.Events(recs)
	if len(evs) != 1 || evs[0].Op != stream.OpInsert {
		t.Fatalf("got %v, want the one insert", evs)
	}
	if held > evs[0].Pos.LSN {
		t.Fatalf("while Kafka held the transaction committed at %s, confirmed_flush_lsn reached %s", evs[0].Pos.LSN, held)
	}
}

// TestSlotLostIsTerminal: a slot that capture created and snapshotted and that
// disappears stops capture with ErrSlotLost naming the recovery; after
// capture.Reset, capture starts over with a new snapshot.
func TestSlotLostIsTerminal(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	exec(t, db, "CREATE TABLE "+pgx.Identifier{schema, "t"}.Sanitize()+" (id int PRIMARY KEY)")
	exec(t, db, "INSERT INTO "+pgx.Identifier{schema, "t"}.Sanitize()+" VALUES (1), (2)")
	cfg := capturetest.Config(t, schema)
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "t")
	run := capturetest.Start(t, cfg, w)
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 30*time.Second)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	capturetest.DropSlot(t, capture.Config{Slot: cfg.Slot, Publication: "keep_" + cfg.Publication, StateTable: "public.no_such_state"})

	c, err := capture.New(cfg, w, capturetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx)
	if !errors.Is(err, capture.ErrSlotLost) || !capture.IsTerminal(err) || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("Run = %v, want a terminal ErrSlotLost naming the reset", err)
	}
	if strings.Contains(err.Error(), "starstream:starstream@") {
		t.Fatalf("error leaks the password: %v", err)
	}
	if _, ok := capturetest.Slot(t, db, cfg.Slot); ok {
		t.Fatal("capture re-created the lost slot")
	}

	if err := capture.Reset(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	run = capturetest.Start(t, cfg, w)
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), 30*time.Second)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	snapLSNs := map[stream.LSN]int{}
	for _, ev := range capturetest.Events(recs) {
		if ev.Op == stream.OpSnapshot {
			snapLSNs[ev.Pos.LSN]++
		}
	}
	if len(snapLSNs) != 2 {
		t.Fatalf("snapshots at %v, want two (before and after reset)", snapLSNs)
	}
}
