package duckdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/sinkstest"
)

// faultSink makes the next fail writes of a Writer fail transiently.
type faultSink struct {
	*Writer
	fail atomic.Int64
}

func (f *faultSink) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	if f.fail.Add(-1) >= 0 {
		return nil, fmt.Errorf("injected fault: %w", sinks.ErrTransient)
	}
	return f.Writer.Write(ctx, table, rows)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openMemory(t testing.TB) *Writer {
	t.Helper()
	w, err := Open("", testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func TestSink(t *testing.T) {
	sinkstest.Run(t, sinkstest.Harness{
		New: func(t *testing.T) sinks.Sink { return &faultSink{Writer: openMemory(t)} },
		Rows: func(t *testing.T, s sinks.Sink, table string) []map[string]any {
			return liveRows(t, s.(*faultSink).Writer, table)
		},
		FailNextWrites: func(t *testing.T, s sinks.Sink, n int) { s.(*faultSink).fail.Store(int64(n)) },
		MaxBatchRows:   50_000,
	})
}

// liveRows reads the user view of table, JSON as text and times in UTC.
func liveRows(t *testing.T, w *Writer, table string) []map[string]any {
	t.Helper()
	_, types, err := w.Query(t.Context(), `SELECT column_name, data_type FROM duckdb_columns()
		WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index`, table)
	if err != nil {
		t.Fatalf("read columns of %s: %v", table, err)
	}
	var sel []string
	for _, r := range types {
		name := quote(r[0].(string))
		if r[1] == "JSON" {
			name = "CAST(" + name + " AS VARCHAR) AS " + name
		}
		sel = append(sel, name)
	}
	cols, rows, err := w.Query(t.Context(), "SELECT "+strings.Join(sel, ", ")+" FROM "+quote(table))
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		m := make(map[string]any, len(cols))
		for j, c := range cols {
			v := r[j]
			if ts, ok := v.(time.Time); ok {
				v = ts.UTC()
			}
			m[c] = v
		}
		out[i] = m
	}
	return out
}

func ordersTable(name string) sinks.Table {
	return sinks.Table{
		Name:        name,
		Description: "orders",
		Columns: []sinks.Column{
			{Name: "order_id", Type: sinks.Int64, Description: "the order's id"},
			{Name: "status", Type: sinks.String},
			{Name: "amount", Type: sinks.Numeric, Nullable: true},
		},
		PrimaryKey: []string{"order_id"},
	}
}

func order(id int64, status string, lsn uint64) sinks.Row {
	return sinks.Row{
		Op:     sinks.Upsert,
		Values: map[string]any{"order_id": id, "status": status, "amount": big.NewRat(id*100+1, 100)},
		Pos:    sinks.Position{LSN: lsn},
	}
}

func mustEnsure(t testing.TB, w *Writer, tbl sinks.Table) {
	t.Helper()
	if err := w.EnsureTable(t.Context(), tbl); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
}

func mustWrite(t testing.TB, w sinks.Sink, table string, rows ...sinks.Row) {
	t.Helper()
	rowErrs, err := w.Write(t.Context(), table, rows)
	if err != nil || len(rowErrs) > 0 {
		t.Fatalf("Write: %v %v", err, rowErrs)
	}
}

func count(t *testing.T, w *Writer, query string, args ...any) int64 {
	t.Helper()
	_, rows, err := w.Query(t.Context(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return rows[0][0].(int64)
}

func TestViewHidesTombstonesAndBookkeeping(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	mustEnsure(t, w, ordersTable("orders"))
	mustWrite(t, w, "orders", order(1, "placed", 10), order(2, "placed", 10))
	mustWrite(t, w, "orders", sinks.Row{Op: sinks.Delete, Values: map[string]any{"order_id": int64(2)}, Pos: sinks.Position{LSN: 20}})

	cols, rows, err := w.Query(t.Context(), `SELECT * FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cols, []string{"order_id", "status", "amount"}) {
		t.Errorf("view columns = %v, want the user columns only", cols)
	}
	if len(rows) != 1 || rows[0][0] != int64(1) || rows[0][2].(*big.Rat).Cmp(big.NewRat(101, 100)) != 0 {
		t.Errorf("view rows = %v, want order 1 only", rows)
	}
	_, phys, err := w.Query(t.Context(), `SELECT order_id, status, _pos_lsn, _deleted FROM orders__rows ORDER BY order_id`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{int64(1), "placed", uint64(10), false}, {int64(2), nil, uint64(20), true}}
	if fmt.Sprint(phys) != fmt.Sprint(want) {
		t.Errorf("physical rows = %v, want %v (tombstone with its position)", phys, want)
	}
	_, comments, err := w.Query(t.Context(), `SELECT table_name, comment FROM duckdb_columns()
		WHERE column_name = 'order_id' AND comment IS NOT NULL ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(comments) != "[[orders the order's id] [orders__rows the order's id]]" {
		t.Errorf("column comments = %v", comments)
	}
	if n := count(t, w, `SELECT count(*) FROM duckdb_views() WHERE view_name = 'orders' AND comment = 'orders'`); n != 1 {
		t.Errorf("view comment missing")
	}
}

func TestConcurrentWritesToDifferentTables(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	const pipelines, batches, batchRows = 6, 15, 400
	var wg sync.WaitGroup
	errs := make(chan error, pipelines)
	for p := range pipelines {
		wg.Go(func() {
			name := fmt.Sprintf("orders_%d", p)
			if err := w.EnsureTable(t.Context(), ordersTable(name)); err != nil {
				errs <- err
				return
			}
			for b := range batches {
				rows := make([]sinks.Row, batchRows)
				for i := range rows {
					// Keys overlap between batches: later batches update earlier rows.
					rows[i] = order(int64(b*batchRows/2+i), fmt.Sprintf("batch %d", b), uint64(b+1))
				}
				if rowErrs, err := w.Write(t.Context(), name, rows); err != nil || len(rowErrs) > 0 {
					errs <- fmt.Errorf("%s batch %d: %v %v", name, b, err, rowErrs)
					return
				}
				// A reader alongside the writers.
				if _, _, err := w.Query(t.Context(), "SELECT count(*) FROM "+name); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for p := range pipelines {
		name := fmt.Sprintf("orders_%d", p)
		wantRows := int64((batches-1)*batchRows/2 + batchRows)
		if n := count(t, w, "SELECT count(*) FROM "+name); n != wantRows {
			t.Errorf("%s: %d rows, want %d", name, n, wantRows)
		}
		last := fmt.Sprintf("batch %d", batches-1)
		if n := count(t, w, "SELECT count(*) FROM "+name+" WHERE status = ?", last); n != batchRows {
			t.Errorf("%s: %d rows from the last batch, want %d", name, n, batchRows)
		}
	}
}

func TestReopenPersists(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "warehouse.duckdb")
	w, err := Open(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tbl := ordersTable("orders")
	mustEnsure(t, w, tbl)
	mustWrite(t, w, "orders", order(1, "placed", 10), order(2, "placed", 10), order(3, "placed", 10))
	mustWrite(t, w, "orders", sinks.Row{Op: sinks.Delete, Values: map[string]any{"order_id": int64(3)}, Pos: sinks.Position{LSN: 30}})
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := w.Write(t.Context(), "orders", []sinks.Row{order(4, "placed", 40)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}

	w, err = Open(path, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(t.Context(), "orders", []sinks.Row{order(4, "placed", 40)}); !errors.Is(err, sinks.ErrUnknownTable) {
		t.Errorf("Write before EnsureTable: %v, want sinks.ErrUnknownTable", err)
	}
	mustEnsure(t, w, tbl)
	// Positions and tombstones persist: stale versions change nothing.
	mustWrite(t, w, "orders", order(1, "stale", 5), order(3, "resurrected?", 20), order(2, "paid", 50))
	_, rows, err := w.Query(t.Context(), `SELECT order_id, status FROM orders ORDER BY order_id`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows); got != "[[1 placed] [2 paid]]" {
		t.Errorf("rows after reopen = %s, want [[1 placed] [2 paid]]", got)
	}
}

func TestEnsureTableRefusesIncompatibleChanges(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	base := ordersTable("orders")
	mustEnsure(t, w, base)
	for name, mutate := range map[string]func(*sinks.Table){
		"other key": func(tb *sinks.Table) { tb.PrimaryKey = []string{"status"} },
		"other type": func(tb *sinks.Table) {
			tb.Columns[2].Type = sinks.Float64
		},
		"new NOT NULL column": func(tb *sinks.Table) {
			tb.Columns = append(tb.Columns, sinks.Column{Name: "channel", Type: sinks.String})
		},
		"reserved column": func(tb *sinks.Table) {
			tb.Columns = append(tb.Columns, sinks.Column{Name: "_deleted", Type: sinks.Bool, Nullable: true})
		},
		"unknown type": func(tb *sinks.Table) {
			tb.Columns = append(tb.Columns, sinks.Column{Name: "x", Type: "GEOGRAPHY", Nullable: true})
		},
		"writer's own name": func(tb *sinks.Table) { tb.Name = "orders__rows" },
	} {
		tb := base
		tb.Columns = slices.Clone(base.Columns)
		mutate(&tb)
		if err := w.EnsureTable(t.Context(), tb); !errors.Is(err, sinks.ErrInvalidTable) {
			t.Errorf("%s: EnsureTable = %v, want sinks.ErrInvalidTable", name, err)
		}
	}
	// The table still works with its first definition.
	mustWrite(t, w, "orders", order(1, "placed", 1))
}

func TestWriteCancelledRollsBack(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	mustEnsure(t, w, ordersTable("orders"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := w.Write(ctx, "orders", []sinks.Row{order(1, "placed", 1)}); err == nil {
		t.Fatal("Write with a cancelled context succeeded")
	}
	// No transaction is left open: the next write works and the first left nothing.
	mustWrite(t, w, "orders", order(2, "placed", 1))
	if n := count(t, w, `SELECT count(*) FROM orders`); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

func TestScaleNumeric(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string
		fits bool
	}{
		{"1.5", "1500000000", true},
		{"-0.000000001", "-1", true},
		{"1.0000000005", "1000000001", true}, // half away from zero
		{"-1.0000000005", "-1000000001", true},
		{"1.00000000049", "1000000000", true},
		{"1/3", "333333333", true},
		{"-2/3", "-666666667", true},
		{"99999999999999999999999999999.999999999", "99999999999999999999999999999999999999", true},
		{"100000000000000000000000000000", "", false},
	} {
		r, _ := new(big.Rat).SetString(tc.in)
		got, fits := scaleNumeric(r)
		if fits != tc.fits || (fits && got.String() != tc.want) {
			t.Errorf("scaleNumeric(%s) = %v, %v; want %s, %v", tc.in, got, fits, tc.want, tc.fits)
		}
	}
}

func TestDateTakesTheCalendarDate(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	tbl := sinks.Table{Name: "days", Columns: []sinks.Column{{Name: "d", Type: sinks.Date}}, PrimaryKey: []string{"d"}}
	mustEnsure(t, w, tbl)
	east := time.FixedZone("UTC+14", 14*3600)
	west := time.FixedZone("UTC-11", -11*3600)
	mustWrite(t, w, "days",
		sinks.Row{Values: map[string]any{"d": time.Date(2024, 3, 1, 0, 0, 0, 0, east)}, Pos: sinks.Position{LSN: 1}},
		sinks.Row{Values: map[string]any{"d": time.Date(1960, 12, 31, 23, 0, 0, 0, west)}, Pos: sinks.Position{LSN: 1}})
	_, rows, err := w.Query(t.Context(), `SELECT CAST(d AS VARCHAR) FROM days ORDER BY d`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rows); got != "[[1960-12-31] [2024-03-01]]" {
		t.Errorf("dates = %s", got)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	conflict := &duckdb.Error{Type: duckdb.ErrorTypeTransaction, Msg: "TransactionContext Error: Conflict on tuple deletion!"}
	if err := classify(fmt.Errorf("merge: %w", conflict)); !sinks.IsTransient(err) || !errors.As(err, new(*duckdb.Error)) {
		t.Errorf("conflict: %v, want transient and still a *duckdb.Error", err)
	}
	constraint := &duckdb.Error{Type: duckdb.ErrorTypeConstraint, Msg: "Constraint Error: NOT NULL"}
	if sinks.IsTransient(classify(constraint)) {
		t.Error("constraint violation classified transient")
	}
}

func TestBatchKeepsNewestPerCompositeKey(t *testing.T) {
	t.Parallel()
	w := openMemory(t)
	defer w.Close()
	tbl := sinks.Table{
		Name: "events",
		Columns: []sinks.Column{
			{Name: "source", Type: sinks.String},
			{Name: "at", Type: sinks.Timestamp},
			{Name: "n", Type: sinks.Int64},
			{Name: "v", Type: sinks.String, Nullable: true},
		},
		PrimaryKey: []string{"source", "at", "n"},
	}
	mustEnsure(t, w, tbl)
	at := time.Date(2025, 5, 1, 12, 0, 0, 123456000, time.UTC)
	row := func(source string, when time.Time, n int64, v string, lsn, seq uint64) sinks.Row {
		return sinks.Row{Values: map[string]any{"source": source, "at": when, "n": n, "v": v}, Pos: sinks.Position{LSN: lsn, Seq: seq}}
	}
	mustWrite(t, w, "events",
		row("a", at, 1, "a1 old", 10, 0),
		row("a", at.In(time.FixedZone("x", 7200)), 1, "a1 new", 11, 0), // same instant, other zone: same key
		row("a", at, 1, "a1 older", 9, 5),
		row("a", at, 2, "a2", 10, 0),
		row("a\x001", at, 1, "separator in a string", 10, 0),
		row("b", at, 1, "b1 first", 12, 3),
		row("b", at, 1, "b1 tie, later row", 12, 3),
		sinks.Row{Op: sinks.Delete, Values: map[string]any{"source": "a", "at": at, "n": int64(2)}, Pos: sinks.Position{LSN: 10, Seq: 1}},
	)
	_, rows, err := w.Query(t.Context(), `SELECT source, n, v FROM events ORDER BY source, n`)
	if err != nil {
		t.Fatal(err)
	}
	want := "[[a 1 a1 new] [a\x001 1 separator in a string] [b 1 b1 tie, later row]]"
	if got := fmt.Sprint(rows); got != want {
		t.Errorf("rows = %q, want %q", got, want)
	}
}
