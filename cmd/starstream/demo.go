package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// sampleQuery joins fact_sales to the customer versions valid at each sale.
const sampleQuery = `SELECT c.city, c.loyalty_tier, count(*) AS items, sum(f.net_amount) AS revenue
FROM fact_sales f JOIN dim_customer c ON c.customer_key = f.customer_key
GROUP BY c.city, c.loyalty_tier ORDER BY revenue DESC LIMIT 10`

func demoCmd(a *app) *cobra.Command {
	var scale int
	var rate float64
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Seed the source, then run capture, every pipeline and the traffic generator in one process",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), a, scale, rate, duration)
		},
	}
	cmd.Flags().IntVar(&scale, "scale", 1, "seed size multiplier when the source is empty")
	cmd.Flags().Float64Var(&rate, "rate", 20, "generated transactions per second")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	return cmd
}

// countingWriter counts the events capture publishes.
type countingWriter struct {
	capture.Writer
	events atomic.Int64
}

func (w *countingWriter) Write(ctx context.Context, events []stream.Event) error {
	if err := w.Writer.Write(ctx, events); err != nil {
		return err
	}
	w.events.Add(int64(len(events)))
	return nil
}

func runDemo(parent context.Context, a *app, scale int, rate float64, duration time.Duration) error {
	if a.cfg.Warehouse.Kind != "duckdb" {
		return errors.New("demo runs on the embedded duckdb warehouse")
	}
	ctx := parent
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(parent, duration)
		defer cancel()
	}
	db, err := a.pool(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := seedIfEmpty(ctx, a, db, scale); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(a.cfg.Warehouse.DuckDBPath), 0o755); err != nil {
		return err
	}
	wh, err := duckdb.Open(a.cfg.Warehouse.DuckDBPath, a.log)
	if err != nil {
		return fmt.Errorf("open warehouse %s (is another starstream process using it?): %w", a.cfg.Warehouse.DuckDBPath, err)
	}
	defer wh.Close()
	sink := sinks.WithRetry(wh, sinks.RetryPolicy{}, a.log)
	o, err := a.observe(ctx, sink)
	if err != nil {
		return err
	}
	defer o.close()
	ps, err := a.buildPipelines(o.env, nil, false)
	if err != nil {
		return err
	}
	kw, err := a.writer()
	if err != nil {
		return err
	}
	defer kw.Close()
	cw := &countingWriter{Writer: kw}
	capt, err := a.capture(cw, o.tel.Meter("github.com/starstream/starstream/capture"))
	if err != nil {
		return err
	}
	observers, err := a.observers(o.tel, ps, o.db, a.captureStatus(cw.events.Load))
	if err != nil {
		return err
	}
	gen, err := shop.NewGenerator(db, shop.GeneratorConfig{Schema: a.cfg.Postgres.Schema, Rate: rate, Seed: time.Now().UnixNano()}, a.log)
	if err != nil {
		return err
	}
	fmt.Printf("starstream demo: capturing schema %q into Kafka %v, warehouse %s; Ctrl-C stops\n",
		a.cfg.Postgres.Schema, a.cfg.Kafka.Brokers, a.cfg.Warehouse.DuckDBPath)
	if a.cfg.HTTP.Addr != "" {
		fmt.Printf("status page: http://%s/ (metrics on /metrics)\n", a.cfg.HTTP.Addr)
	}
	err = runAll(ctx, a, ps, append(observers,
		capt.Run,
		func(ctx context.Context) error {
			if err := gen.Run(ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("generator: %w", err)
			}
			return nil
		},
		func(ctx context.Context) error { return progress(ctx, db, cw, ps) },
	))
	if err != nil && parent.Err() == nil && ctx.Err() == nil {
		return err
	}
	abs, _ := filepath.Abs(a.cfg.Warehouse.DuckDBPath)
	fmt.Printf("\nwarehouse: %s\n%s\n\nquery it (after this process exits) with:\n  go run ./cmd/starstream query \"%s\"\n\n",
		abs, formatKinds(gen.Stats()), strings.Join(strings.Fields(sampleQuery), " "))
	cols, rows, err := wh.Query(context.Background(), sampleQuery)
	if err != nil {
		return err
	}
	printTable(cols, rows)
	return nil
}

func seedIfEmpty(ctx context.Context, a *app, db *pgxpool.Pool, scale int) error {
	if err := shop.Create(ctx, db, a.cfg.Postgres.Schema); err != nil {
		return err
	}
	st, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: a.cfg.Postgres.Schema, Scale: scale, Seed: 1})
	switch {
	case errors.Is(err, shop.ErrNotEmpty):
		fmt.Printf("source schema %q already has data: not seeding\n", a.cfg.Postgres.Schema)
		return nil
	case err != nil:
		return err
	}
	fmt.Printf("seeded %q: %d rows in %s\n", a.cfg.Postgres.Schema, st.Total, st.Elapsed.Round(time.Millisecond))
	return nil
}

// progress prints one line every two seconds: events captured and applied, and
// how far the slowest pipeline's watermark is behind the source's WAL.
func progress(ctx context.Context, db *pgxpool.Pool, cw *countingWriter, ps []pipeline) error {
	type sample struct {
		at  time.Time
		lsn stream.LSN
	}
	var samples []sample
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		var text string
		if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&text); err != nil {
			continue
		}
		now, _ := stream.ParseLSN(text)
		samples = append(samples, sample{time.Now(), now})
		if len(samples) > 300 {
			samples = samples[1:]
		}
		var applied int64
		low, slowest := stream.MaxLSN, ""
		for _, p := range ps {
			st := p.Stats()
			applied += st.Processed
			if st.Watermark < low {
				low, slowest = st.Watermark, p.Name()
			}
		}
		age := "—"
		for _, s := range samples {
			if s.lsn >= low {
				age = time.Since(s.at).Round(100 * time.Millisecond).String()
				break
			}
		}
		if low == 0 {
			fmt.Printf("[%s] captured %d events · applied %d · waiting for the first watermark of %s (capture is still reading the initial snapshot or the slot's backlog)\n",
				time.Since(start).Round(time.Second), cw.events.Load(), applied, slowest)
			continue
		}
		lag := int64(0)
		if now > low {
			lag = int64(now - low)
		}
		fmt.Printf("[%s] captured %d events · applied %d · slowest watermark %s (%s) · %d WAL bytes behind, ≤ %s\n",
			time.Since(start).Round(time.Second), cw.events.Load(), applied, low, slowest, lag, age)
	}
}

func printQuery(ctx context.Context, a *app, sql string) error {
	wh, err := duckdb.Open(a.cfg.Warehouse.DuckDBPath, a.log)
	if err != nil {
		return fmt.Errorf("open warehouse %s (stop the running starstream first: DuckDB allows one process): %w", a.cfg.Warehouse.DuckDBPath, err)
	}
	defer wh.Close()
	cols, rows, err := wh.Query(ctx, sql)
	if err != nil {
		return err
	}
	printTable(cols, rows)
	return nil
}

func formatCell(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case *big.Rat:
		return x.FloatString(2)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}
