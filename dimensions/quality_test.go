package dimensions_test

import (
	"context"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// newDim returns a dimension pipeline on an in-memory warehouse, its tables ensured.
func newDim(t *testing.T, spec dimensions.Spec) (*dimensions.Pipeline, *duckdb.Writer) {
	t.Helper()
	sink, err := duckdb.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	ctx := context.Background()
	if err := sink.EnsureTable(ctx, spec.Table()); err != nil {
		t.Fatal(err)
	}
	if err := sink.EnsureTable(ctx, quality.QuarantineTable()); err != nil {
		t.Fatal(err)
	}
	env := dimensions.Env{Brokers: []string{"127.0.0.1:1"}, SourceSchema: "shop", Sink: sink, Codecs: stream.NewCodecs(),
		Logger: slog.New(slog.DiscardHandler)}
	p, err := dimensions.NewPipeline(spec, env)
	if err != nil {
		t.Fatal(err)
	}
	return p, sink
}

func row(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func goodCustomer() map[string]any {
	return row("customer_id", int64(1), "email", "a@x.io", "full_name", "Ada", "phone", nil, "city", "Lyon", "state", "ARA",
		"country", "FR", "segment", "consumer", "loyalty_tier", "gold", "created_at", time.Unix(0, 0).UTC())
}

func goodProduct() map[string]any {
	return row("product_id", int64(1), "seller_id", int64(1), "sku", "s", "name", "n", "category", "c", "subcategory", nil,
		"brand", nil, "list_price", big.NewRat(10, 1), "unit_cost", big.NewRat(4, 1), "is_active", true)
}

func goodSeller() map[string]any {
	return row("seller_id", int64(1), "name", "S", "city", "Oslo", "state", "O", "country", "NO", "status", "active", "rating", big.NewRat(45, 10))
}

func with(base map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range row(kv...) {
		out[k] = v
	}
	return out
}

// Every dimension rule: the failing row is quarantined with its rule and reason;
// error rows go to the dead-letter topic and leave the dimension unchanged,
// warning rows load.
func TestDimensionRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec     dimensions.Spec
		table    string
		row      map[string]any
		rule     string
		severity quality.Severity
		reason   string
	}{
		{dimensions.Customer, "customers", with(goodCustomer(), "email", nil), "not_null_customers_email", quality.Error, "is null"},
		{dimensions.Customer, "customers", with(goodCustomer(), "country", nil), "not_null_customers_country", quality.Error, "is null"},
		{dimensions.Customer, "customers", with(goodCustomer(), "loyalty_tier", "diamond"), "accepted_customers_loyalty_tier", quality.Error, `"diamond" is not one of`},
		{dimensions.Customer, "customers", with(goodCustomer(), "segment", "vip"), "accepted_customers_segment", quality.Warn, `"vip" is not one of`},
		{dimensions.Product, "products", with(goodProduct(), "list_price", big.NewRat(-1, 1)), "range_products_list_price", quality.Error, "outside [0, 1e+06]"},
		{dimensions.Product, "products", with(goodProduct(), "unit_cost", big.NewRat(2_000_000, 1)), "range_products_unit_cost", quality.Error, "outside"},
		{dimensions.Product, "products", with(goodProduct(), "category", nil), "not_null_products_category", quality.Warn, "is null"},
		{dimensions.Seller, "sellers", with(goodSeller(), "status", "banned"), "accepted_sellers_status", quality.Error, `"banned"`},
		{dimensions.Seller, "sellers", with(goodSeller(), "rating", big.NewRat(7, 1)), "range_sellers_rating", quality.Warn, "outside [0, 5]"},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			t.Parallel()
			p, sink := newDim(t, tt.spec)
			ctx := context.Background()
			nk := tt.spec.NaturalKey[0].Name
			rec := stream.Record{Topic: "cdc.shop." + tt.table, Event: stream.Event{Schema: "shop", Table: tt.table, Op: stream.OpInsert,
				Key: map[string]any{nk: int64(1)}, After: tt.row, Pos: stream.Position{LSN: 100, Seq: 2}, CommitTime: time.Now()}}
			res, err := p.Process(ctx, stream.Batch{Records: []stream.Record{rec}, Watermark: 100, Final: true})
			if err != nil {
				t.Fatal(err)
			}
			_, q, err := sink.Query(ctx, "SELECT rule, severity, reason, source_table, source_key, source_lsn, row FROM dq_quarantine")
			if err != nil {
				t.Fatal(err)
			}
			if len(q) != 1 || q[0][0] != tt.rule || q[0][1] != string(tt.severity) || !strings.Contains(q[0][2].(string), tt.reason) {
				t.Fatalf("quarantine %v, want rule %s (%s) with reason containing %q", q, tt.rule, tt.severity, tt.reason)
			}
			if q[0][3] != tt.table || q[0][4] != `{"`+nk+`":1}` || q[0][5] != int64(100) {
				t.Fatalf("quarantine row does not name the source row: %v", q[0])
			}
			_, loaded, _ := sink.Query(ctx, "SELECT count(*) FROM "+tt.spec.Name+" WHERE "+tt.spec.Key+" <> -1")
			wantLoaded, wantDead := int64(1), 0
			if tt.severity == quality.Error {
				wantLoaded, wantDead = 0, 1
			}
			if loaded[0][0] != wantLoaded || len(res.Dead) != wantDead {
				t.Fatalf("loaded %v rows and dead-lettered %d, want %d and %d", loaded[0][0], len(res.Dead), wantLoaded, wantDead)
			}
			if wantDead == 1 && (res.Dead[0].Rule != tt.rule || res.Dead[0].Record.Event.Pos != rec.Event.Pos) {
				t.Fatalf("dead letter %+v", res.Dead[0])
			}
		})
	}
}
