package facts

import (
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

func stockRow(op stream.Op, product int64, warehouse string, onHand, reserved int64, at stream.Position, commit time.Time) stream.Record {
	key := map[string]any{"product_id": product, "warehouse_code": warehouse}
	row := map[string]any{"product_id": product, "warehouse_code": warehouse, "on_hand": onHand, "reserved": reserved, "updated_at": commit}
	if op == stream.OpDelete {
		row = nil
	}
	return captured("inventory", op, key, row, at, commit)
}

// inventoryBatches: a snapshot, receipts and shipments (re-delivered), a new
// location, an unknown product, a refused change, sales (re-published,
// returned, cancelled), a second day, a delete and a truncate followed by a
// late re-delivery and fresh stock.
func inventoryBatches() [][]stream.Record {
	day2 := day1.Add(24 * time.Hour)
	b2 := []stream.Record{
		stockRow(stream.OpUpdate, 1, "LYO1", 150, 5, pos(100, 0), day1),
		stockRow(stream.OpUpdate, 1, "LYO1", 140, 5, pos(110, 0), day1),
	}
	return [][]stream.Record{
		{
			stockRow(stream.OpSnapshot, 1, "LYO1", 100, 5, pos(50, 1), day1),
			stockRow(stream.OpSnapshot, 1, "PAR1", 20, 0, pos(50, 2), day1),
		},
		b2,
		b2, // re-delivered
		{
			stockRow(stream.OpInsert, 2, "PAR1", 30, 0, pos(120, 0), day1),
			stockRow(stream.OpInsert, 9, "LYO1", 5, 0, pos(120, 1), day1),  // product 9 is unknown
			stockRow(stream.OpUpdate, 1, "PAR1", -1, 0, pos(120, 2), day1), // refused: negative stock
		},
		{
			saleRow{item: 21, order: 1, customer: 1, product: 1, qty: 2, net: "20", status: "placed", ordered: day1}.at(pos(200, 1)),
			saleRow{item: 22, order: 2, customer: 2, product: 1, qty: 3, net: "30", status: "paid", ordered: day1}.at(pos(200, 3)),
			saleRow{item: 23, order: 3, customer: 2, product: 2, qty: 1, net: "7", status: "paid", ordered: day2}.at(pos(200, 5)),
		},
		{
			saleRow{item: 21, order: 1, customer: 1, product: 1, qty: 2, net: "20", status: "placed", ordered: day1}.at(pos(200, 1)), // re-published
			saleRow{item: 21, order: 1, customer: 1, product: 1, qty: 2, net: "20", status: "returned", ordered: day1}.at(pos(300, 0)),
		},
		{
			stockRow(stream.OpUpdate, 1, "LYO1", 145, 5, pos(400, 0), day2),
			saleRow{item: 22, order: 2, customer: 2, product: 1, qty: 3, net: "30", status: "cancelled", ordered: day1}.at(pos(400, 1)),
		},
		{
			stockRow(stream.OpDelete, 2, "PAR1", 0, 0, pos(500, 0), day2),
			captured("inventory", stream.OpTruncate, nil, nil, pos(500, 1), day2),
			stockRow(stream.OpUpdate, 1, "LYO1", 145, 5, pos(400, 0), day2), // late re-delivery
			stockRow(stream.OpInsert, 1, "LYO1", 10, 0, pos(510, 0), day2),
		},
	}
}

const inventoryQ = `SELECT product_id, warehouse_code, date_key, product_key <> -1, on_hand, reserved, received_units,
	shipped_units, sold_units, dq_warnings FROM fact_inventory ORDER BY ALL`

// Levels, receipts, shipments and sold units, exactly, after each batch.
func TestInventoryAggregates(t *testing.T) {
	t.Parallel()
	p, sink := aggregateOnMemory(t, Inventory)
	b := inventoryBatches()
	lyo := "1|LYO1|20261126|true|140|5|50|10|0|NULL"
	par := "1|PAR1|20261126|true|20|0|0|0|0|NULL"
	p2 := "2|PAR1|20261126|true|30|0|30|0|0|NULL"
	p9 := "9|LYO1|20261126|false|5|0|5|0|0|referential_product_key"
	sold2 := "2|*|20261127|true|NULL|NULL|0|0|1|NULL"
	steps := []struct {
		batches int
		want    []string
	}{
		{1, []string{"1|LYO1|20261126|true|100|5|0|0|0|NULL", par}},
		{2, []string{lyo, par}},
		{3, []string{lyo, par}},
		{4, []string{lyo, par, p2, p9}},
		{5, []string{"1|*|20261126|true|NULL|NULL|0|0|5|NULL", lyo, par, sold2, p2, p9}},
		{6, []string{"1|*|20261126|true|NULL|NULL|0|0|3|NULL", lyo, par, sold2, p2, p9}},
		{7, []string{lyo, "1|LYO1|20261127|true|145|5|5|0|0|NULL", par, sold2, p2, p9}},
		{8, []string{lyo, "1|LYO1|20261127|true|10|0|15|0|0|NULL", par, sold2, p2, "2|PAR1|20261127|true|0|0|0|0|0|NULL", p9}},
	}
	done := 0
	for _, st := range steps {
		run(t, p, b[done:st.batches]...)
		done = st.batches
		wantRows(t, "fact_inventory after batch "+string(rune('0'+done)), dump(t, sink, inventoryQ), st.want)
	}
	wantRows(t, "quarantine", dump(t, sink, "SELECT rule, severity, source_key FROM dq_quarantine ORDER BY ALL"), []string{
		`range_inventory_on_hand|error|{"product_id":1,"warehouse_code":"PAR1"}`,
		`referential_product_key|warn|{"product_id":9,"warehouse_code":"LYO1"}`,
	})
}

func TestInventoryRestore(t *testing.T) {
	t.Parallel()
	checkRestore(t, Inventory, inventoryBatches())
}
