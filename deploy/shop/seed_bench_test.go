package shop_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/starstream/starstream/deploy/shop"
)

// BenchmarkSeed measures bulk loading at a few scales (scale 225 is about a
// million rows): go test -run '^$' -bench Seed ./deploy/shop/
func BenchmarkSeed(b *testing.B) {
	for _, scale := range []int{1, 10, 225} {
		b.Run(fmt.Sprintf("scale=%d", scale), func(b *testing.B) {
			db := testConn(b)
			var rows int64
			for b.Loop() {
				b.StopTimer()
				schema := fmt.Sprintf("shop_bench_%d", scale)
				if err := shop.Drop(context.Background(), db, schema); err != nil {
					b.Fatal(err)
				}
				if err := shop.Create(context.Background(), db, schema); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				stats, err := shop.Seed(context.Background(), db, shop.SeedConfig{Schema: schema, Scale: scale, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				rows = stats.Total
				b.StopTimer()
				if err := shop.Drop(context.Background(), db, schema); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
