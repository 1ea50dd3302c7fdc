package facts

import (
	"context"
	"math/big"
	"runtime"
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

// BenchmarkSalesLineMemory reports the Go heap fact_sales keeps per order item
// (bytes/line): every line stays in memory as long as its item, so this is what
// a pipeline's memory grows by with the fact table (docs/design.md). Baseline in
// the same run: the decoded order_items records the lines were made from
// (bytes/record), which a naive pipeline would keep.
func BenchmarkSalesLineMemory(b *testing.B) {
	const lines = 100_000
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	batch := func(from, to int) []stream.Record {
		var recs []stream.Record
		if from == 0 {
			recs = append(recs, stream.Record{Event: stream.Event{Table: "orders", Op: stream.OpInsert, Key: map[string]any{"order_id": int64(1)},
				After: orderRow(1, 1, "placed", now), Pos: stream.Position{LSN: 100}, CommitTime: now}})
		}
		for i := from; i < to; i++ {
			id := int64(1_000_000 + i)
			row := itemRow(id, int64(1+i%3), big.NewRat(1250, 100), new(big.Rat))
			recs = append(recs, stream.Record{Event: stream.Event{Table: "order_items", Op: stream.OpInsert,
				Key: map[string]any{"order_item_id": id}, After: row, Pos: stream.Position{LSN: 100, Seq: uint64(i + 1)}, CommitTime: now}})
		}
		return recs
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p, _ := salesOnMemory(b)
		before := heap()
		recs := batch(0, lines)
		decoded := heap() - before
		b.StartTimer()
		ctx := context.Background()
		for start := 0; start < len(recs); start += 5000 {
			end := min(start+5000, len(recs))
			wm := stream.LSN(99) // only transactions wholly handed over are below it
			if end == len(recs) {
				wm = 100
			}
			if _, err := p.Process(ctx, stream.Batch{Records: recs[start:end], Watermark: wm, Final: end == len(recs)}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		recs = nil
		kept := heap() - before
		b.ReportMetric(float64(kept)/lines, "bytes/line")
		b.ReportMetric(float64(decoded)/lines, "bytes/record")
		runtime.KeepAlive(p)
	}
}
