package facts

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

func salesOnMemory(t testing.TB) (*Pipeline, *duckdb.Writer) {
	t.Helper()
	sink, err := duckdb.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	ctx := context.Background()
	if err := sink.EnsureTable(ctx, Sales.Table()); err != nil {
		t.Fatal(err)
	}
	if err := sink.EnsureTable(ctx, quality.QuarantineTable()); err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(Sales, dimensions.Env{Brokers: []string{"127.0.0.1:1"}, SourceSchema: "shop", Sink: sink,
		Codecs: stream.NewCodecs(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// The dimensions as their followers would have rebuilt them: customer 1,
	// product 1 and seller 1 exist from LSN 10; customer 2 does not exist.
	at := stream.Position{LSN: 10}
	p.lookups.State("dim_customer").Apply(dimensions.Change{Row: map[string]any{"customer_id": int64(1), "city": "Lyon"}, Pos: at})
	p.lookups.State("dim_product").Apply(dimensions.Change{Row: map[string]any{"product_id": int64(1), "unit_cost": big.NewRat(4, 1)}, Pos: at})
	p.lookups.State("dim_seller").Apply(dimensions.Change{Row: map[string]any{"seller_id": int64(1)}, Pos: at})
	return p, sink
}

// salesThroughRestart runs batches through a fact_sales pipeline on an
// in-memory warehouse (salesOnMemory, then setup when not nil), each batch
// final at its last record's LSN; with restart, the last batch is processed by
// a new pipeline restored from the state records written before it, as by a
// restarted process. It returns the warehouse of the pipeline that ran last.
func salesThroughRestart(t *testing.T, batches [][]stream.Record, restart bool, setup func(*Pipeline)) *duckdb.Writer {
	t.Helper()
	p, sink := salesOnMemory(t)
	if setup != nil {
		setup(p)
	}
	ctx := context.Background()
	var state []stream.Event
	for i, b := range batches {
		if restart && i == len(batches)-1 {
			p, sink = salesOnMemory(t)
			if setup != nil {
				setup(p)
			}
			p.Reset()
			for _, ev := range state {
				if err := p.Restore(ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		res, err := p.Process(ctx, stream.Batch{Records: b, Watermark: b[len(b)-1].Event.Pos.LSN, Final: true})
		if err != nil {
			t.Fatal(err)
		}
		state = append(state, res.State...)
	}
	return sink
}

func orderRow(id, customer int64, status string, orderedAt time.Time) map[string]any {
	return map[string]any{"order_id": id, "customer_id": customer, "status": status, "ordered_at": orderedAt}
}

func itemRow(id int64, qty any, price, discount *big.Rat) map[string]any {
	return map[string]any{"order_item_id": id, "order_id": int64(1), "product_id": int64(1), "seller_id": int64(1),
		"quantity": qty, "unit_price": price, "discount": discount}
}

// Every fact rule, and a reference missing after gating: quarantined with the
// rule and the reason; errors are not loaded and go to the dead-letter topic;
// warnings and missing references load (the latter with the unknown member) and
// are flagged in dq_warnings.
func TestSalesRules(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	ten := big.NewRat(10, 1)
	zero := new(big.Rat)
	tests := []struct {
		name     string
		order    map[string]any
		item     map[string]any
		rule     string
		severity quality.Severity
		reason   string
	}{
		{"null quantity", orderRow(1, 1, "paid", now), itemRow(7, nil, ten, zero), "not_null_order_items_quantity", quality.Error, "is null"},
		{"zero quantity", orderRow(1, 1, "paid", now), itemRow(7, int64(0), ten, zero), "range_order_items_quantity", quality.Error, "value 0 is outside"},
		{"negative price", orderRow(1, 1, "paid", now), itemRow(7, int64(1), big.NewRat(-5, 1), zero), "range_order_items_unit_price", quality.Error, "outside"},
		{"huge discount", orderRow(1, 1, "paid", now), itemRow(7, int64(1), ten, big.NewRat(200_000, 1)), "range_order_items_discount", quality.Warn, "outside"},
		{"unknown status", orderRow(1, 1, "lost", now), itemRow(7, int64(1), ten, zero), "accepted_orders_status", quality.Error, `"lost" is not one of`},
		{"stale order", orderRow(1, 1, "paid", now.Add(-60*24*time.Hour)), itemRow(7, int64(1), ten, zero), "freshness_orders_ordered_at", quality.Warn, "before its commit"},
		{"missing customer", orderRow(1, 2, "paid", now), itemRow(7, int64(1), ten, zero), "referential_customer_key", quality.Warn, "customer_id 2 has no dim_customer version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, sink := salesOnMemory(t)
			ctx := context.Background()
			recs := []stream.Record{
				{Event: stream.Event{Table: "orders", Op: stream.OpInsert, Key: map[string]any{"order_id": int64(1)}, After: tt.order,
					Pos: stream.Position{LSN: 100, Seq: 0}, CommitTime: now}},
				{Event: stream.Event{Table: "order_items", Op: stream.OpInsert, Key: map[string]any{"order_item_id": int64(7)}, After: tt.item,
					Pos: stream.Position{LSN: 100, Seq: 1}, CommitTime: now}},
			}
			res, err := p.Process(ctx, stream.Batch{Records: recs, Watermark: 100, Final: true})
			if err != nil {
				t.Fatal(err)
			}
			_, q, err := sink.Query(ctx, "SELECT rule, severity, reason FROM dq_quarantine")
			if err != nil {
				t.Fatal(err)
			}
			if len(q) != 1 || q[0][0] != tt.rule || q[0][1] != string(tt.severity) || !strings.Contains(q[0][2].(string), tt.reason) {
				t.Fatalf("quarantine %v, want %s (%s) containing %q", q, tt.rule, tt.severity, tt.reason)
			}
			_, f, _ := sink.Query(ctx, "SELECT customer_key, dq_warnings FROM fact_sales WHERE order_item_id = 7")
			if tt.severity == quality.Error {
				if len(f) != 0 || len(res.Dead) != 1 || res.Dead[0].Rule != tt.rule {
					t.Fatalf("error row loaded (%v) or not dead-lettered (%v)", f, res.Dead)
				}
				return
			}
			if len(f) != 1 || len(res.Dead) != 0 {
				t.Fatalf("warning row: fact %v, dead letters %v", f, res.Dead)
			}
			if tt.rule == "referential_customer_key" {
				if f[0][0] != dimensions.UnknownKey || f[0][1] != tt.rule {
					t.Fatalf("missing reference loaded as %v flagged %v, want -1 flagged %s", f[0][0], f[0][1], tt.rule)
				}
			}
		})
	}
}
