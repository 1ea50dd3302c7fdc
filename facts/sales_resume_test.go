package facts

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/stream"
)

// Capture killed during its initial snapshot reads the rest of it at restart
// and labels those rows at the slot's consistent point CP, although they
// reflect the database at the restart: an order item created after CP comes
// first as a snapshot row at CP, then as the stream's insert at its own
// position. Its customer, created after CP too, has a version only from its
// own insert on. The insert is when the item was sold: the fact must be
// resolved there (customer known), not kept at CP (unknown member, which
// TestRestartAfterSIGKILLConverges found in fact_sales: 'unknown customer').
func TestSalesItemReadAfterItsInsert(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	const cp, custLSN, orderLSN = stream.LSN(50), stream.LSN(80), stream.LSN(90)
	rec := func(table string, op stream.Op, key string, id int64, row map[string]any, lsn stream.LSN, seq uint64) stream.Record {
		return stream.Record{Event: stream.Event{Table: table, Op: op, Key: map[string]any{key: id}, After: row,
			Pos: stream.Position{LSN: lsn, Seq: seq}, CommitTime: now}}
	}
	item := itemRow(7, int64(2), big.NewRat(10, 1), new(big.Rat))
	resumed := []stream.Record{ // read at the restart, labelled at CP
		rec("order_items", stream.OpSnapshot, "order_item_id", 7, item, cp, 1),
		rec("orders", stream.OpSnapshot, "order_id", 1, orderRow(1, 2, "placed", now), cp, 2),
	}
	streamed := []stream.Record{ // the stream replays every change after CP
		rec("orders", stream.OpInsert, "order_id", 1, orderRow(1, 2, "placed", now), orderLSN, 0),
		rec("order_items", stream.OpInsert, "order_item_id", 7, item, orderLSN, 1),
	}
	// Customer 2 was created after CP, by an insert (customers was finished
	// by the first run): dim_customer knows it from that insert on.
	customer2 := func(p *Pipeline) {
		p.lookups.State("dim_customer").Apply(dimensions.Change{Row: map[string]any{"customer_id": int64(2), "city": "Leeds"},
			Pos: stream.Position{LSN: custLSN}})
	}
	for _, restart := range []bool{false, true} {
		sink := salesThroughRestart(t, [][]stream.Record{resumed, streamed}, restart, customer2)
		_, got, err := sink.Query(context.Background(), "SELECT customer_key, source_lsn FROM fact_sales WHERE order_item_id = 7")
		if err != nil {
			t.Fatal(err)
		}
		want := dimensions.SurrogateKey("dim_customer", dimensions.NaturalKey(int64(2)), stream.Position{LSN: custLSN})
		if len(got) != 1 || got[0][0] != want || got[0][1] != int64(orderLSN) {
			t.Errorf("restart=%v: fact_sales (customer_key, source_lsn) = %v, want [%d %d]", restart, got, want, orderLSN)
		}
	}
}

// A line keeps quantity, price, discount and the product's unit cost; its
// amounts are computed when the row is emitted. A status change after a restart
// (the line restored from its state record) emits the same amounts as one
// without a restart, with and without a known product.
func TestSalesAmountsSurviveRestart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	rec := func(table string, key string, id int64, row map[string]any, lsn stream.LSN, seq uint64) stream.Record {
		return stream.Record{Event: stream.Event{Table: table, Op: stream.OpInsert, Key: map[string]any{key: id}, After: row,
			Pos: stream.Position{LSN: lsn, Seq: seq}, CommitTime: now}}
	}
	known := itemRow(7, int64(3), big.NewRat(25, 2), big.NewRat(3, 2)) // 3 × 12.50 − 1.50, unit cost 4
	unknown := itemRow(8, int64(2), big.NewRat(5, 1), new(big.Rat))
	unknown["product_id"] = int64(99) // no such product: no cost
	first := []stream.Record{
		rec("orders", "order_id", 1, orderRow(1, 1, "placed", now), 100, 0),
		rec("order_items", "order_item_id", 7, known, 100, 1),
		rec("order_items", "order_item_id", 8, unknown, 100, 2),
	}
	paid := orderRow(1, 1, "paid", now)
	second := []stream.Record{{Event: stream.Event{Table: "orders", Op: stream.OpUpdate, Key: map[string]any{"order_id": int64(1)},
		After: paid, Pos: stream.Position{LSN: 200}, CommitTime: now}}}
	const query = `SELECT order_item_id, order_status, CAST(gross_amount AS VARCHAR), CAST(net_amount AS VARCHAR),
		CAST(cost_amount AS VARCHAR), CAST(margin AS VARCHAR) FROM fact_sales ORDER BY order_item_id`
	var results []string
	for _, restart := range []bool{false, true} {
		sink := salesThroughRestart(t, [][]stream.Record{first, second}, restart, nil)
		_, got, err := sink.Query(context.Background(), query)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, fmt.Sprint(got))
	}
	// 3 × 12.5 = 37.5, − 1.5 = 36, cost 3 × 4 = 12, margin 24; the unknown product: no cost, no margin.
	want := "[[7 paid 37.500000000 36.000000000 12.000000000 24.000000000] [8 paid 10.000000000 10.000000000 <nil> <nil>]]"
	for i, got := range results {
		if got != want {
			t.Errorf("restart=%v: fact_sales = %s, want %s", i == 1, got, want)
		}
	}
}
