package facts

import (
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

func session(n int) string {
	d := strings.Repeat(string(rune('0'+n)), 4)
	return d + d + "-" + d + "-" + d + "-" + d + "-" + d + d + d
}

// cartEv is a cart event committed when it occurred.
func cartEv(id int64, sess int, customer any, product int64, action string, qty int64, at stream.Position, occurred time.Time) stream.Record {
	key := map[string]any{"cart_event_id": id}
	return captured("cart_events", stream.OpInsert, key, map[string]any{"cart_event_id": id, "session_id": session(sess),
		"customer_id": customer, "product_id": product, "action": action, "quantity": qty, "occurred_at": occurred}, at, occurred)
}

func committedAt(r stream.Record, commit time.Time) stream.Record {
	r.Event.CommitTime = commit
	return r
}

// cartBatches: sessions filling and checking out carts, orders after them
// (re-delivered and re-published), a later checkout taking an order over,
// a checkout arriving after the order it explains, a cancelled order, a deleted
// checkout, a session whose customer appears late and whose first event moves,
// a stale event, an unknown customer, and refused events.
func cartBatches() [][]stream.Record {
	t0 := day1
	m := time.Minute
	c1 := int64(1)
	b1 := []stream.Record{
		cartEv(1, 1, c1, 1, "add", 2, pos(100, 0), t0),
		cartEv(2, 1, c1, 2, "add", 1, pos(100, 1), t0.Add(1*m)),
		cartEv(3, 1, c1, 2, "remove", 1, pos(100, 2), t0.Add(2*m)),
		cartEv(4, 1, c1, 1, "checkout", 2, pos(100, 3), t0.Add(5*m)),
		cartEv(5, 2, nil, 1, "add", 1, pos(100, 4), t0),
		cartEv(6, 2, nil, 1, "wishlist", 1, pos(100, 5), t0), // refused: not an action
		cartEv(7, 2, nil, 1, "add", 0, pos(100, 6), t0),      // refused: no quantity
	}
	b2 := []stream.Record{
		saleRow{item: 31, order: 1, customer: 1, product: 1, qty: 2, net: "20", status: "placed", ordered: t0.Add(30 * m)}.at(pos(200, 1)),
		saleRow{item: 32, order: 2, customer: 1, product: 1, qty: 1, net: "10", status: "placed", ordered: t0.Add(125 * m)}.at(pos(200, 3)),
		saleRow{item: 33, order: 3, customer: 2, product: 1, qty: 5, net: "50", status: "paid", ordered: t0.Add(10 * m)}.at(pos(200, 5)),
	}
	return [][]stream.Record{
		b1,
		b2,
		append(append([]stream.Record{}, b1...), b2...), // capture re-delivers, fact_sales re-publishes
		{
			cartEv(8, 3, c1, 1, "add", 1, pos(300, 0), t0.Add(10*m)),
			cartEv(9, 3, c1, 1, "checkout", 1, pos(300, 1), t0.Add(20*m)),
		},
		{cartEv(10, 4, c1, 1, "checkout", 1, pos(400, 0), t0.Add(95*m))},
		{
			saleRow{item: 31, order: 1, customer: 1, product: 1, qty: 2, net: "20", status: "cancelled", ordered: t0.Add(30 * m)}.at(pos(500, 0)),
			captured("cart_events", stream.OpDelete, map[string]any{"cart_event_id": int64(4)}, nil, pos(500, 1), t0),
		},
		{
			cartEv(11, 2, int64(2), 1, "checkout", 5, pos(600, 0), t0.Add(5*m)),
			cartEv(12, 4, c1, 2, "add", 1, pos(600, 1), t0.Add(-24*time.Hour)),
			committedAt(cartEv(13, 5, nil, 2, "add", 1, pos(600, 2), t0.Add(-60*24*time.Hour)), t0), // stale: warned
			cartEv(14, 6, int64(9), 1, "add", 1, pos(600, 3), t0),                                   // customer 9 is unknown
		},
	}
}

const cartQ = `SELECT left(session_id, 1), product_id, customer_id,
	CASE WHEN customer_key IS NULL THEN 'anonymous' WHEN customer_key = -1 THEN 'unknown' ELSE 'known' END,
	product_key <> -1, date_key, checked_out_at IS NOT NULL, added_units, removed_units, checked_out_units, purchased_units,
	dq_warnings FROM fact_cart ORDER BY ALL`

// Added, removed, checked out and purchased units, exactly, after each batch.
func TestCartAggregates(t *testing.T) {
	t.Parallel()
	p, sink := aggregateOnMemory(t, Cart)
	b := cartBatches()
	s1p1 := func(out string, checkout bool, purchased string) string {
		c := "false"
		if checkout {
			c = "true"
		}
		return "1|1|1|known|true|20261126|" + c + "|2|0|" + out + "|" + purchased + "|NULL"
	}
	s1p2 := "1|2|1|known|true|20261126|false|1|1|0|0|NULL"
	s2 := "2|1|NULL|anonymous|true|20261126|false|1|0|0|0|NULL"
	s3 := func(purchased string) string { return "3|1|1|known|true|20261126|true|1|0|1|" + purchased + "|NULL" }
	s4 := "4|1|1|known|true|20261126|true|0|0|1|1|NULL"
	steps := []struct {
		batches int
		want    []string
	}{
		{1, []string{s1p1("2", true, "0"), s1p2, s2}},
		{2, []string{s1p1("2", true, "2"), s1p2, s2}},
		{3, []string{s1p1("2", true, "2"), s1p2, s2}},
		{4, []string{s1p1("2", true, "0"), s1p2, s2, s3("2")}},
		{5, []string{s1p1("2", true, "0"), s1p2, s2, s3("2"), s4}},
		{6, []string{s1p1("0", false, "0"), s1p2, s2, s3("0"), s4}},
		{7, []string{s1p1("0", false, "0"), s1p2, "2|1|2|known|true|20261126|true|1|0|5|5|NULL", s3("0"),
			"4|1|1|known|true|20261125|true|0|0|1|1|NULL", "4|2|1|known|true|20261125|false|1|0|0|0|NULL",
			"5|2|NULL|anonymous|true|20260927|false|1|0|0|0|freshness_cart_events_occurred_at",
			"6|1|9|unknown|true|20261126|false|1|0|0|0|referential_customer_key"}},
	}
	done := 0
	for _, st := range steps {
		run(t, p, b[done:st.batches]...)
		done = st.batches
		wantRows(t, "fact_cart after batch "+string(rune('0'+done)), dump(t, sink, cartQ), st.want)
	}
	wantRows(t, "quarantine", dump(t, sink, "SELECT rule, severity, source_key FROM dq_quarantine ORDER BY ALL"), []string{
		`accepted_cart_events_action|error|{"cart_event_id":6}`,
		`freshness_cart_events_occurred_at|warn|{"cart_event_id":13}`,
		`range_cart_events_quantity|error|{"cart_event_id":7}`,
		`referential_customer_key|warn|{"cart_event_id":14}`,
	})
}

func TestCartRestore(t *testing.T) {
	t.Parallel()
	checkRestore(t, Cart, cartBatches())
}
