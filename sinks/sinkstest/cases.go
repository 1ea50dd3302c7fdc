package sinkstest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
)

func testSameBatchTwice(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := ordersTable("orders_twice")
	ensure(t, s, tbl)
	var batch []sinks.Row
	for id := int64(1); id <= 20; id++ {
		batch = append(batch, upsert(100+uint64(id), 0, order(id, "placed", fmt.Sprintf("%d.25", id), 100+uint64(id))))
	}
	for id := int64(1); id <= 5; id++ {
		batch = append(batch, upsert(200+uint64(id), 0, order(id, "paid", fmt.Sprintf("%d.75", id), 200+uint64(id))))
	}
	batch = append(batch, del(300, 0, orderKey(6)))

	m := newModel(tbl)
	m.apply(t, batch)
	write(t, s, tbl.Name, batch)
	first := h.Rows(t, s, tbl.Name)
	assertRows(t, tbl, first, m.live())
	if len(first) != 19 {
		t.Fatalf("%d live rows, want 19", len(first))
	}

	write(t, s, tbl.Name, batch)
	assertRows(t, tbl, h.Rows(t, s, tbl.Name), first)
}

func testOutOfOrderBatches(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := inventoryTable("inventory_out_of_order")
	ensure(t, s, tbl)
	m := newModel(tbl)
	apply := func(rows []sinks.Row) {
		t.Helper()
		write(t, s, tbl.Name, rows)
		m.apply(t, rows)
	}

	var newer, older []sinks.Row
	for p := int64(1); p <= 10; p++ {
		newer = append(newer, upsert(200, uint64(p), stock(p, "ams", 200+p)))
	}
	for p := int64(1); p <= 12; p++ { // 11 and 12 exist only in the older batch
		older = append(older, upsert(100, uint64(p), stock(p, "ams", 100+p)))
	}
	apply(newer)
	apply(older)
	// Same commit, later change in the transaction wins.
	apply([]sinks.Row{upsert(300, 2, stock(1, "fra", 2))})
	apply([]sinks.Row{upsert(300, 1, stock(1, "fra", 1))})
	// An older LSN with a larger seq is still older.
	apply([]sinks.Row{upsert(299, 99, stock(1, "fra", 99))})

	got := h.Rows(t, s, tbl.Name)
	assertRows(t, tbl, got, m.live())
	assertRows(t, tbl, got, []map[string]any{
		stock(1, "ams", 201), stock(2, "ams", 202), stock(3, "ams", 203), stock(4, "ams", 204),
		stock(5, "ams", 205), stock(6, "ams", 206), stock(7, "ams", 207), stock(8, "ams", 208),
		stock(9, "ams", 209), stock(10, "ams", 210), stock(11, "ams", 111), stock(12, "ams", 112),
		stock(1, "fra", 2),
	})
}

func testVersionsWithinBatch(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := ordersTable("orders_versions")
	ensure(t, s, tbl)
	batch := []sinks.Row{
		upsert(105, 0, order(1, "shipped", "10", 105)),
		upsert(101, 0, order(1, "placed", "10", 101)),
		upsert(103, 0, order(1, "paid", "10", 103)),

		upsert(101, 0, order(2, "placed", "20", 101)),
		del(102, 0, orderKey(2)),
		upsert(104, 0, order(2, "placed again", "21", 104)),

		upsert(101, 0, order(3, "placed", "30", 101)),
		del(106, 0, orderKey(3)),
		upsert(104, 0, order(3, "paid", "30", 104)),

		del(110, 0, orderKey(4)),

		upsert(107, 5, order(5, "seq five", "", 107)),
		upsert(107, 4, order(5, "seq four", "", 107)),
	}
	m := newModel(tbl)
	m.apply(t, batch)
	write(t, s, tbl.Name, batch)
	got := h.Rows(t, s, tbl.Name)
	assertRows(t, tbl, got, m.live())
	assertRows(t, tbl, got, []map[string]any{
		order(1, "shipped", "10", 105),
		order(2, "placed again", "21", 104),
		order(5, "seq five", "", 107),
	})
}

