package shop_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/deploy/shop"
)

const defaultDSN = "postgres://starstream:starstream@127.0.0.1:15432/starstream?sslmode=disable"

// schemaCounter makes schema names unique within this test binary; the pid
// and time make them unique across binaries sharing the server.
var schemaCounter atomic.Int64

// testConn connects to the test server, failing (not skipping) when it is
// unreachable: an integration suite that silently skips proves nothing.
func testConn(t testing.TB) *pgx.Conn {
	t.Helper()
	dsn := os.Getenv("STARSTREAM_PG_DSN")
	if dsn == "" {
		dsn = defaultDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("PostgreSQL unreachable at %s (run `make up` first, or set STARSTREAM_PG_DSN): %v", redact(dsn), err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// redact hides the password of a DSN for messages.
func redact(dsn string) string {
	if at := strings.LastIndex(dsn, "@"); at > 0 {
		if colon := strings.LastIndex(dsn[:at], ":"); colon > strings.Index(dsn, "//") {
			return dsn[:colon+1] + "***" + dsn[at:]
		}
	}
	return dsn
}

// newSchema creates a fresh shop schema and drops it when the test ends.
func newSchema(t *testing.T, db *pgx.Conn) string {
	t.Helper()
	name := fmt.Sprintf("shop_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000, schemaCounter.Add(1))
	ctx := context.Background()
	if err := shop.Create(ctx, db, name); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := shop.Drop(context.Background(), db, name); err != nil {
			t.Errorf("drop: %v", err)
		}
	})
	return name
}

// seeded creates a schema and seeds it at scale 1.
func seeded(t *testing.T, db *pgx.Conn, seed int64) (string, shop.SeedStats) {
	t.Helper()
	schema := newSchema(t, db)
	stats, err := shop.Seed(context.Background(), db, shop.SeedConfig{Schema: schema, Scale: 1, Seed: seed})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return schema, stats
}

// count runs a count query qualified with schema ({s}).
func count(t *testing.T, db *pgx.Conn, schema, query string) int64 {
	t.Helper()
	var n int64
	q := strings.ReplaceAll(query, "{s}", pgx.Identifier{schema}.Sanitize())
	if err := db.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// checksum hashes every row of table in primary-key order: ordering by the
// whole row sorts by its leading key columns, which are unique.
func checksum(t *testing.T, db *pgx.Conn, schema, table string) string {
	t.Helper()
	var sum string
	q := fmt.Sprintf("SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t), '')) FROM %s t",
		pgx.Identifier{schema, table}.Sanitize())
	if err := db.QueryRow(context.Background(), q).Scan(&sum); err != nil {
		t.Fatalf("checksum %s: %v", table, err)
	}
	return sum
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	ctx := context.Background()
	schema, stats := seeded(t, db, 1)
	for range 2 {
		if err := shop.Create(ctx, db, schema); err != nil {
			t.Fatalf("create again: %v", err)
		}
	}
	tables := count(t, db, schema, `SELECT count(*) FROM pg_tables WHERE schemaname = '`+schema+`'`)
	if tables != int64(len(shop.Tables())) {
		t.Errorf("tables = %d, want %d", tables, len(shop.Tables()))
	}
	enums := count(t, db, schema, `SELECT count(*) FROM pg_type WHERE typnamespace = '{s}'::regnamespace AND typtype = 'e'`)
	if enums != 3 {
		t.Errorf("enum types = %d, want 3", enums)
	}
	if n := count(t, db, schema, "SELECT count(*) FROM {s}.customers"); n != stats.Rows["customers"] {
		t.Errorf("customers after re-create = %d, want %d", n, stats.Rows["customers"])
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	a, _ := seeded(t, db, 42)
	b, _ := seeded(t, db, 42)
	c, _ := seeded(t, db, 43)
	for _, table := range shop.Tables() {
		if x, y := checksum(t, db, a, table), checksum(t, db, b, table); x != y {
			t.Errorf("%s differs between two seeds with the same Seed: %s vs %s", table, x, y)
		}
	}
	if checksum(t, db, a, "customers") == checksum(t, db, c, "customers") {
		t.Error("customers identical for different Seeds")
	}
}

func TestSeedRowCounts(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	schema, stats := seeded(t, db, 7)
	exact := map[string]int64{"customers": 200, "sellers": 30, "products": 300, "campaigns": 10, "orders": 500}
	ranges := map[string][2]int64{
		"order_items": {500, 2000}, "inventory": {600, 900}, "cart_events": {300, 500},
		"campaign_events": {300, 500}, "page_views": {500, 700},
	}
	var total int64
	for _, table := range shop.Tables() {
		n := count(t, db, schema, "SELECT count(*) FROM {s}."+table)
		total += n
		if stats.Rows[table] != n {
			t.Errorf("%s: stats say %d rows, table has %d", table, stats.Rows[table], n)
		}
		if want, ok := exact[table]; ok && n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
		if r, ok := ranges[table]; ok && (n < r[0] || n > r[1]) {
			t.Errorf("%s: %d rows, want %d..%d", table, n, r[0], r[1])
		}
	}
	if stats.Total != total {
		t.Errorf("stats total %d, tables hold %d", stats.Total, total)
	}
	if n := count(t, db, schema, "SELECT count(*) FROM {s}.orders o WHERE NOT EXISTS "+
		"(SELECT 1 FROM {s}.order_items i WHERE i.order_id = o.order_id)"); n != 0 {
		t.Errorf("%d seeded orders without items", n)
	}
	// The identity sequences moved past the seeded ids.
	id, err := shop.InsertCustomer(context.Background(), db, schema, shop.Customer{
		Email: "new@example.com", FullName: "New One", City: "Austin", State: "TX", Country: "US"})
	if err != nil || id != 201 {
		t.Errorf("first inserted customer id = %d, %v; want 201", id, err)
	}
	if _, err := shop.Seed(context.Background(), db, shop.SeedConfig{Schema: schema, Seed: 7}); !errors.Is(err, shop.ErrNotEmpty) {
		t.Errorf("second seed: %v, want ErrNotEmpty", err)
	}
}

// TestSeedTypeVariety checks that the columns that trouble CDC tools hold
// both values and NULLs, and that large descriptions are stored in TOAST.
func TestSeedTypeVariety(t *testing.T) {
	t.Parallel()
	db := testConn(t)
	schema, _ := seeded(t, db, 3)
	checks := []struct{ what, query string }{
		{"descriptions over 8 KB", "SELECT count(*) FROM {s}.products WHERE pg_column_size(description) > 8192"},
		{"bytes in the TOAST table", "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = '{s}.products'::regclass"},
		{"orders with a campaign", "SELECT count(*) FROM {s}.orders WHERE campaign_id IS NOT NULL"},
		{"orders without a campaign", "SELECT count(*) FROM {s}.orders WHERE campaign_id IS NULL"},
		{"campaigns with a target", "SELECT count(*) FROM {s}.campaigns WHERE target_product_id IS NOT NULL"},
		{"campaigns without a target", "SELECT count(*) FROM {s}.campaigns WHERE target_product_id IS NULL"},
		{"anonymous cart events", "SELECT count(*) FROM {s}.cart_events WHERE customer_id IS NULL"},
		{"checkouts", "SELECT count(*) FROM {s}.cart_events WHERE action = 'checkout'"},
		{"products with tags", "SELECT count(*) FROM {s}.products WHERE cardinality(tags) > 2"},
		{"products with thumbnails", "SELECT count(*) FROM {s}.products WHERE thumbnail IS NOT NULL"},
		{"jsonb attributes", "SELECT count(*) FROM {s}.products WHERE attributes ? 'color'"},
		{"delivered orders", "SELECT count(*) FROM {s}.orders WHERE status = 'delivered' AND delivered_at IS NOT NULL"},
		{"page views with client time", "SELECT count(*) FROM {s}.page_views WHERE client_time IS NOT NULL"},
		{"clicks", "SELECT count(*) FROM {s}.campaign_events WHERE event_type = 'click' AND cost > 0"},
	}
	for _, c := range checks {
		if n := count(t, db, schema, c.query); n == 0 {
			t.Errorf("no %s", c.what)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
