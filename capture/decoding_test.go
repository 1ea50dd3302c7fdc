package capture_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

// startCapture runs capture on schema and waits until it streams.
func startCapture(t *testing.T, db *pgx.Conn, schema string) (*capturetest.Running, *stream.Codecs) {
	t.Helper()
	cfg := capturetest.Config(t, schema)
	w, codecs := capturetest.NewWriter(t)
	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 60*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	// The tests here change tables mid-stream: a rewrite (ALTER TABLE ... TYPE)
	// during the initial snapshot would start the snapshot over instead.
	capturetest.WaitSnapshot(t, db, cfg, 60*time.Second)
	return run, codecs
}

// TestToastUnchanged: a large out-of-line value that an update does not touch
// is marked unchanged (never NULL) with REPLICA IDENTITY DEFAULT, and filled
// from the old row with REPLICA IDENTITY FULL.
func TestToastUnchanged(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	for _, tbl := range []string{"dflt", "full"} {
		q := pgx.Identifier{schema, tbl}.Sanitize()
		exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, body text, n int)")
		// md5 chains do not compress: the value goes out of line (TOAST).
		exec(t, db, "INSERT INTO "+q+" SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 400) g")
	}
	exec(t, db, "ALTER TABLE "+pgx.Identifier{schema, "full"}.Sanitize()+" REPLICA IDENTITY FULL")
	var body string
	if err := db.QueryRow(t.Context(), "SELECT body FROM "+pgx.Identifier{schema, "dflt"}.Sanitize()).Scan(&body); err != nil {
		t.Fatal(err)
	}
	_, codecs := startCapture(t, db, schema)
	for _, tbl := range []string{"dflt", "full"} {
		q := pgx.Identifier{schema, tbl}.Sanitize()
		exec(t, db, "UPDATE "+q+" SET n = 1 WHERE id = 1")
		exec(t, db, "UPDATE "+q+" SET n = 2, body = body || 'x' WHERE id = 1")
		exec(t, db, "UPDATE "+q+" SET n = 3 WHERE id = 1")
	}
	fence := capturetest.Fence(t, db)

	evs := capturetest.Events(capturetest.ReadUntil(t, stream.Topic("cdc", schema, "dflt"), codecs, fence, 30*time.Second))
	if len(evs) != 4 || evs[0].Op != stream.OpSnapshot || evs[0].After["body"] != body {
		t.Fatalf("snapshot: %d events, first %s with %d-byte body", len(evs), evs[0].Op, len(str(evs[0].After["body"])))
	}
	for i, wantBody := range []string{"", body + "x", ""} {
		ev := evs[i+1]
		if wantBody == "" {
			if !ev.IsUnchanged("body") || ev.After["body"] != nil {
				t.Errorf("update %d: unchanged=%v body=%.20v; want body marked unchanged", i+1, ev.Unchanged, ev.After["body"])
			}
			continue
		}
		if ev.IsUnchanged("body") || ev.After["body"] != wantBody {
			t.Errorf("update %d: body changed but got unchanged=%v, %d bytes", i+1, ev.Unchanged, len(str(ev.After["body"])))
		}
	}

	evs = capturetest.Events(capturetest.ReadUntil(t, stream.Topic("cdc", schema, "full"), codecs, fence, 30*time.Second))
	for i, wantBody := range []string{body, body + "x", body + "x"} {
		ev := evs[i+1]
		if len(ev.Unchanged) != 0 || ev.After["body"] != wantBody {
			t.Errorf("full, update %d: unchanged=%v, %d-byte body, want the whole value", i+1, ev.Unchanged, len(str(ev.After["body"])))
		}
	}
}

func str(v any) string { s, _ := v.(string); return s }

// TestReplicaIdentity: with DEFAULT an update carries no old row and a delete
// only the key; with FULL both carry the whole old row.
func TestReplicaIdentity(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	for _, tbl := range []string{"dflt", "full"} {
		q := pgx.Identifier{schema, tbl}.Sanitize()
		exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, name text NOT NULL, n int)")
	}
	exec(t, db, "ALTER TABLE "+pgx.Identifier{schema, "full"}.Sanitize()+" REPLICA IDENTITY FULL")
	_, codecs := startCapture(t, db, schema)
	for _, tbl := range []string{"dflt", "full"} {
		q := pgx.Identifier{schema, tbl}.Sanitize()
		exec(t, db, "INSERT INTO "+q+" VALUES (1, 'a', 1)")
		exec(t, db, "UPDATE "+q+" SET n = 2 WHERE id = 1")
		exec(t, db, "UPDATE "+q+" SET id = 5 WHERE id = 1")
		exec(t, db, "DELETE FROM "+q+" WHERE id = 5")
	}
	fence := capturetest.Fence(t, db)

	evs := capturetest.Events(capturetest.ReadUntil(t, stream.Topic("cdc", schema, "dflt"), codecs, fence, 30*time.Second))
	if len(evs) != 4 {
		t.Fatalf("dflt: %d events, want 4", len(evs))
	}
	if evs[1].Before != nil {
		t.Errorf("dflt update: before = %v, want none", evs[1].Before)
	}
	if b := evs[2].Before; b == nil || b["id"] != int64(1) || b["name"] != nil {
		t.Errorf("dflt key update: before = %v, want the old key only", b)
	}
	if evs[2].Key["id"] != int64(5) {
		t.Errorf("dflt key update: key %v, want the new key", evs[2].Key)
	}
	if d := evs[3]; d.Op != stream.OpDelete || d.Key["id"] != int64(5) || d.Before["id"] != int64(5) || d.Before["name"] != nil || d.After != nil {
		t.Errorf("dflt delete: %+v, want key 5 and key-only before", d)
	}

	evs = capturetest.Events(capturetest.ReadUntil(t, stream.Topic("cdc", schema, "full"), codecs, fence, 30*time.Second))
	if len(evs) != 4 {
		t.Fatalf("full: %d events, want 4", len(evs))
	}
	if b := evs[1].Before; b["id"] != int64(1) || b["name"] != "a" || b["n"] != int64(1) {
		t.Errorf("full update: before = %v, want the whole old row", b)
	}
	if b := evs[3].Before; b["id"] != int64(5) || b["name"] != "a" || b["n"] != int64(2) {
		t.Errorf("full delete: before = %v, want the whole old row", b)
	}
}