func testDeleteThenLateOlderUpsert(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := ordersTable("orders_tombstone")
	ensure(t, s, tbl)
	write(t, s, tbl.Name, []sinks.Row{
		upsert(100, 0, order(1, "placed", "1.5", 100)),
		upsert(100, 1, order(2, "placed", "2.5", 100)),
	})
	write(t, s, tbl.Name, []sinks.Row{del(200, 0, orderKey(1))})
	// A tombstone for a key the sink never saw (a replay that starts mid-stream):
	// its columns other than the key are unknown, status included.
	write(t, s, tbl.Name, []sinks.Row{del(300, 0, orderKey(3))})
	// Late, older versions of both deleted keys.
	write(t, s, tbl.Name, []sinks.Row{
		upsert(150, 0, order(1, "paid", "1.5", 150)),
		upsert(250, 0, order(3, "placed", "3.5", 250)),
	})
	assertRows(t, tbl, h.Rows(t, s, tbl.Name), []map[string]any{order(2, "placed", "2.5", 100)})
}

func testDeleteThenNewerUpsert(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := ordersTable("orders_revive")
	ensure(t, s, tbl)
	write(t, s, tbl.Name, []sinks.Row{upsert(100, 0, order(1, "placed", "9.99", 100))})
	write(t, s, tbl.Name, []sinks.Row{del(200, 0, orderKey(1))})
	// The revived row carries only its own values: nothing of the deleted version.
	revived := map[string]any{"order_id": int64(1), "status": "reopened", "amount": nil, "updated_at": nil}
	write(t, s, tbl.Name, []sinks.Row{upsert(300, 0, revived)})
	// Delete and newer upsert in one batch, for a key seen before and one not.
	write(t, s, tbl.Name, []sinks.Row{
		upsert(400, 0, order(2, "placed", "2", 400)),
		del(401, 0, orderKey(2)),
		upsert(402, 0, order(2, "placed twice", "2", 402)),
		del(401, 1, orderKey(3)),
		upsert(402, 1, order(3, "late arrival", "3", 402)),
	})
	assertRows(t, tbl, h.Rows(t, s, tbl.Name), []map[string]any{
		revived,
		order(2, "placed twice", "2", 402),
		order(3, "late arrival", "3", 402),
	})
}

// replayBatches is a deterministic history over 40 keys: inserts, updates and deletes.
func replayBatches() [][]sinks.Row {
	statuses := []string{"placed", "paid", "shipped", "delivered"}
	var batches [][]sinks.Row
	for b := range 5 {
		var batch []sinks.Row
		for k := range 40 {
			lsn := uint64(1000*(b+1) + k/8)
			seq := uint64(k % 8)
			id := int64(k + 1)
			if b > 0 && (b*7+k)%5 == 0 {
				batch = append(batch, del(lsn, seq, orderKey(id)))
				continue
			}
			batch = append(batch, upsert(lsn, seq, order(id, statuses[(b+k)%4], fmt.Sprintf("%d.%02d", b*100+k, k), lsn)))
		}
		batches = append(batches, batch)
	}
	return batches
}

func testReplayFromStart(t *testing.T, h Harness) {
	tbl := ordersTable("orders_replay")
	s := open(t, h)
	ensure(t, s, tbl)
	m := newModel(tbl)
	batches := replayBatches()
	for _, b := range batches {
		write(t, s, tbl.Name, b)
		m.apply(t, b)
	}
	first := h.Rows(t, s, tbl.Name)
	assertRows(t, tbl, first, m.live())

	t.Run("again in order", func(t *testing.T) {
		for _, b := range batches {
			write(t, s, tbl.Name, b)
		}
		assertRows(t, tbl, h.Rows(t, s, tbl.Name), first)
	})
	t.Run("again in reverse", func(t *testing.T) {
		for _, b := range slices.Backward(batches) {
			write(t, s, tbl.Name, b)
		}
		assertRows(t, tbl, h.Rows(t, s, tbl.Name), first)
	})
	t.Run("into an emptied warehouse", func(t *testing.T) {
		fresh := open(t, h)
		ensure(t, fresh, tbl)
		for _, b := range batches {
			write(t, fresh, tbl.Name, b)
		}
		assertRows(t, tbl, h.Rows(t, fresh, tbl.Name), first)
	})
}

