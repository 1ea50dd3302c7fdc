package bigquery

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"

	"github.com/starstream/starstream/sinks/bigquery/bqtest"
	"github.com/starstream/starstream/sinks/sinkstest"
)

// BenchmarkUpsert1M writes the shared 1,000,000-row upsert workload
// (sinkstest.Bench) through the Writer into the double, for two batch sizes.
// Each case also measures a baseline in the same run: the same rows, already
// serialized (untimed), appended through the same managedwriter stream and
// double, one acknowledged append per batch. x-raw = rows/s ÷ raw-rows/s is what
// the Writer's own work (validation, encoding, splitting) leaves of the
// client+double throughput.
func BenchmarkUpsert1M(b *testing.B) {
	for _, batch := range []int{500, 5000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			srv, err := bqtest.Start()
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			w, err := New(b.Context(), Config{
				Project: "bench", Dataset: "bench",
				WriteOptions: srv.WriteOptions(), RESTOptions: srv.RESTOptions(),
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()

			raw := rawRate(b, w, batch)
			sinkstest.Bench(b, w, batch)
			rate := float64(sinkstest.BenchRows) * float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(raw, "raw-rows/s")
			b.ReportMetric(rate/raw, "x-raw")
		})
	}
}

// rawRate appends pre-serialized workload rows with managedwriter directly and
// returns rows/s, timing only the appends and their acknowledgements.
func rawRate(b *testing.B, w *Writer, batch int) float64 {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	ctx := b.Context()
	tbl := sinkstest.FactTable(fmt.Sprintf("raw_fact_%d_%d", batch, time.Now().UnixNano()))
	if err := w.EnsureTable(ctx, tbl); err != nil {
		b.Fatal(err)
	}
	w.mu.Lock()
	st := *w.tables[tbl.Name]
	w.mu.Unlock()
	runtime.GC()
	var elapsed time.Duration
	for first := 0; first < sinkstest.BenchRows; first += batch {
		rows := sinkstest.FactRows(first, min(batch, sinkstest.BenchRows-first))
		enc, _ := encodeRows(st.schema, st.pk, rows, func(i int, err error) { b.Fatalf("row %d: %v", i, err) })
		start := time.Now()
		res, err := st.stream.AppendRows(ctx, enc)
		if err == nil {
			_, err = res.GetResult(ctx)
		}
		elapsed += time.Since(start)
		if err != nil {
			b.Fatalf("raw append: %v", err)
		}
	}
	// Free the double's copy of the baseline table so both measurements start
	// from the same heap.
	if err := w.rest.Dataset(w.cfg.Dataset).Table(tbl.Name).Delete(ctx); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	return float64(sinkstest.BenchRows) / elapsed.Seconds()
}

// BenchmarkEncode isolates the Writer's own per-row work (checks and proto
// encoding of the workload's rows), without the client or the double.
func BenchmarkEncode(b *testing.B) {
	rs, err := newRowSchema(mustSchema(b))
	if err != nil {
		b.Fatal(err)
	}
	rows := sinkstest.FactRows(0, 5000)
	pk := sinkstest.FactTable("f").PrimaryKey
	b.ReportAllocs()
	for b.Loop() {
		enc, _ := encodeRows(rs, pk, rows, func(i int, err error) { b.Fatalf("row %d: %v", i, err) })
		if len(enc) != len(rows) {
			b.Fatal("rows lost")
		}
	}
	b.ReportMetric(float64(len(rows))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func mustSchema(b *testing.B) bigquery.Schema {
	var s bigquery.Schema
	for _, c := range sinkstest.FactTable("f").Columns {
		s = append(s, fieldSchema(c))
	}
	return s
}
