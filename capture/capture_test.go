package capture_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

func exec(t *testing.T, db *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// traffic runs step over and over on a connection of its own until the
// returned stop is called, which waits for it to end; an error fails the test
// unless it comes from the stop. steps counts the steps that did not fail it.
func traffic(t *testing.T, step func(ctx context.Context, conn *pgx.Conn) error) (stop func(), steps *atomic.Int64) {
	ctx, cancel := context.WithCancel(context.Background())
	steps = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, capturetest.DSN())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			if err := step(ctx, conn); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			steps.Add(1)
		}
	}()
	return func() { cancel(); wg.Wait() }, steps
}

// TestSnapshotThenStream: rows present before the first start arrive once as
// snapshot reads at the consistent point; later changes arrive once each, in
// position order, after it.
func TestSnapshotThenStream(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "items"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, name text NOT NULL, qty int)")
	for i := 1; i <= 50; i++ {
		exec(t, db, "INSERT INTO "+tbl+" VALUES ($1, $2, $3)", i, fmt.Sprintf("item %d", i), i)
	}
	cfg := capturetest.Config(t, schema)
	w, codecs := capturetest.NewWriter(t)
	run := capturetest.Start(t, cfg, w)

	capturetest.Eventually(t, 30*time.Second, "slot created", func() bool {
		_, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok
	})
	// Changes racing with the snapshot: each must appear exactly once, either
	// in the snapshot or in the stream.
	for i := 51; i <= 60; i++ {
		exec(t, db, "INSERT INTO "+tbl+" VALUES ($1, $2, $3)", i, fmt.Sprintf("item %d", i), i)
	}
	exec(t, db, "UPDATE "+tbl+" SET qty = qty + 100 WHERE id <= 5")
	exec(t, db, "DELETE FROM "+tbl+" WHERE id = 50")
	fence := capturetest.Fence(t, db)
	recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, "items"), codecs, fence, 60*time.Second)
	if err := run.Stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	evs := capturetest.Events(recs)

	// Replay the events into a map; it must equal the table.
	state := map[int64]map[string]any{}
	var snapLSN stream.LSN
	seen := map[stream.Position]bool{}
	for _, ev := range evs {
		if seen[ev.Pos] {
			t.Fatalf("position %s twice", ev.Pos)
		}
		seen[ev.Pos] = true
		switch ev.Op {
		case stream.OpSnapshot:
			if snapLSN == 0 {
				snapLSN = ev.Pos.LSN
			}
			if ev.Pos.LSN != snapLSN {
				t.Fatalf("snapshot rows at two LSNs: %s and %s", snapLSN, ev.Pos.LSN)
			}
			state[ev.After["id"].(int64)] = ev.After
		case stream.OpInsert, stream.OpUpdate:
			if ev.Pos.LSN <= snapLSN {
				t.Fatalf("change %s at or before the snapshot %s", ev.Pos, snapLSN)
			}
			id := ev.After["id"].(int64)
			if ev.Op == stream.OpInsert && state[id] != nil {
				t.Fatalf("insert of id %d that the snapshot already had (overlap)", id)
			}
			if ev.Op == stream.OpUpdate && state[id] == nil {
				t.Fatalf("update of id %d that nobody inserted (gap)", id)
			}
			state[id] = ev.After
		case stream.OpDelete:
			id := ev.Key["id"].(int64)
			if state[id] == nil {
				t.Fatalf("delete of unknown id %d", id)
			}
			delete(state, id)
		}
	}
	rows, err := db.Query(context.Background(), "SELECT id, name, qty FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][2]any{}
	for rows.Next() {
		var id int32
		var name string
		var qty int32
		if err := rows.Scan(&id, &name, &qty); err != nil {
			t.Fatal(err)
		}
		want[int64(id)] = [2]any{name, int64(qty)}
	}
	if len(state) != len(want) {
		t.Fatalf("replayed %d rows, table has %d", len(state), len(want))
	}
	for id, w := range want {
		got := state[id]
		if got == nil || got["name"] != w[0] || got["qty"] != w[1] {
			t.Fatalf("row %d: replayed %v, table has %v", id, got, w)
		}
	}
	snaps := 0
	for _, ev := range evs {
		if ev.Op == stream.OpSnapshot {
			snaps++
		}
	}
	if snaps < 50 {
		t.Fatalf("snapshot has %d rows, want >= 50", snaps)
	}
	t.Logf("%d snapshot rows at %s, %d stream events", snaps, snapLSN, len(evs)-snaps)
}

// TestSnapshotParallel: several tables read by several connections in the
// same exported snapshot: every row once, sequence numbers unique across
// tables, all at the consistent point.
func TestSnapshotParallel(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	sizes := map[string]int{"a": 5000, "b": 1, "c": 0, "d": 12000, "e": 300}
	for name, n := range sizes {
		q := pgx.Identifier{schema, name}.Sanitize()
		exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, v text)")
		exec(t, db, "INSERT INTO "+q+" SELECT g, md5(g::text) FROM generate_series(1, $1::int) g", n)
	}
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotWorkers = 3
	w, codecs := capturetest.NewWriter(t)
	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 60*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	fence := capturetest.Fence(t, db)
	seqs := map[uint64]string{}
	var lsn stream.LSN
	for name, n := range sizes {
		recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, name), codecs, fence, 60*time.Second)
		ids := map[int64]bool{}
		for _, ev := range capturetest.Events(recs) {
			if ev.Op != stream.OpSnapshot {
				t.Fatalf("%s: unexpected %s", name, ev.Op)
			}
			if lsn == 0 {
				lsn = ev.Pos.LSN
			}
			if ev.Pos.LSN != lsn {
				t.Fatalf("snapshot rows at %s and %s", lsn, ev.Pos.LSN)
			}
			if other, dup := seqs[ev.Pos.Seq]; dup {
				t.Fatalf("seq %d in %s and %s", ev.Pos.Seq, other, name)
			}
			seqs[ev.Pos.Seq] = name
			ids[ev.Key["id"].(int64)] = true
		}
		if len(ids) != n {
			t.Errorf("%s: %d distinct rows, want %d", name, len(ids), n)
		}
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}