func testAddColumn(t *testing.T, h Harness) {
	s := open(t, h)
	v1 := ordersTable("orders_grow")
	ensure(t, s, v1)
	write(t, s, v1.Name, []sinks.Row{
		upsert(100, 0, order(1, "placed", "1", 100)),
		upsert(100, 1, order(2, "placed", "2", 100)),
		upsert(100, 2, order(3, "placed", "3", 100)),
	})

	v2 := v1
	v2.Columns = append(slices.Clone(v1.Columns),
		sinks.Column{Name: "note", Type: sinks.String, Nullable: true, Description: "added later"},
		sinks.Column{Name: "score", Type: sinks.Float64, Nullable: true})
	ensure(t, s, v2)
	ensure(t, s, v2) // again: nothing to add

	with := func(v map[string]any, note string, score float64) map[string]any {
		v["note"], v["score"] = note, score
		return v
	}
	write(t, s, v2.Name, []sinks.Row{
		upsert(200, 0, with(order(4, "placed", "4", 200), "new row", 1.5)),
		upsert(200, 1, with(order(2, "paid", "2", 200), "updated row", -2)),
	})
	want := []map[string]any{
		order(1, "placed", "1", 100), // note and score read back NULL
		with(order(2, "paid", "2", 200), "updated row", -2),
		order(3, "placed", "3", 100),
		with(order(4, "placed", "4", 200), "new row", 1.5),
	}
	assertRows(t, v2, h.Rows(t, s, v2.Name), want)

	// A pipeline still on the old definition must not drop the new columns.
	ensure(t, s, v1)
	assertRows(t, v2, h.Rows(t, s, v2.Name), want)
}

func testLargeBatch(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := bulkTable("bulk")
	ensure(t, s, tbl)
	n := h.MaxBatchRows
	batch := make([]sinks.Row, n)
	for i := range batch {
		batch[i] = upsert(1000+uint64(i/100), uint64(i%100), bulkRow(int64(i+1), 1000))
	}
	m := newModel(tbl)
	m.apply(t, batch)
	write(t, s, tbl.Name, batch)
	got := h.Rows(t, s, tbl.Name)
	if len(got) != n {
		t.Fatalf("%d rows landed, want %d", len(got), n)
	}
	assertRows(t, tbl, got, m.live())
}

func testTransientFailure(t *testing.T, h Harness) {
	if h.FailNextWrites == nil {
		t.Skip("harness has no FailNextWrites")
	}
	s := open(t, h)
	tbl := ordersTable("orders_retry")
	ensure(t, s, tbl)
	batch := []sinks.Row{
		upsert(100, 0, order(1, "placed", "1", 100)),
		upsert(100, 1, order(2, "placed", "2", 100)),
	}

	h.FailNextWrites(t, s, 1)
	if _, err := s.Write(ctx(t), tbl.Name, batch); !sinks.IsTransient(err) {
		t.Fatalf("write under an injected fault: error %v, want one wrapping sinks.ErrTransient", err)
	}

	h.FailNextWrites(t, s, 3)
	r := sinks.WithRetry(s, sinks.RetryPolicy{Initial: time.Millisecond, Max: 20 * time.Millisecond, Attempts: 10}, testLogger(t))
	write(t, r, tbl.Name, batch)
	m := newModel(tbl)
	m.apply(t, batch)
	assertLive(t, h, s, m)

	// The faults are used up: the next write goes through at once.
	more := []sinks.Row{upsert(200, 0, order(3, "placed", "3", 200))}
	write(t, s, tbl.Name, more)
	m.apply(t, more)
	assertLive(t, h, s, m)
}

func testBadRow(t *testing.T, h Harness) {
	s := open(t, h)
	for _, tc := range []struct {
		name string
		bad  func(v map[string]any)
	}{
		{"wrong type", func(v map[string]any) { v["status"] = 42 }},
		{"wrong type in key", func(v map[string]any) { v["order_id"] = "three" }},
		{"null in not null column", func(v map[string]any) { v["status"] = nil }},
		{"missing key", func(v map[string]any) { delete(v, "order_id") }},
		{"unknown column", func(v map[string]any) { v["no_such_column"] = "x" }},
		{"numeric as float", func(v map[string]any) { v["amount"] = 3.5 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := ordersTable("orders_bad_" + strings.ReplaceAll(tc.name, " ", "_"))
			ensure(t, s, tbl)
			var batch []sinks.Row
			for id := int64(1); id <= 5; id++ {
				batch = append(batch, upsert(100, uint64(id), order(id, "placed", "1.25", 100)))
			}
			tc.bad(batch[2].Values)
			rowErrs, err := s.Write(ctx(t), tbl.Name, batch)
			if err != nil {
				t.Fatalf("Write: %v (a bad row must not fail the batch)", err)
			}
			if len(rowErrs) != 1 || rowErrs[0].Index != 2 || rowErrs[0].Reason == "" {
				t.Fatalf("row errors = %v, want exactly one for index 2, with a reason", rowErrs)
			}
			m := newModel(tbl)
			m.apply(t, batch, 2)
			assertLive(t, h, s, m)
		})
	}
}

