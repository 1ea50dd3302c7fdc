package duckdb

import (
	"database/sql/driver"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/starstream/starstream/sinks/sinkstest"
)

// BenchmarkUpsert1M writes the sinkstest workload (1,000,000 rows: half inserts,
// half updates) into a file database, next to a baseline that appends the same
// rows, already converted, into a table with no key and no merge: raw DuckDB
// ingest speed. Compare their rows/s.
//
//	go test ./sinks/duckdb -run '^$' -bench Upsert1M -benchtime 1x
func BenchmarkUpsert1M(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("upsert/batch=%d", size), func(b *testing.B) {
			w, err := Open(filepath.Join(b.TempDir(), "bench.duckdb"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			sinkstest.Bench(b, w, size)
		})
		b.Run(fmt.Sprintf("append_baseline/batch=%d", size), func(b *testing.B) {
			benchAppend(b, size)
		})
	}
}

// benchAppend appends BenchRows rows per iteration with the Appender, one
// transaction per batch like Write, into a table without a key.
func benchAppend(b *testing.B, batchSize int) {
	w, err := Open(filepath.Join(b.TempDir(), "baseline.duckdb"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	def := sinkstest.FactTable("raw")
	var defs []string
	for _, c := range def.Columns {
		defs = append(defs, quote(c.Name)+" "+sqlTypes[c.Type])
	}
	cols := make([]column, len(def.Columns))
	for i, c := range def.Columns {
		cols[i] = column{name: c.Name, typ: c.Type}
	}
	ctx := b.Context()
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		name := fmt.Sprintf("raw_%d", iter)
		if _, err := w.conn.ExecContext(ctx, "CREATE TABLE "+name+" ("+strings.Join(defs, ", ")+")"); err != nil {
			b.Fatal(err)
		}
		for first := 0; first < sinkstest.BenchRows; first += batchSize {
			b.StopTimer()
			rows := sinkstest.FactRows(first, min(batchSize, sinkstest.BenchRows-first))
			vals := make([][]driver.Value, len(rows))
			for i, r := range rows {
				vals[i] = make([]driver.Value, len(cols))
				for j, c := range cols {
					vals[i][j], _ = convert(c, r.Values[c.name])
				}
			}
			b.StartTimer()
			err := w.inTx(ctx, func() error {
				return w.conn.Raw(func(dc any) error {
					a, err := duckdb.NewAppender(dc.(driver.Conn), "", "main", name)
					if err != nil {
						return err
					}
					for _, v := range vals {
						if err := a.AppendRow(v...); err != nil {
							a.Close()
							return err
						}
					}
					return a.Close()
				})
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(sinkstest.BenchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
