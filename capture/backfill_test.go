package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// TestBackfillWhileWriting: a backfill of a table runs, in small chunks,
// while a writer keeps updating, inserting and deleting its rows. Per key, the
// newest record in Kafka (by position) must equal the source row, and a row
// deleted in the source must end deleted: a backfilled row never carries an
// older version under a newer position, and never resurrects a deleted row.
func TestBackfillWhileWriting(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "kv"}.Sanitize()
	const n = 3000
	exec(t, db, "CREATE TABLE "+tbl+" (k int PRIMARY KEY, v int NOT NULL, pad text)")
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, 0, repeat('x', 50) FROM generate_series(1, $1::int) g", n)
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotChunkRows = 100
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "kv")
	run := capturetest.Start(t, cfg, w)
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)

	// The writer: hot keys and random ones, inserts and deletes, one or
	// several statements per transaction.
	rng := rand.New(rand.NewPCG(5, 6))
	next := n + 1
	stopWriter, txns := traffic(t, func(ctx context.Context, conn *pgx.Conn) error {
		var err error
		switch rng.IntN(6) {
		case 0, 1:
			_, err = conn.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE k = $1", 1+rng.IntN(next))
		case 2:
			_, err = conn.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1, 1, 'new')", next)
			next++
		case 3:
			_, err = conn.Exec(ctx, "DELETE FROM "+tbl+" WHERE k = $1", 1+rng.IntN(next))
		case 4:
			_, err = conn.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE k % 500 = $1", rng.IntN(500))
		case 5:
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				for i := 0; i < 5; i++ {
					// k+1 stays below next: case 2 inserts next
					// without ON CONFLICT.
					k := 1 + rng.IntN(next-2)
					if _, err := tx.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE k = $1", k); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "DELETE FROM "+tbl+" WHERE k = $1", k+1); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1, 2, 'tx') ON CONFLICT (k) DO UPDATE SET v = "+tbl+".v + 1", k+1); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return err
	})

	time.Sleep(300 * time.Millisecond)
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job, err := capture.RequestBackfill(rctx, cfg, schema+".kv")
	if err != nil {
		t.Fatal(err)
	}
	var st capture.BackfillStatus
	capturetest.Eventually(t, 3*time.Minute, "backfill "+job+" done", func() bool {
		if st, err = capture.Backfill(rctx, cfg, job); err != nil {
			t.Fatal(err)
		}
		return st.Done
	})
	if st.Error != "" || st.Rows < n/2 {
		t.Fatalf("backfill ended with %+v", st)
	}
	time.Sleep(200 * time.Millisecond) // writes after the last chunk too
	stopWriter()
	if t.Failed() {
		return
	}
	fence := capturetest.Fence(t, db)
	recs := capturetest.ReadUntil(t, topic, codecs, fence, 2*time.Minute)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
	v := streamtest.NewValidator()
	validate(v, topic, recs)
	v.Check(t)

	// The newest record per key, by position.
	newest := map[int64]stream.Event{}
	var cp stream.LSN
	backfilled := 0
	for _, ev := range capturetest.Events(recs) {
		if ev.Op == stream.OpSnapshot {
			if cp == 0 {
				cp = ev.Pos.LSN // the initial snapshot comes first
			}
			if ev.Pos.LSN != cp {
				backfilled++
			}
		}
		newest[ev.Key["k"].(int64)] = ev
	}
	rows, err := db.Query(context.Background(), "SELECT k, v, pad FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	source := map[int64][2]any{}
	for rows.Next() {
		var k, val int32
		var pad string
		if err := rows.Scan(&k, &val, &pad); err != nil {
			t.Fatal(err)
		}
		source[int64(k)] = [2]any{int64(val), pad}
	}
	rows.Close()
	stale := 0
	for k, row := range source {
		ev, ok := newest[k]
		if !ok || ev.Op == stream.OpDelete || ev.After["v"] != row[0] || ev.After["pad"] != row[1] {
			stale++
			if stale <= 10 {
				t.Errorf("key %d: source %v, newest record %s at %s: %v", k, row, ev.Op, ev.Pos, ev.After)
			}
		}
	}
	for k, ev := range newest {
		if _, ok := source[k]; !ok && ev.Op != stream.OpDelete {
			stale++
			if stale <= 10 {
				t.Errorf("key %d deleted in the source, newest record %s at %s: %v", k, ev.Op, ev.Pos, ev.After)
			}
		}
	}
	if backfilled == 0 {
		t.Fatal("no backfilled record in the topic")
	}
	t.Logf("%d writer transactions; backfill read %d rows, emitted %d (the others changed during their chunk); %d keys checked, %d stale",
		txns.Load(), st.Rows, backfilled, len(newest), stale)
}

