package capture_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// progress reads the slot's progress row of a job and table.
func progress(t *testing.T, db *pgx.Conn, slot, job, table string) (rows int64, lastKey []string, done, ok bool) {
	t.Helper()
	err := db.QueryRow(context.Background(), `SELECT rows_done, last_key, done FROM public.starstream_capture_state_progress
		WHERE slot_name = $1 AND job = $2 AND table_name = $3`, slot, job, table).Scan(&rows, &lastKey, &done)
	if err == pgx.ErrNoRows {
		return 0, nil, false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return rows, lastKey, done, true
}

// TestSnapshotResumesAfterKill: a capture process is SIGKILLed in the middle
// of its initial snapshot, after some chunks of each table were recorded.
// The restarted process does not start over: the recorded chunks are not read
// again, the rest is read while streaming, and every row arrives exactly once
// from the snapshot side (rows the killed process had published beyond its
// last recorded chunk included); changes made meanwhile and afterwards
// stream, and replaying each topic gives the table.
func TestSnapshotResumesAfterKill(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	const n = 6000
	ints := pgx.Identifier{schema, "ints"}.Sanitize()
	texts := pgx.Identifier{schema, "texts"}.Sanitize()
	exec(t, db, "CREATE TABLE "+ints+" (k int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "CREATE TABLE "+texts+" (k text PRIMARY KEY, v int NOT NULL)") // keyset order by collation
	exec(t, db, "INSERT INTO "+ints+" SELECT g, 0 FROM generate_series(1, $1::int) g", n)
	exec(t, db, "INSERT INTO "+texts+" SELECT 'key ' || g, 0 FROM generate_series(1, $1::int) g", n)
	exec(t, db, "ANALYZE "+ints+", "+texts)
	cfg := capturetest.Config(t, schema)
	cfg.SnapshotChunkRows = 500
	cfg.ChunkEvents = 100
	cfg.MaxInFlight = 400
	cfg.SnapshotWorkers = 2
	capturetest.RequireKafka(t)
	logPath := filepath.Join(t.TempDir(), "capture.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("capture log:\n%s", b)
		}
	})

	// Slow writes, so that the snapshot takes a few seconds.
	victim := startChild(t, cfg, logPath, childDelayEnv+"=15ms")
	tables := []string{schema + ".ints", schema + ".texts"}
	capturetest.Eventually(t, 60*time.Second, "chunks of both tables recorded", func() bool {
		for _, tbl := range tables {
			if rows, _, _, _ := progress(t, db, cfg.Slot, "snapshot", tbl); rows < 1500 {
				return false
			}
		}
		return true
	})
	_ = victim.Process.Signal(syscall.SIGKILL)
	_, _ = victim.Process.Wait()
	atKill := map[string][]string{}
	atRows := map[string]int{}
	for _, tbl := range tables {
		rows, last, done, _ := progress(t, db, cfg.Slot, "snapshot", tbl)
		if done || rows >= n {
			t.Fatalf("%s: killed after the snapshot of the table finished (%d rows): make it slower", tbl, rows)
		}
		atKill[tbl] = last
		atRows[tbl] = int(rows)
		t.Logf("%s: killed after %d rows recorded (last key %v)", tbl, rows, last)
	}

	// Changes while capture is down, on both sides of the recorded chunks.
	exec(t, db, "UPDATE "+ints+" SET v = v + 1 WHERE k % 97 = 0")
	exec(t, db, "DELETE FROM "+ints+" WHERE k % 101 = 0")
	exec(t, db, "INSERT INTO "+ints+" SELECT g, 7 FROM generate_series($1::int, $1::int + 99) g", n+1)
	exec(t, db, "UPDATE "+texts+" SET v = v + 1 WHERE right(k, 2) = '13'")
	exec(t, db, "DELETE FROM "+texts+" WHERE right(k, 2) = '77'")

	// Killed again while it finishes the snapshot: some of its chunks are
	// recorded, the one in flight is partly in Kafka.
	second := startChild(t, cfg, logPath, childDelayEnv+"=60ms")
	capturetest.Eventually(t, 60*time.Second, "a chunk recorded after the restart", func() bool {
		rows, _, _, _ := progress(t, db, cfg.Slot, "snapshot", tables[0])
		return rows > int64(atRows[tables[0]])
	})
	time.Sleep(150 * time.Millisecond) // a few of its writes (60ms each) done
	_ = second.Process.Signal(syscall.SIGKILL)
	_, _ = second.Process.Wait()
	for _, tbl := range tables {
		rows, _, done, _ := progress(t, db, cfg.Slot, "snapshot", tbl)
		t.Logf("%s: killed again after %d rows recorded (done %v)", tbl, rows, done)
	}

	survivor := startChild(t, cfg, logPath)
	defer func() { _ = survivor.Process.Signal(syscall.SIGTERM); _, _ = survivor.Process.Wait() }()
	capturetest.Eventually(t, 2*time.Minute, "snapshot recorded as done", func() bool {
		var done bool
		_ = db.QueryRow(context.Background(), `SELECT snapshot_done FROM public.starstream_capture_state WHERE slot_name = $1`,
			cfg.Slot).Scan(&done)
		return done
	})
	// Streaming goes on afterwards.
	exec(t, db, "UPDATE "+ints+" SET v = v + 10 WHERE k % 13 = 0")
	exec(t, db, "UPDATE "+texts+" SET v = v + 10 WHERE right(k, 1) = '3'")
	fence := capturetest.Fence(t, db)

	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "resuming the initial snapshot after a crash") {
		t.Fatal("the restarted capture did not resume the snapshot")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "resuming the initial snapshot") {
			t.Log(line[strings.Index(line, "msg="):])
		}
	}
	if strings.Count(string(b), "created replication slot") != 1 {
		t.Fatal("the restarted capture created a new slot: the snapshot started over")
	}

	v := streamtest.NewValidator()
	codecs := stream.NewCodecs()
	for _, tbl := range tables {
		_, name, _ := strings.Cut(tbl, ".")
		q := pgx.Identifier{schema, name}.Sanitize()
		topic := stream.Topic("cdc", schema, name)
		recs := capturetest.ReadUntil(t, topic, codecs, fence, 2*time.Minute)
		validate(v, topic, recs)
		evs := capturetest.Events(recs)
		// The whole snapshot is at the consistent point; the rows of the first
		// run are the first atRows of the table's sequence numbers.
		var cp stream.LSN
		var base uint64
		for _, ev := range evs {
			if ev.Op == stream.OpSnapshot && (cp == 0 || ev.Pos.Seq-1 < base) {
				cp, base = ev.Pos.LSN, ev.Pos.Seq-1
			}
		}
		snaps := map[string]int{}
		resumed := map[string]bool{}
		for _, ev := range evs {
			if ev.Op != stream.OpSnapshot {
				continue
			}
			k := fmt.Sprint(ev.Key["k"])
			snaps[k]++
			if ev.Pos.LSN != cp {
				t.Errorf("%s: key %s has a snapshot record at %s, not at the consistent point %s", tbl, k, ev.Pos, cp)
			}
			if ev.Pos.Seq-base > uint64(atRows[tbl]) {
				resumed[k] = true
			}
		}
		// Every row the snapshot could see exactly once: every row of the
		// table (rows inserted while capture was down are in the part read
		// after the restart), and no row twice (deleted ones included).
		present := keysOf(t, db, "SELECT k::text FROM "+q)
		for k, c := range snaps {
			if c != 1 {
				t.Errorf("%s: key %s has %d snapshot records, want exactly one", tbl, k, c)
			}
		}
		for k := range present {
			if snaps[k] != 1 {
				t.Errorf("%s: key %s is in the table but has %d snapshot records", tbl, k, snaps[k])
			}
		}
		// Recorded chunks are not read again: their rows come from the first run.
		keyType := "text"
		if name == "ints" {
			keyType = "int"
		}
		finished := keysOf(t, db, "SELECT k::text FROM "+q+" WHERE k <= $1::"+keyType, atKill[tbl][0])
		for k := range finished {
			if resumed[k] {
				t.Errorf("%s: key %s of a chunk recorded before the kill was read again", tbl, k)
			}
		}
		if len(resumed) == 0 {
			t.Errorf("%s: nothing was read after the restart", tbl)
		}
		// Rows inserted while capture was down are read after the restart and
		// labelled at the consistent point, as if they existed there; the stream
		// must bring their insert too, at its own position, which consumers take
		// as the row's creation (fact_sales resolves an item's keys there).
		if name == "ints" {
			inserted := map[string]stream.Position{}
			for _, ev := range evs {
				if ev.Op == stream.OpInsert {
					inserted[fmt.Sprint(ev.Key["k"])] = ev.Pos
				}
			}
			for k := n + 1; k <= n+100; k++ {
				key := fmt.Sprint(k)
				if pos, ok := inserted[key]; !ok || pos.LSN <= cp {
					t.Errorf("%s: key %s, inserted while capture was down, has no insert event after the consistent point %s (got %v)", tbl, key, cp, pos)
				}
			}
		}
		t.Logf("%s: %d records, %d snapshot rows (%d read after the restart), %d rows in the table", tbl, len(recs), len(snaps), len(resumed), len(present))
		assertTableText(t, db, q, replayText(evs))
	}
	v.Check(t)
}

func keysOf(t *testing.T, db *pgx.Conn, sql string, args ...any) map[string]bool {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		out[k] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// replayText applies events in position order and returns k (as text) → v.
func replayText(evs []stream.Event) map[string]int64 {
	state := map[string]int64{}
	for _, ev := range capturetest.Events(recordsOf(evs)) {
		switch ev.Op {
		case stream.OpSnapshot, stream.OpInsert, stream.OpUpdate:
			state[fmt.Sprint(ev.After["k"])] = ev.After["v"].(int64)
		case stream.OpDelete:
			delete(state, fmt.Sprint(ev.Key["k"]))
		case stream.OpTruncate:
			clear(state)
		}
	}
	return state
}

func assertTableText(t *testing.T, db *pgx.Conn, tbl string, state map[string]int64) {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT k::text, v::int8 FROM "+tbl)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for k, v := range want {
		if got, ok := state[k]; !ok || got != v {
			t.Errorf("%s key %s: replayed %v (present %v), table has %d", tbl, k, got, ok, v)
		}
	}
	for k := range state {
		if _, ok := want[k]; !ok {
			t.Errorf("%s key %s: replayed as present, deleted in the table", tbl, k)
		}
	}
}
