package facts_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/facts"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// slice is the thin end-to-end stack of one test: its own source schema, slot,
// topics, consumer groups and DuckDB file.
type slice struct {
	t      *testing.T
	schema string
	db     *pgx.Conn
	sink   *duckdb.Writer
	env    dimensions.Env
}

func newSlice(t *testing.T, scale int) *slice {
	t.Helper()
	ctx := context.Background()
	schema := capturetest.NewSchema(t)
	db := capturetest.Connect(t)
	if err := shop.Create(ctx, db, schema); err != nil {
		t.Fatal(err)
	}
	if scale > 0 {
		if _, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: schema, Scale: scale, Seed: 7}); err != nil {
			t.Fatal(err)
		}
	}
	sink, err := duckdb.Open(filepath.Join(t.TempDir(), "warehouse.duckdb"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	env := dimensions.Env{Brokers: capturetest.Brokers(), SourceSchema: schema, Namespace: schema + ".",
		Sink: sink, Codecs: stream.NewCodecs(), Logger: capturetest.Logger(t), MaxBatch: 2000}
	return &slice{t: t, schema: schema, db: db, sink: sink, env: env}
}

func (s *slice) capture() {
	s.t.Helper()
	w, _ := capturetest.NewWriter(s.t)
	capturetest.Start(s.t, capturetest.Config(s.t, s.schema), w)
}

type runner interface{ Run(context.Context) error }

// streaming waits until a pipeline has a watermark, which capture publishes only
// after its initial snapshot: changes made from then on are streamed.
func (s *slice) streaming(p interface{ Stats() stream.Stats }) {
	s.t.Helper()
	capturetest.Eventually(s.t, 60*time.Second, "snapshot written and streaming", func() bool { return p.Stats().Watermark > 0 })
}

// run starts a pipeline; the returned function stops it and waits.
func (s *slice) run(r runner) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("pipeline: %v", err)
		}
	}
	s.t.Cleanup(stop)
	return stop
}