// TestBackfillAfterAddColumn: the common reason for a backfill — a column
// added with a default, which no change has streamed yet — publishes every
// row with the new column, under the new schema version.
func TestBackfillAfterAddColumn(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "items"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, name text)")
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, 'n' || g FROM generate_series(1, 700) g")
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotChunkRows = 200
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "items")
	capturetest.Start(t, cfg, w)
	exec(t, db, "UPDATE "+tbl+" SET name = 'first' WHERE id = 1") // the stream knows the old version
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)
	exec(t, db, "ALTER TABLE "+tbl+" ADD COLUMN qty int NOT NULL DEFAULT 5")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := capture.RequestBackfill(ctx, cfg, schema+".items")
	if err != nil {
		t.Fatal(err)
	}
	capturetest.Eventually(t, time.Minute, "backfill done", func() bool {
		st, err := capture.Backfill(ctx, cfg, job)
		if err != nil {
			t.Fatal(err)
		}
		return st.Done
	})
	exec(t, db, "UPDATE "+tbl+" SET qty = 6 WHERE id = 2")
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)
	newest := map[int64]stream.Event{}
	for _, ev := range capturetest.Events(recs) {
		newest[ev.Key["id"].(int64)] = ev
	}
	if len(newest) != 700 {
		t.Fatalf("%d keys, want 700", len(newest))
	}
	for id, ev := range newest {
		want := int64(5)
		if id == 2 {
			want = 6
		}
		if ev.After["qty"] != want {
			t.Fatalf("key %d: newest %s has qty %v, want %d", id, ev.Op, ev.After["qty"], want)
		}
	}
}

// TestBackfillDuringTableRewrite: a backfill requested while ALTER TABLE ...
// TYPE (a table rewrite, which is not MVCC-safe) holds its table waits for
// the table's lock before its chunk's snapshot, fails the chunk when the
// lock is not granted in time and reads it again later, then publishes every
// row in the new type. Taken the other way round (snapshot, then lock) the
// chunk read the rewritten file through the older snapshot, saw no rows, and
// the job ended at once, empty.
func TestBackfillDuringTableRewrite(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "items"}.Sanitize()
	const n = 700
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, g FROM generate_series(1, $1::int) g", n)
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotChunkRows = 200
	cfg.LockTimeout = 500 * time.Millisecond
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "items")
	capturetest.Start(t, cfg, w)
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rewrite, err := capturetest.Connect(t).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rewrite.Rollback(context.Background()) //nolint:errcheck // committed below
	if _, err := rewrite.Exec(ctx, "ALTER TABLE "+tbl+" ALTER COLUMN v TYPE text USING 'v' || v"); err != nil {
		t.Fatal(err)
	}
	job, err := capture.RequestBackfill(ctx, cfg, schema+".items")
	if err != nil {
		t.Fatal(err)
	}
	waits := 0
	capturetest.Eventually(t, time.Minute, "two lock waits of the backfill's chunk", func() bool {
		var waiting bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE relation = $1::regclass
			AND mode = 'AccessShareLock' AND NOT granted)`, tbl).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			waits++
			time.Sleep(cfg.LockTimeout) // the next wait is the chunk's next try
		}
		return waits >= 2
	})
	st, err := capture.Backfill(ctx, cfg, job)
	if err != nil {
		t.Fatal(err)
	}
	if st.Done || st.Rows != 0 {
		t.Fatalf("while the rewrite holds the table: %+v; want not done, 0 rows", st)
	}
	if err := rewrite.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	capturetest.Eventually(t, time.Minute, "backfill "+job+" done", func() bool {
		if st, err = capture.Backfill(ctx, cfg, job); err != nil {
			t.Fatal(err)
		}
		return st.Done
	})
	if st.Rows != n || st.Error != "" {
		t.Fatalf("backfill ended with %+v; want %d rows", st, n)
	}
	var signals int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM public.starstream_signal WHERE slot_name = $1 AND kind <> 'backfill'`,
		cfg.Slot).Scan(&signals); err != nil {
		t.Fatal(err)
	}
	if signals != 0 {
		t.Errorf("%d watermark rows left in the signal table, also of the failed chunks; want none", signals)
	}
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)
	newest := map[int64]stream.Event{}
	for _, ev := range capturetest.Events(recs) {
		newest[ev.Key["id"].(int64)] = ev
	}
	for id := int64(1); id <= n; id++ {
		ev := newest[id]
		if want := fmt.Sprintf("v%d", id); ev.Op != stream.OpSnapshot || ev.After["v"] != want {
			t.Fatalf("key %d: newest %s %v; want the backfilled row with v %q", id, ev.Op, ev.After, want)
		}
	}
}