func testTypesRoundTrip(t *testing.T, h Harness) {
	s := open(t, h)
	tbl := allTypesTable("all_types")
	ensure(t, s, tbl)
	kolkata := time.FixedZone("IST", 5*3600+1800)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	rows := []map[string]any{
		{
			"k": int64(1), "s": "héllo ✓ \"quoted\"\nsecond line\ttab", "i": int64(math.MaxInt64),
			"f": 3.141592653589793, "n": rat("-12345678901234567890.123456789"), "b": true,
			"ts": time.Date(2024, 2, 29, 23, 59, 59, 123456000, kolkata), "d": date(1969, 7, 20),
			"j": `{"b": [1, 2.5, "x", null], "a": {"nested": true}, "u": "ü"}`, "by": []byte{0x00, 0xff, 0x10},
		},
		{"k": int64(2), "s": nil, "i": nil, "f": nil, "n": nil, "b": nil, "ts": nil, "d": nil, "j": nil, "by": nil},
		{
			"k": int64(3), "s": "", "i": int64(0), "f": 0.0, "n": rat("0"), "b": false,
			"ts": time.Unix(0, 0).UTC(), "d": date(1970, 1, 1), "j": `{}`, "by": []byte{},
		},
		{
			"k": int64(4), "s": "𝄞🎉 four-byte runes", "i": int64(math.MinInt64), "f": -1.5e-300,
			"n": rat("0.000000001"), "b": true, "ts": time.Date(1900, 1, 1, 0, 0, 0, 1000, time.UTC),
			"d": date(9999, 12, 31), "j": `"just a string"`, "by": all,
		},
		{
			"k": int64(-5), "s": strings.Repeat("long ", 2000), "i": int64(-1), "f": 1e308,
			"n": rat("99999999999999999999999999999.999999999"), "b": false,
			"ts": time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC), "d": date(1, 1, 1),
			"j": `[1e3, -0.5, 1234567890123]`, "by": []byte("plain ascii"),
		},
		// Only some columns given: the others are NULL.
		{"k": int64(6), "n": rat("-0.5"), "d": date(2024, 2, 29)},
	}
	var batch []sinks.Row
	for i, v := range rows {
		batch = append(batch, upsert(100, uint64(i), v))
	}
	write(t, s, tbl.Name, batch)
	assertRows(t, tbl, h.Rows(t, s, tbl.Name), rows)
}

func testInvalidTable(t *testing.T, h Harness) {
	s := open(t, h)
	for _, tc := range []struct {
		name   string
		mutate func(*sinks.Table)
	}{
		{"no key", func(tb *sinks.Table) { tb.PrimaryKey = nil }},
		{"key column missing", func(tb *sinks.Table) { tb.PrimaryKey = []string{"nope"} }},
		{"nullable key column", func(tb *sinks.Table) { tb.PrimaryKey = []string{"amount"} }},
		{"partition by a string", func(tb *sinks.Table) { tb.PartitionBy = "status" }},
		{"partition column missing", func(tb *sinks.Table) { tb.PartitionBy = "nope" }},
		{"cluster column missing", func(tb *sinks.Table) { tb.ClusterBy = []string{"nope"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := ordersTable("orders_invalid_" + strings.ReplaceAll(tc.name, " ", "_"))
			tc.mutate(&tbl)
			if err := s.EnsureTable(ctx(t), tbl); !errors.Is(err, sinks.ErrInvalidTable) {
				t.Fatalf("EnsureTable: %v, want sinks.ErrInvalidTable", err)
			}
			_, err := s.Write(ctx(t), tbl.Name, []sinks.Row{upsert(1, 0, order(1, "placed", "", 1))})
			if !errors.Is(err, sinks.ErrUnknownTable) {
				t.Fatalf("Write to the refused table: %v, want sinks.ErrUnknownTable", err)
			}
		})
	}
}

func testUnknownTable(t *testing.T, h Harness) {
	s := open(t, h)
	ensure(t, s, ordersTable("orders_known"))
	_, err := s.Write(ctx(t), "orders_never_ensured", []sinks.Row{upsert(1, 0, order(1, "placed", "", 1))})
	if !errors.Is(err, sinks.ErrUnknownTable) {
		t.Fatalf("Write: %v, want sinks.ErrUnknownTable", err)
	}
}
