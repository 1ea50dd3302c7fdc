package shop_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/deploy/shop"
)

func newGenerator(t *testing.T, db *pgx.Conn, schema string, seed int64, rate float64) *shop.Generator {
	t.Helper()
	g, err := shop.NewGenerator(db, shop.GeneratorConfig{Schema: schema, Seed: seed, Rate: rate}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// assertConsistent checks invariants every generated history keeps.
func assertConsistent(t *testing.T, db *pgx.Conn, schema string) {
	t.Helper()
	checks := []struct{ what, query string }{
		{"orders without items", "SELECT count(*) FROM {s}.orders o WHERE NOT EXISTS " +
			"(SELECT 1 FROM {s}.order_items i WHERE i.order_id = o.order_id)"},
		{"items whose seller is not their product's",
			"SELECT count(*) FROM {s}.order_items i JOIN {s}.products p USING (product_id) WHERE i.seller_id <> p.seller_id"},
		{"shipped orders without shipped_at", "SELECT count(*) FROM {s}.orders WHERE status IN ('shipped', 'delivered') AND shipped_at IS NULL"},
		{"updates that left updated_at behind", "SELECT count(*) FROM {s}.orders WHERE updated_at < ordered_at"},
	}
	for _, c := range checks {
		if n := count(t, db, schema, c.query); n != 0 {
			t.Errorf("%d %s", n, c.what)
		}
	}
}

func TestGeneratorMakesEveryKind(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	schema, _ := seeded(t, db, 11)
	g := newGenerator(t, db, schema, 5, 0)
	ctx := context.Background()
	const steps = 2000
	start := time.Now()
	for i := range steps {
		if _, err := g.Step(ctx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	t.Logf("%d steps in %v", steps, time.Since(start))
	var total int64
	stats := g.Stats()
	for _, k := range shop.Kinds() {
		if stats[k] == 0 {
			t.Errorf("kind %s never occurred in %d steps", k, steps)
		}
		total += stats[k]
	}
	if total != steps {
		t.Errorf("stats count %d steps, want %d", total, steps)
	}
	assertConsistent(t, db, schema)
	t.Logf("stats: %v", stats)
	for status, query := range map[string]string{
		"returned":  "SELECT count(*) FROM {s}.orders WHERE status = 'returned' AND updated_at > now() - interval '1 hour'",
		"delivered": "SELECT count(*) FROM {s}.orders WHERE status = 'delivered' AND delivered_at > now() - interval '1 hour'",
		"cancelled": "SELECT count(*) FROM {s}.orders WHERE status = 'cancelled' AND updated_at > now() - interval '1 hour'",
	} {
		if count(t, db, schema, query) == 0 {
			t.Errorf("the generator made no order %s", status)
		}
	}
}

func TestGeneratorIsDeterministic(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	ctx := context.Background()
	var runs [2][]shop.Kind
	for i := range runs {
		schema, _ := seeded(t, db, 11)
		g := newGenerator(t, db, schema, 9, 0)
		for range 300 {
			k, err := g.Step(ctx)
			if err != nil {
				t.Fatal(err)
			}
			runs[i] = append(runs[i], k)
		}
	}
	for i := range runs[0] {
		if runs[0][i] != runs[1][i] {
			t.Fatalf("step %d: %s vs %s", i, runs[0][i], runs[1][i])
		}
	}
}

func TestGeneratorRunHonoursRateAndStops(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	schema, _ := seeded(t, db, 11)
	// Its own connection: cancelling a query closes the connection it ran on.
	g := newGenerator(t, testConn(t), schema, 1, 50)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	var total int64
	for _, n := range g.Stats() {
		total += n
	}
	// Rates are not asserted tightly (timing belongs in benchmarks): this only
	// shows the pacing works at all.
	if total < 5 || total > 60 {
		t.Errorf("%d steps in 1 s at 50/s", total)
	}
}

func TestConcurrentGenerators(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	schema, _ := seeded(t, db, 11)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		conn := testConn(t)
		g := newGenerator(t, conn, schema, int64(i), 0)
		wg.Go(func() {
			for range 400 {
				if _, err := g.Step(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assertConsistent(t, db, schema)
}

func TestNewGeneratorRejectsBadConfigAndEmptySchema(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	if _, err := shop.NewGenerator(db, shop.GeneratorConfig{Rate: -1}, nil); !errors.Is(err, shop.ErrInvalidConfig) {
		t.Errorf("negative rate: %v", err)
	}
	g := newGenerator(t, db, newSchema(t, db), 1, 0)
	if _, err := g.Step(context.Background()); !errors.Is(err, shop.ErrNotSeeded) {
		t.Errorf("step on empty schema: %v, want ErrNotSeeded", err)
	}
}