// TestTruncate: TRUNCATE becomes one truncate event per table, in every
// partition, ordered between the changes around it.
func TestTruncate(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	q := pgx.Identifier{schema, "t"}.Sanitize()
	q2 := pgx.Identifier{schema, "t2"}.Sanitize()
	exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY)")
	exec(t, db, "CREATE TABLE "+q2+" (id int PRIMARY KEY)")
	_, codecs := startCapture(t, db, schema)
	exec(t, db, "INSERT INTO "+q+" SELECT generate_series(1, 20)")
	exec(t, db, "TRUNCATE "+q+", "+q2)
	exec(t, db, "INSERT INTO "+q+" VALUES (7)")
	fence := capturetest.Fence(t, db)

	for _, tbl := range []string{"t", "t2"} {
		recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, tbl), codecs, fence, 30*time.Second)
		truncs := map[int]stream.Position{}
		for _, r := range recs {
			if r.Marker == 0 && r.Event.Op == stream.OpTruncate {
				truncs[r.Partition] = r.Event.Pos
			}
		}
		if len(truncs) != 3 {
			t.Fatalf("%s: truncate in %d partitions, want 3", tbl, len(truncs))
		}
		for p, pos := range truncs {
			if pos != truncs[0] {
				t.Errorf("%s: truncate at %s in partition %d and %s in 0", tbl, pos, p, truncs[0])
			}
		}
		if tbl != "t" {
			continue
		}
		// Per partition: inserts before the truncate, the re-insert after it.
		for _, r := range recs {
			if r.Marker != 0 || r.Event.Op != stream.OpInsert {
				continue
			}
			after := r.Event.Key["id"] == int64(7) && r.Event.Pos.LSN > truncs[0].LSN
			if (r.Event.Pos.Compare(truncs[r.Partition]) > 0) != after {
				t.Errorf("insert %v at %s on the wrong side of the truncate at %s", r.Event.Key, r.Event.Pos, truncs[r.Partition])
			}
		}
	}
}

// TestSchemaChange: ADD, DROP and ALTER TYPE of columns mid-stream each yield
// a new schema version; the stream goes on and a fresh consumer (schemas from
// the schema topic only) decodes every version.
func TestSchemaChange(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	q := pgx.Identifier{schema, "t"}.Sanitize()
	exec(t, db, "CREATE TABLE "+q+" (id int PRIMARY KEY, a int, b text)")
	startCapture(t, db, schema)
	exec(t, db, "INSERT INTO "+q+" VALUES (1, 10, 'x')")
	exec(t, db, "ALTER TABLE "+q+" ADD COLUMN c numeric(5,1)")
	exec(t, db, "INSERT INTO "+q+" VALUES (2, 20, 'y', 1.5)")
	exec(t, db, "ALTER TABLE "+q+" DROP COLUMN a")
	exec(t, db, "INSERT INTO "+q+" VALUES (3, 'z', 2.5)")
	exec(t, db, "ALTER TABLE "+q+" ALTER COLUMN b TYPE int USING length(b)")
	exec(t, db, "INSERT INTO "+q+" VALUES (4, 42, 3.5)")
	exec(t, db, "UPDATE "+q+" SET c = 9.5 WHERE id = 1")
	fence := capturetest.Fence(t, db)

	fresh := stream.NewCodecs()
	recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, "t"), fresh, fence, 30*time.Second)
	fps := map[uint64]bool{}
	byID := map[int64]map[string]any{}
	for _, r := range recs {
		if r.Marker != 0 {
			continue
		}
		d, err := fresh.DecodeEvent(r.Raw)
		if err != nil {
			t.Fatal(err)
		}
		fps[d.Fingerprint] = true
		id, ok := r.Event.After["id"].(int64)
		if !ok {
			t.Fatalf("record p%d@%d: %+v", r.Partition, r.Offset, r.Event)
		}
		byID[id] = r.Event.After
	}
	if len(fps) != 4 {
		t.Errorf("%d schema versions, want 4", len(fps))
	}
	checks := []struct {
		id   int64
		want map[string]any
	}{
		{2, map[string]any{"a": int64(20), "b": "y"}},
		{3, map[string]any{"b": "z"}},
		{4, map[string]any{"b": int64(42)}},
		{1, map[string]any{"b": int64(1)}},
	}
	for _, c := range checks {
		row := byID[c.id]
		for k, v := range c.want {
			if row[k] != v {
				t.Errorf("id %d: %s = %#v, want %#v (row %v)", c.id, k, row[k], v, row)
			}
		}
	}
	if _, has := byID[4]["a"]; has {
		t.Errorf("id 4 still has the dropped column a: %v", byID[4])
	}
}
