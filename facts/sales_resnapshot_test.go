package facts

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

// Capture killed during its initial snapshot takes a new one, which truncates
// every table before writing its rows again: order_items first, then orders.
// The order written again must keep following its lines: after a later status
// change the fact row showed the old status (216 rows in a chaos round), in the
// running pipeline and after a restart that restored its state.
func TestSalesStatusAfterResnapshot(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	rec := func(table string, op stream.Op, key string, id int64, row map[string]any, lsn stream.LSN, seq uint64) stream.Record {
		ev := stream.Event{Table: table, Op: op, After: row, Pos: stream.Position{LSN: lsn, Seq: seq}, CommitTime: now}
		if op != stream.OpTruncate {
			ev.Key = map[string]any{key: id}
		}
		return stream.Record{Event: ev}
	}
	item := itemRow(7, int64(1), big.NewRat(10, 1), new(big.Rat))
	snapshot := []stream.Record{
		rec("orders", stream.OpSnapshot, "order_id", 1, orderRow(1, 1, "delivered", now), 50, 1),
		rec("order_items", stream.OpSnapshot, "order_item_id", 7, item, 50, 2),
	}
	resnapshot := []stream.Record{
		rec("order_items", stream.OpTruncate, "", 0, nil, 60, 0),
		rec("order_items", stream.OpSnapshot, "order_item_id", 7, item, 60, 1),
		rec("orders", stream.OpTruncate, "", 0, nil, 60, 2),
		rec("orders", stream.OpSnapshot, "order_id", 1, orderRow(1, 1, "delivered", now), 60, 3),
	}
	returned := []stream.Record{rec("orders", stream.OpUpdate, "order_id", 1, orderRow(1, 1, "returned", now), 70, 0)}

	for _, restart := range []bool{false, true} {
		// With restart, a new process restores the state records written before the return.
		sink := salesThroughRestart(t, [][]stream.Record{snapshot, resnapshot, returned}, restart, nil)
		_, got, err := sink.Query(context.Background(), "SELECT order_status FROM fact_sales WHERE order_item_id = 7")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0][0] != "returned" {
			t.Errorf("restart=%v: fact_sales order_status %v, want returned", restart, got)
		}
	}
}