// TestBackfillKeepsToastForNewConsumer: a backfill serves a consumer that
// starts with it (its topic's earlier records expired, or it is new). Rows of
// a table with a TOAST column (8 kB, stored out of line, uncompressed) are
// updated on another column throughout the backfill: those change events
// leave the TOAST value out (Unchanged), so a consumer that sees one before
// any complete row of its key has no value for it. Folding only the records
// after the request, every key must end with the source's TOAST value.
func TestBackfillKeepsToastForNewConsumer(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "docs"}.Sanitize()
	const n = 400
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, v int NOT NULL, doc text NOT NULL)")
	exec(t, db, "ALTER TABLE "+tbl+" ALTER COLUMN doc SET STORAGE EXTERNAL")
	exec(t, db, "INSERT INTO "+tbl+` SELECT g, 0, (SELECT string_agg(md5(g::text || '-' || i::text), '') FROM generate_series(1, 256) i)
		FROM generate_series(1, $1::int) g`, n)
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotChunkRows = 40
	w, codecs := capturetest.NewWriter(t)
	topic := stream.Topic("cdc", schema, "docs")
	run := capturetest.Start(t, cfg, w)
	capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)

	rng := rand.New(rand.NewPCG(7, 8))
	stopWriter, updates := traffic(t, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE id = $1", 1+rng.IntN(n)); err != nil {
			return err
		}
		// Hundreds of updates a second still change keys inside every
		// window; an unpaced loop floods the WAL every other test's
		// capture must decode too, and windows then take seconds each.
		time.Sleep(time.Millisecond)
		return nil
	})
	defer stopWriter()
	var lsn string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	from, err := stream.ParseLSN(lsn)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := capture.RequestBackfill(rctx, cfg, schema+".docs")
	if err != nil {
		t.Fatal(err)
	}
	var st capture.BackfillStatus
	capturetest.Eventually(t, 2*time.Minute, "backfill "+job+" done", func() bool {
		if st, err = capture.Backfill(rctx, cfg, job); err != nil {
			t.Fatal(err)
		}
		return st.Done
	})
	stopWriter()
	if t.Failed() {
		return
	}
	recs := capturetest.ReadUntil(t, topic, codecs, capturetest.Fence(t, db), time.Minute)
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}

	// The new consumer: records after the request, in position order per key.
	evs := capturetest.Events(recs)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Pos.Less(evs[j].Pos) })
	state := map[int64]map[string]any{}
	for _, ev := range evs {
		if ev.Pos.LSN <= from {
			continue
		}
		id := ev.Key["id"].(int64)
		row := map[string]any{}
		for k, v := range ev.After {
			row[k] = v
		}
		for _, col := range ev.Unchanged {
			prev, ok := state[id][col]
			if !ok {
				delete(row, col)
				continue
			}
			row[col] = prev
		}
		state[id] = row
	}
	rows, err := db.Query(context.Background(), "SELECT id, v, doc FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for rows.Next() {
		var id, v int32
		var doc string
		if err := rows.Scan(&id, &v, &doc); err != nil {
			t.Fatal(err)
		}
		got := state[int64(id)]
		if got["v"] != int64(v) || got["doc"] != doc {
			bad++
			if bad <= 5 {
				d, _ := got["doc"].(string)
				t.Errorf("key %d: source v %d, doc of %d bytes; the consumer has v %v, doc of %d bytes (present %v)",
					id, v, len(doc), got["v"], len(d), got["doc"] != nil)
			}
		}
	}
	rows.Close()
	t.Logf("%d updates during the backfill of %d rows (%d read); %d keys wrong", updates.Load(), n, st.Rows, bad)
}
