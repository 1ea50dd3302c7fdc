package facts

import (
	"testing"
	"time"

	"github.com/starstream/starstream/stream"
)

func adEvent(id, campaign int64, typ, cost string, at stream.Position, occurred time.Time) stream.Record {
	key := map[string]any{"campaign_event_id": id}
	return captured("campaign_events", stream.OpInsert, key, map[string]any{"campaign_event_id": id, "campaign_id": campaign,
		"customer_id": nil, "event_type": typ, "cost": dec(cost), "occurred_at": occurred}, at, occurred)
}

// marketingBatches is a day of campaign activity and sales, re-delivered,
// cancelled (the order's items re-published at one position, split over two
// batches), and partly deleted.
func marketingBatches() [][]stream.Record {
	day2 := day1.Add(24 * time.Hour)
	b1 := []stream.Record{
		adEvent(1, 1, "impression", "0.001", pos(100, 0), day1),
		adEvent(2, 1, "click", "0.25", pos(100, 1), day1),
		adEvent(3, 1, "spend", "10.50", pos(100, 2), day1),
		adEvent(4, 9, "impression", "0", pos(100, 3), day1), // campaign 9 is unknown
		adEvent(5, 1, "view", "0", pos(100, 4), day1),       // not an event type
	}
	b2 := []stream.Record{
		saleRow{item: 11, order: 1, customer: 1, product: 1, campaign: int64(1), qty: 2, net: "20", status: "placed", ordered: day1}.at(pos(200, 1)),
		saleRow{item: 12, order: 1, customer: 1, product: 2, campaign: int64(1), qty: 1, net: "5", status: "placed", ordered: day1}.at(pos(200, 2)),
		saleRow{item: 13, order: 2, customer: 2, product: 1, campaign: int64(1), qty: 1, net: "7", status: "paid", ordered: day1}.at(pos(200, 4)),
		saleRow{item: 14, order: 3, customer: 2, product: 1, qty: 1, net: "100", status: "paid", ordered: day1}.at(pos(200, 6)),
	}
	return [][]stream.Record{
		b1,
		b2,
		append(append([]stream.Record{}, b1...), b2...), // capture re-delivers, fact_sales re-publishes
		{saleRow{item: 11, order: 1, customer: 1, product: 1, campaign: int64(1), qty: 2, net: "20", status: "cancelled", ordered: day1}.at(pos(300, 0))},
		{saleRow{item: 12, order: 1, customer: 1, product: 2, campaign: int64(1), qty: 1, net: "5", status: "cancelled", ordered: day1}.at(pos(300, 0))},
		{
			saleRow{item: 15, order: 4, customer: 1, product: 1, campaign: int64(1), qty: 1, net: "3", status: "placed", ordered: day2}.at(pos(400, 1)),
			adEvent(6, 1, "impression", "0", pos(400, 3), day2),
		},
		{captured("campaign_events", stream.OpDelete, map[string]any{"campaign_event_id": int64(3)}, nil, pos(500, 0), day2)},
		{
			saleDeleted(13, pos(600, 0)),
			captured("campaign_events", stream.OpDelete, map[string]any{"campaign_event_id": int64(6)}, nil, pos(600, 1), day2),
			saleRow{item: 15, order: 4, customer: 1, product: 1, campaign: int64(1), qty: 1, net: "3", status: "returned", ordered: day2}.at(pos(600, 2)),
		},
	}
}

const marketingQ = `SELECT campaign_id, date_key, campaign_key <> -1, impressions, clicks, spend, attributed_orders,
	attributed_revenue, roas, dq_warnings FROM fact_marketing ORDER BY ALL`

// Counts, spend, attributed orders and revenue, ROAS, exactly: a re-delivered
// event and a re-published sale count once, cancelled and returned orders leave
// the attribution, deleted events and items leave their cell, a cell left with
// nothing is deleted, and ROAS is NULL without spend.
func TestMarketingAggregates(t *testing.T) {
	t.Parallel()
	p, sink := aggregateOnMemory(t, Marketing)
	b := marketingBatches()
	unknown := "9|20261126|false|1|0|0|0|0|NULL|referential_campaign_key"
	steps := []struct {
		batches int
		want    []string
	}{
		{1, []string{"1|20261126|true|1|1|10.5|0|0|0|NULL", unknown}},
		{2, []string{"1|20261126|true|1|1|10.5|2|32|3.047619048|NULL", unknown}},
		{3, []string{"1|20261126|true|1|1|10.5|2|32|3.047619048|NULL", unknown}},
		{4, []string{"1|20261126|true|1|1|10.5|2|12|1.142857143|NULL", unknown}},
		{5, []string{"1|20261126|true|1|1|10.5|1|7|0.666666667|NULL", unknown}},
		{6, []string{"1|20261126|true|1|1|10.5|1|7|0.666666667|NULL", "1|20261127|true|1|0|0|1|3|NULL|NULL", unknown}},
		{7, []string{"1|20261126|true|1|1|0|1|7|NULL|NULL", "1|20261127|true|1|0|0|1|3|NULL|NULL", unknown}},
		{8, []string{"1|20261126|true|1|1|0|0|0|NULL|NULL", unknown}},
	}
	done := 0
	var dead int
	for _, st := range steps {
		_, _, d := run(t, p, b[done:st.batches]...)
		dead += len(d)
		done = st.batches
		wantRows(t, "fact_marketing after batch "+string(rune('0'+done)), dump(t, sink, marketingQ), st.want)
	}
	wantRows(t, "quarantine", dump(t, sink, "SELECT rule, severity, source_key FROM dq_quarantine ORDER BY ALL"), []string{
		`accepted_campaign_events_event_type|error|{"campaign_event_id":5}`,
		`referential_campaign_key|warn|{"campaign_event_id":4}`,
	})
	if dead != 2 { // the bad event type, and its re-delivery
		t.Fatalf("%d dead letters, want 2", dead)
	}
}

func TestMarketingRestore(t *testing.T) {
	t.Parallel()
	checkRestore(t, Marketing, marketingBatches())
}
