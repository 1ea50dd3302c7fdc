package main

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// slowSink delays every write of one pipeline, so consumers run at different speeds.
type slowSink struct {
	sinks.Sink
	delay time.Duration
}

func (s slowSink) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Sink.Write(ctx, table, rows)
}

// expected is what an order item must reference: the dimension attributes read,
// under a share lock, in the transaction that created it.
type expected struct {
	customer, product, seller []string
	campaign                  any
}

// Customers, products, sellers and campaigns change while orders flow; every
// pipeline runs at its own speed and is restarted at random moments. Every
// fact_sales row must reference the dimension versions valid when its item was
// created, as recorded independently by the transactions that created them.
func TestPointInTimeOracleUnderRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := capturetest.NewSchema(t)
	db := capturetest.Connect(t)
	if err := shop.Create(ctx, db, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: schema, Scale: 1, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, capturetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var cfg Config
	if cfg, err = LoadConfig("", nil); err != nil {
		t.Fatal(err)
	}
	slot := capturetest.Unique(t, "s")
	cfg.Postgres.DSN, cfg.Postgres.Schema, cfg.Postgres.Slot, cfg.Postgres.Publication = capturetest.DSN(), schema, slot, slot
	cfg.Kafka.Brokers, cfg.Pipelines.Namespace, cfg.Pipelines.MaxBatch = capturetest.Brokers(), schema+".", 300
	t.Cleanup(func() { capturetest.DropSlot(t, capturetestConfig(schema, slot)) })
	a, err := newApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.log = capturetest.Logger(t)
	wh, err := duckdb.Open(filepath.Join(t.TempDir(), "w.duckdb"), a.log)
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()

	work, stopWork := context.WithCancel(ctx) // the workload's lifetime: pipelines restart at random during it
	defer stopWork()
	runCtx, stopAll := context.WithCancel(ctx)
	g, runCtx := errgroup.WithContext(runCtx)
	kw, err := a.writer()
	if err != nil {
		t.Fatal(err)
	}
	defer kw.Close()
	capt, err := a.capture(kw, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.Go(func() error { return capt.Run(runCtx) })
	var sales atomic.Pointer[pipeline]
	rng := rand.New(rand.NewPCG(9, 9))
	var restarts atomic.Int64
	var working atomic.Bool
	for i, n := range registry() {
		delay := time.Duration(rng.IntN(150)) * time.Millisecond
		seed := uint64(i)
		g.Go(func() error {
			r := rand.New(rand.NewPCG(seed, 1))
			env := a.env(slowSink{Sink: wh, delay: delay})
			for runCtx.Err() == nil {
				p, err := n.build(env)
				if err != nil {
					return err
				}
				if n.name == "fact_sales" {
					sales.Store(&p)
				}
				life, cancel := runCtx, context.CancelFunc(func() {})
				if working.Load() { // restart at random while the workload runs, then let it finish
					life, cancel = context.WithTimeout(runCtx, time.Duration(2000+r.IntN(5000))*time.Millisecond)
				}
				err = p.Run(life)
				cancel()
				if err != nil && runCtx.Err() == nil {
					return fmt.Errorf("%s: %w", n.name, err)
				}
				restarts.Add(1)
			}
			return nil
		})
	}

	// Start the workload once capture streams (watermarks exist only after the
	// initial snapshot): history before the snapshot is collapsed into it.
	for p := sales.Load(); p == nil || (*p).Stats().Watermark == 0; p = sales.Load() {
		time.Sleep(100 * time.Millisecond)
	}
	working.Store(true)
	time.AfterFunc(20*time.Second, func() { working.Store(false); stopWork() })
	// The workload: two workers interleave dimension changes and orders.
	var mu sync.Mutex
	oracle := map[int64]expected{}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 77))
			for work.Err() == nil {
				time.Sleep(2 * time.Millisecond)
				if err := step(work, pool, schema, r, func(id int64, e expected) { mu.Lock(); oracle[id] = e; mu.Unlock() }); err != nil && work.Err() == nil {
					t.Errorf("workload: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	fence := capturetest.Fence(t, db)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if p := sales.Load(); p != nil && (*p).Stats().Watermark >= fence {
			break
		}
		if time.Now().After(deadline) {
			if p := sales.Load(); p != nil {
				t.Logf("fact_sales stats %+v", (*p).Stats())
			}
			t.Fatalf("fact_sales did not reach the fence %s", fence)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopAll()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d order items, %d pipeline restarts", len(oracle), restarts.Load())
	checkOracle(t, wh, oracle)
}

var cities = []string{"Lyon", "Paris", "Oslo", "Bergen", "Kyoto", "Osaka", "Lima", "Quito"}

// step performs one random source transaction.
func step(ctx context.Context, db *pgxpool.Pool, schema string, r *rand.Rand, record func(int64, expected)) error {
	s := pgx.Identifier{schema}.Sanitize()
	switch k := r.IntN(10); {
	case k == 0:
		return shop.MoveCustomer(ctx, db, schema, 1+r.Int64N(40), cities[r.IntN(len(cities))], "ST", "FR")
	case k == 1:
		return shop.SetCustomerTier(ctx, db, schema, 1+r.Int64N(40), "consumer", []string{"bronze", "silver", "gold", "platinum"}[r.IntN(4)])
	case k == 2:
		return shop.SetProductPrice(ctx, db, schema, 1+r.Int64N(20), fmt.Sprintf("%d.%02d", 5+r.IntN(90), r.IntN(100)), fmt.Sprintf("%d.%04d", 1+r.IntN(4), r.IntN(10000)))
	case k == 3:
		return shop.MoveSeller(ctx, db, schema, 1+r.Int64N(30), cities[r.IntN(len(cities))], "ST", "NO")
	case k == 4:
		return shop.UpdateCampaign(ctx, db, schema, 1+r.Int64N(10), []string{"active", "paused"}[r.IntN(2)], "")
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	cust := 1 + r.Int64N(40)
	var e expected
	e.customer = make([]string, 5)
	if err := tx.QueryRow(ctx, "SELECT city, state, country, segment, loyalty_tier FROM "+s+".customers WHERE customer_id = $1 FOR SHARE", cust).
		Scan(&e.customer[0], &e.customer[1], &e.customer[2], &e.customer[3], &e.customer[4]); err != nil {
		return err
	}
	var campaign *int64
	if r.IntN(2) == 0 {
		c := 1 + r.Int64N(10)
		campaign = &c
		e.campaign = c
		if _, err := tx.Exec(ctx, "SELECT 1 FROM "+s+".campaigns WHERE campaign_id = $1 FOR SHARE", c); err != nil {
			return err
		}
	}
	var made []func()
	var order int64
	if err := tx.QueryRow(ctx, "INSERT INTO "+s+".orders (customer_id, campaign_id) VALUES ($1, $2) RETURNING order_id", cust, campaign).Scan(&order); err != nil {
		return err
	}
	for i := 0; i < 1+r.IntN(3); i++ {
		prod := 1 + r.Int64N(20)
		x := e
		x.product = make([]string, 5)
		var seller int64
		if err := tx.QueryRow(ctx, `SELECT seller_id, list_price::text, unit_cost::text, category, coalesce(brand, '') FROM `+s+`.products
			WHERE product_id = $1 FOR SHARE`, prod).Scan(&seller, &x.product[0], &x.product[1], &x.product[2], &x.product[3]); err != nil {
			return err
		}
		x.product = x.product[:4]
		x.seller = make([]string, 4)
		if err := tx.QueryRow(ctx, "SELECT city, state, country, status FROM "+s+".sellers WHERE seller_id = $1 FOR SHARE", seller).
			Scan(&x.seller[0], &x.seller[1], &x.seller[2], &x.seller[3]); err != nil {
			return err
		}
		var item int64
		if err := tx.QueryRow(ctx, `INSERT INTO `+s+`.order_items (order_id, product_id, seller_id, quantity, unit_price)
			SELECT $1, product_id, seller_id, $3, list_price FROM `+s+`.products WHERE product_id = $2 RETURNING order_item_id`,
			order, prod, 1+r.IntN(3)).Scan(&item); err != nil {
			return err
		}
		made = append(made, func() { record(item, x) })
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for _, m := range made { // only what committed is expected
		m()
	}
	return nil
}

func checkOracle(t *testing.T, wh *duckdb.Writer, oracle map[int64]expected) {
	t.Helper()
	ctx := context.Background()
	_, rows, err := wh.Query(ctx, `SELECT f.order_item_id,
		c.city, c.state, c.country, c.segment, c.loyalty_tier,
		p.list_price, p.unit_cost, p.category, coalesce(p.brand, ''),
		s.city, s.state, s.country, s.status, m.campaign_id
		FROM fact_sales f
		LEFT JOIN dim_customer c ON c.customer_key = f.customer_key
		LEFT JOIN dim_product p ON p.product_key = f.product_key
		LEFT JOIN dim_seller s ON s.seller_key = f.seller_key
		LEFT JOIN dim_campaign m ON m.campaign_key = f.campaign_key`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64][]any{}
	for _, r := range rows {
		got[r[0].(int64)] = r[1:]
	}
	bad := 0
	for item, e := range oracle {
		r, ok := got[item]
		if !ok {
			t.Errorf("item %d missing from fact_sales", item)
			bad++
			continue
		}
		want := []any{e.customer[0], e.customer[1], e.customer[2], e.customer[3], e.customer[4],
			rat(e.product[0]), rat(e.product[1]), e.product[2], e.product[3], e.seller[0], e.seller[1], e.seller[2], e.seller[3], e.campaign}
		for i := range want {
			if !dimensions.Equal(normalize(r[i]), want[i]) {
				t.Errorf("item %d column %d: warehouse %v, valid at its position %v", item, i, r[i], want[i])
				bad++
				break
			}
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	if len(oracle) < 50 {
		t.Fatalf("only %d order items: the workload did too little to prove anything", len(oracle))
	}
}

func rat(s string) *big.Rat {
	r, _ := new(big.Rat).SetString(s)
	return r
}

func normalize(v any) any {
	if v == nil {
		return nil
	}
	return v
}

var _ = stream.MaxLSN
