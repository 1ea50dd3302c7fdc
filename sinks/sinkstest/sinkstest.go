// Package sinkstest is the acceptance suite every sinks.Sink runs, and a shared
// benchmark. A sink package plugs in a Harness:
//
//	func TestSink(t *testing.T) {
//		sinkstest.Run(t, sinkstest.Harness{New: ..., Rows: ..., FailNextWrites: ..., MaxBatchRows: 50_000})
//	}
//
// The suite checks the contract of sinks.Sink by reading rows back from the
// warehouse and comparing them with a reference model: idempotent writes,
// position ordering, tombstones, schema growth, batch splitting, retries, row
// errors and type round trips.
package sinkstest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
)

// Harness connects the suite to one sink implementation.
type Harness struct {
	// New returns a fresh, empty sink (the suite closes it).
	New func(t *testing.T) sinks.Sink
	// Rows returns the live rows of a table (deleted rows excluded), read back from
	// the warehouse, keyed by column name; values normalised so the suite can compare
	// them: int64, float64, string, bool, *big.Rat or its string (NUMERIC), time.Time
	// (TIMESTAMP, compared as instants to the microsecond), time.Time at UTC midnight
	// or "2006-01-02" (DATE), JSON text as string or []byte (compared by meaning),
	// []byte (BYTES), nil for NULL. A column missing from a row reads as NULL; a
	// column the table does not define fails the suite.
	Rows func(t *testing.T, s sinks.Sink, table string) []map[string]any
	// FailNextWrites makes the next n writes of s fail transiently (the harness
	// decides how: a wrapper for DuckDB, server fault injection for BigQuery); the
	// suite wraps s with sinks.WithRetry and expects success. Nil skips that case.
	FailNextWrites func(t *testing.T, s sinks.Sink, n int)
	// MaxBatchRows is a batch size that certainly exceeds one request of this sink
	// (for DuckDB any large number, e.g. 50_000; for BigQuery rows adding up to over
	// 10 MB: each row of that batch carries about 300 bytes). Zero means 50_000.
	MaxBatchRows int
}

// Run runs every case of the suite as a subtest of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Rows == nil {
		t.Fatal("sinkstest: Harness needs New and Rows")
	}
	if h.MaxBatchRows <= 0 {
		h.MaxBatchRows = 50_000
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"SameBatchTwice", testSameBatchTwice},
		{"OutOfOrderBatches", testOutOfOrderBatches},
		{"VersionsWithinBatch", testVersionsWithinBatch},
		{"DeleteThenLateOlderUpsert", testDeleteThenLateOlderUpsert},
		{"DeleteThenNewerUpsert", testDeleteThenNewerUpsert},
		{"ReplayFromStart", testReplayFromStart},
		{"AddColumn", testAddColumn},
		{"LargeBatch", testLargeBatch},
		{"TransientFailureThenSuccess", testTransientFailure},
		{"BadRowAmongGood", testBadRow},
		{"TypesRoundTrip", testTypesRoundTrip},
		{"InvalidTable", testInvalidTable},
		{"UnknownTable", testUnknownTable},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, h) })
	}
}

// open returns a fresh sink, closed when the test ends.
func open(t *testing.T, h Harness) sinks.Sink {
	t.Helper()
	s := h.New(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// ctx bounds every call so that a hung sink fails the test instead of the run.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func ensure(t *testing.T, s sinks.Sink, tbl sinks.Table) {
	t.Helper()
	if err := s.EnsureTable(ctx(t), tbl); err != nil {
		t.Fatalf("EnsureTable(%s): %v", tbl.Name, err)
	}
}

// write writes rows and fails the test on any error, row errors included.
func write(t *testing.T, s sinks.Sink, table string, rows []sinks.Row) {
	t.Helper()
	rowErrs, err := s.Write(ctx(t), table, rows)
	if err != nil {
		t.Fatalf("Write(%s, %d rows): %v", table, len(rows), err)
	}
	if len(rowErrs) > 0 {
		t.Fatalf("Write(%s, %d rows): unexpected row errors %v", table, len(rows), rowErrs)
	}
}

func upsert(lsn, seq uint64, values map[string]any) sinks.Row {
	return sinks.Row{Op: sinks.Upsert, Values: values, Pos: sinks.Position{LSN: lsn, Seq: seq}}
}

func del(lsn, seq uint64, key map[string]any) sinks.Row {
	return sinks.Row{Op: sinks.Delete, Values: key, Pos: sinks.Position{LSN: lsn, Seq: seq}}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
