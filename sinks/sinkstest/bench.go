package sinkstest

import (
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
)

// BenchRows is how many rows one iteration of Bench writes.
const BenchRows = 1_000_000

// FactTable is the fact-like table of the benchmark workload: ten columns, two
// of them NUMERIC, a TIMESTAMP and a DATE partition.
func FactTable(name string) sinks.Table {
	return sinks.Table{
		Name: name,
		Columns: []sinks.Column{
			{Name: "order_item_id", Type: sinks.Int64},
			{Name: "order_id", Type: sinks.Int64},
			{Name: "customer_key", Type: sinks.Int64},
			{Name: "product_key", Type: sinks.Int64},
			{Name: "quantity", Type: sinks.Int64},
			{Name: "unit_price", Type: sinks.Numeric},
			{Name: "net", Type: sinks.Numeric},
			{Name: "status", Type: sinks.String},
			{Name: "ordered_at", Type: sinks.Timestamp},
			{Name: "order_date", Type: sinks.Date},
		},
		PrimaryKey:  []string{"order_item_id"},
		PartitionBy: "order_date",
	}
}

// FactRows returns rows [first, first+n) of the workload. Row i upserts order item
// i mod BenchRows/2 at a position growing with i, so the first half of the
// workload inserts and the second half updates every row once.
func FactRows(first, n int) []sinks.Row {
	const keys = BenchRows / 2
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([]sinks.Row, n)
	for j := range rows {
		i := first + j
		key := int64(i%keys + 1)
		qty := int64(1 + i%5)
		status := "placed"
		if i >= keys {
			status = "paid"
		}
		price := big.NewRat(key%10_000*100+99, 100)
		net := new(big.Rat).Mul(price, big.NewRat(qty*9, 10))
		orderedAt := base.Add(time.Duration(key)*time.Second + time.Duration(i%1000)*time.Microsecond)
		rows[j] = sinks.Row{
			Op: sinks.Upsert,
			Values: map[string]any{
				"order_item_id": key,
				"order_id":      key / 4,
				"customer_key":  key * 7919 % 100_000,
				"product_key":   key * 104_729 % 50_000,
				"quantity":      qty,
				"unit_price":    price,
				"net":           net,
				"status":        status,
				"ordered_at":    orderedAt,
				"order_date":    orderedAt.Truncate(24 * time.Hour),
			},
			Pos: sinks.Position{LSN: uint64(i/100 + 1), Seq: uint64(i % 100)},
		}
	}
	return rows
}

// Bench writes BenchRows rows of the workload into a fresh table per iteration in
// batches of batchSize, and reports rows/s. Building the rows is not timed.
func Bench(b *testing.B, s sinks.Sink, batchSize int) {
	b.Helper()
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		tbl := FactTable(fmt.Sprintf("bench_fact_%d_%d", batchSize, iter))
		if err := s.EnsureTable(b.Context(), tbl); err != nil {
			b.Fatalf("EnsureTable: %v", err)
		}
		for first := 0; first < BenchRows; first += batchSize {
			b.StopTimer()
			rows := FactRows(first, min(batchSize, BenchRows-first))
			b.StartTimer()
			rowErrs, err := s.Write(b.Context(), tbl.Name, rows)
			if err != nil || len(rowErrs) > 0 {
				b.Fatalf("Write: %v %v", err, rowErrs)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(BenchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