func (s *slice) dim(spec dimensions.Spec) *dimensions.Pipeline {
	p, err := dimensions.NewPipeline(spec, s.env)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *slice) fact(spec facts.Spec) *facts.Pipeline {
	p, err := facts.NewPipeline(spec, s.env)
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *slice) query(q string, args ...any) [][]any {
	s.t.Helper()
	_, rows, err := s.sink.Query(context.Background(), q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return rows
}

// waitFor polls a query until it returns want rows.
func (s *slice) waitFor(want int, q string, args ...any) [][]any {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, rows, err := s.sink.Query(context.Background(), q, args...)
		if err == nil && len(rows) == want {
			return rows
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %d rows of %s: have %d (err %v)", want, q, len(rows), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *slice) customer(city string) int64 {
	s.t.Helper()
	id, err := shop.InsertCustomer(context.Background(), s.db, s.schema, shop.Customer{
		Email: "ada@example.com", FullName: "Ada", City: city, State: "ARA", Country: "FR"})
	if err != nil {
		s.t.Fatal(err)
	}
	return id
}

func (s *slice) order(customer int64) int64 {
	s.t.Helper()
	_, items, err := shop.PlaceOrder(context.Background(), s.db, s.schema, customer, []shop.OrderItem{{ProductID: 1, Quantity: 2}})
	if err != nil {
		s.t.Fatal(err)
	}
	return items[0]
}

func (s *slice) count(q string) int64 {
	s.t.Helper()
	var n int64
	if err := s.db.QueryRow(context.Background(), strings.ReplaceAll(q, "{s}", pgx.Identifier{s.schema}.Sanitize())).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// A customer orders, moves city, orders again: the two fact rows carry different
// customer keys whose dimension rows hold the old and the new city. Orders of
// untouched customers keep flowing (markers advance the idle dimension), and the
// rows seeded before capture started arrive exactly once.
func TestPointInTimeIdleAndSnapshot(t *testing.T) {
	t.Parallel()
	s := newSlice(t, 1)
	s.capture()
	for _, spec := range dimensions.All() {
		s.run(s.dim(spec))
	}
	sales := s.fact(facts.Sales)
	s.run(sales)
	s.streaming(sales)

	ctx := context.Background()
	cust := s.customer("Lyon")
	item1 := s.order(cust)
	if err := shop.MoveCustomer(ctx, s.db, s.schema, cust, "Paris", "IDF", "FR"); err != nil {
		t.Fatal(err)
	}
	item2 := s.order(cust)

	q := `SELECT f.customer_key, c.city, c.is_current, f.product_key, f.date_key, f.gross_amount
	      FROM fact_sales f JOIN dim_customer c USING (customer_key) WHERE f.order_item_id = ?`
	r1 := s.waitFor(1, q, item1)[0]
	r2 := s.waitFor(1, q, item2)[0]
	if r1[0] == r2[0] {
		t.Fatalf("both orders carry customer key %v", r1[0])
	}
	if r1[1] != "Lyon" || r1[2] != false || r2[1] != "Paris" || r2[2] != true {
		t.Fatalf("order 1 sees %v (current %v), order 2 sees %v (current %v); want Lyon/false, Paris/true", r1[1], r1[2], r2[1], r2[2])
	}
	if k, ok := r1[3].(int64); !ok || k == dimensions.UnknownKey {
		t.Fatalf("product key %v", r1[3])
	}

	// Idle dimension: 25 orders of seeded customers, no customer changes.
	var items []string
	for i := 0; i < 25; i++ {
		items = append(items, fmt.Sprint(s.order(int64(1+i))))
	}
	s.waitFor(25, "SELECT order_item_id FROM fact_sales WHERE order_item_id IN ("+strings.Join(items, ",")+") AND customer_key <> -1")

	// Snapshot: every order item of the source once, no unknown members.
	want := s.count("SELECT count(*) FROM {s}.order_items")
	rows := s.waitFor(1, "SELECT count(*), count(DISTINCT order_item_id) FROM fact_sales HAVING count(*) = ?", want)
	if rows[0][0] != rows[0][1] {
		t.Fatalf("fact_sales has %v rows for %v items", rows[0][0], rows[0][1])
	}
	if n := s.query("SELECT count(*) FROM fact_sales WHERE customer_key = -1 OR product_key = -1 OR seller_key = -1")[0][0]; n != int64(0) {
		t.Fatalf("%v fact rows with unknown members; unknown lookups %v", n, sales.Unknown())
	}
	dims := s.query("SELECT count(*) FROM dim_customer WHERE customer_key <> -1 AND is_current")[0][0]
	if want := s.count("SELECT count(*) FROM {s}.customers"); dims != want {
		t.Fatalf("dim_customer has %v current members, source has %d customers", dims, want)
	}
}

// With dim_customer held back, fact_sales does not write an order even though
// its other dimensions have passed it; once dim_customer runs, the row appears
// with the right key.
func TestGatingWaitsForDimension(t *testing.T) {
	t.Parallel()
	s := newSlice(t, 0)
	if _, err := s.db.Exec(context.Background(), strings.ReplaceAll(`
		INSERT INTO {s}.sellers (name, city, state, country, joined_at) VALUES ('S', 'Oslo', 'O', 'NO', '2020-01-01');
		INSERT INTO {s}.products (seller_id, sku, name, category, list_price, unit_cost) VALUES (1, 'sku-1', 'P', 'c', 10, 4);`,
		"{s}", pgx.Identifier{s.schema}.Sanitize())); err != nil {
		t.Fatal(err)
	}
	s.capture()
	product, seller := s.dim(dimensions.Product), s.dim(dimensions.Seller)
	s.run(product)
	s.run(seller)
	s.run(s.dim(dimensions.Campaign))
	sales := s.fact(facts.Sales)
	s.run(sales)
	s.streaming(product)
	cust := s.customer("Bergen")
	item := s.order(cust)
	var lsn stream.LSN
	var text string
	if err := s.db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&text); err != nil {
		t.Fatal(err)
	}
	lsn, _ = stream.ParseLSN(text)
	capturetest.Eventually(t, 60*time.Second, "product and seller dimensions pass the order", func() bool {
		return product.Stats().Watermark >= lsn && seller.Stats().Watermark >= lsn
	})
	time.Sleep(2 * time.Second) // give a wrongly ungated fact every chance to write
	if rows := s.query("SELECT order_item_id FROM fact_sales WHERE order_item_id = ?", item); len(rows) != 0 {
		t.Fatalf("fact_sales wrote item %d before dim_customer's watermark passed it", item)
	}
	if w := sales.Stats().Watermark; w >= lsn {
		t.Fatalf("fact_sales watermark %s passed the order without dim_customer", w)
	}
	s.run(s.dim(dimensions.Customer))
	row := s.waitFor(1, `SELECT f.customer_key, c.customer_id, c.city FROM fact_sales f JOIN dim_customer c USING (customer_key)
	                      WHERE f.order_item_id = ?`, item)[0]
	if row[1] != cust || row[2] != "Bergen" {
		t.Fatalf("fact row joins customer %v in %v, want %d in Bergen", row[1], row[2], cust)
	}
}
