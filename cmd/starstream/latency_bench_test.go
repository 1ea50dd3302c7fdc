package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/duckdb"
)

// latencySink records, for rows of dim_customer and fact_sales that appear for
// the first time, how long after their source commit the warehouse acknowledged
// them (valid_from and ordered_at are the commit times).
type latencySink struct {
	sinks.Sink
	mu    sync.Mutex
	seen  map[string]bool
	lat   map[string][]time.Duration
	rows  int64
	start time.Time
}

func (s *latencySink) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	errs, err := s.Sink.Write(ctx, table, rows)
	if err != nil {
		return errs, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows += int64(len(rows))
	col := map[string]string{"dim_customer": "valid_from", "fact_sales": "ordered_at"}[table]
	if col == "" {
		return errs, nil
	}
	for _, r := range rows {
		t, ok := r.Values[col].(time.Time)
		if !ok || s.start.IsZero() || t.Before(s.start) {
			continue // snapshot rows: their commit is before the run
		}
		k := table + fmt.Sprint(r.Values["customer_key"], r.Values["order_item_id"])
		if s.seen[k] {
			continue
		}
		s.seen[k] = true
		s.lat[table] = append(s.lat[table], now.Sub(t))
	}
	return errs, nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func peakRSS() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "?"
}

// BenchmarkEndToEndLatency runs capture and every pipeline in this process at a
// steady generated rate (STARSTREAM_BENCH_RATE transactions/s, default 100, for
// STARSTREAM_BENCH_SECONDS, default 30) and reports p50/p99/max latency from source
// commit to the row acknowledged by the warehouse, for a dimension (dim_customer)
// and a fact (fact_sales), the rows applied per second, and peak RSS. The baseline
// in the same run is the generator's achieved transaction rate: the pipeline keeps
// up when applied rows grow with it and latency stays flat.
func BenchmarkEndToEndLatency(b *testing.B) {
	rate, seconds := 100.0, 30
	if v, err := strconv.ParseFloat(os.Getenv("STARSTREAM_BENCH_RATE"), 64); err == nil {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("STARSTREAM_BENCH_SECONDS")); err == nil {
		seconds = v
	}
	for i := 0; i < b.N; i++ {
		ctx := context.Background()
		schema := capturetest.NewSchema(b)
		db := capturetest.Connect(b)
		if err := shop.Create(ctx, db, schema); err != nil {
			b.Fatal(err)
		}
		if _, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: schema, Scale: 1, Seed: 1}); err != nil {
			b.Fatal(err)
		}
		cfg, err := LoadConfig("", nil)
		if err != nil {
			b.Fatal(err)
		}
		slot := capturetest.Unique(b, "s")
		cfg.Postgres.DSN, cfg.Postgres.Schema, cfg.Postgres.Slot, cfg.Postgres.Publication = capturetest.DSN(), schema, slot, slot
		cfg.Kafka.Brokers, cfg.Pipelines.Namespace = capturetest.Brokers(), schema+"."
		b.Cleanup(func() { capturetest.DropSlot(b, capturetestConfig(schema, slot)) })
		a, err := newApp(cfg)
		if err != nil {
			b.Fatal(err)
		}
		a.log = capturetest.Logger(b)
		wh, err := duckdb.Open(filepath.Join(b.TempDir(), "w.duckdb"), a.log)
		if err != nil {
			b.Fatal(err)
		}
		sink := &latencySink{Sink: wh, seen: map[string]bool{}, lat: map[string][]time.Duration{}}
		kw, err := a.writer()
		if err != nil {
			b.Fatal(err)
		}
		capt, err := a.capture(kw, nil)
		if err != nil {
			b.Fatal(err)
		}
		ps, err := a.buildPipelines(a.env(sink), nil, false)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		g, gctx := errgroup.WithContext(runCtx)
		g.Go(func() error { return capt.Run(gctx) })
		var sales pipeline
		for _, p := range ps {
			if p.Name() == "fact_sales" {
				sales = p
			}
			g.Go(func() error { return p.Run(gctx) })
		}
		for sales.Stats().Watermark == 0 { // snapshot done, streaming
			time.Sleep(100 * time.Millisecond)
		}
		pool, err := pgxpool.New(ctx, capturetest.DSN())
		if err != nil {
			b.Fatal(err)
		}
		gen, err := shop.NewGenerator(pool, shop.GeneratorConfig{Schema: schema, Rate: rate, Seed: 3}, a.log)
		if err != nil {
			b.Fatal(err)
		}
		sink.mu.Lock()
		sink.start, sink.rows, sink.lat = time.Now(), 0, map[string][]time.Duration{}
		sink.mu.Unlock()
		b.ResetTimer()
		genCtx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second)
		_ = gen.Run(genCtx)
		cancel()
		fence := capturetest.Fence(b, db)
		for sales.Stats().Watermark < fence {
			time.Sleep(100 * time.Millisecond)
		}
		elapsed := time.Since(sink.start)
		b.StopTimer()
		stop()
		_ = g.Wait()
		kw.Close()
		pool.Close()
		wh.Close()
		var txs int64
		for _, n := range gen.Stats() {
			txs += n
		}
		sink.mu.Lock()
		for _, table := range []string{"dim_customer", "fact_sales"} {
			d := sink.lat[table]
			fmt.Printf("%-13s n=%d p50=%s p99=%s max=%s\n", table, len(d), percentile(d, 0.50).Round(time.Millisecond),
				percentile(d, 0.99).Round(time.Millisecond), percentile(d, 1).Round(time.Millisecond))
		}
		fmt.Printf("source: %.0f tx/s generated (target %.0f); warehouse: %.0f rows/s applied; peak RSS %s\n",
			float64(txs)/float64(seconds), rate, float64(sink.rows)/elapsed.Seconds(), peakRSS())
		b.ReportMetric(percentile(sink.lat["fact_sales"], 0.99).Seconds()*1000, "fact-p99-ms")
		b.ReportMetric(percentile(sink.lat["dim_customer"], 0.99).Seconds()*1000, "dim-p99-ms")
		b.ReportMetric(float64(sink.rows)/elapsed.Seconds(), "rows/s")
		sink.mu.Unlock()
	}
}
