package facts_test

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/facts"
)

// inventoryMoves records every on_hand change of the source, which keeps only
// the current level: the oracle of received and shipped units. Installed after
// the seed, before capture starts, so it sees exactly the streamed changes.
const inventoryMoves = `
	CREATE TABLE {s}.inventory_moves (move_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		product_id bigint, warehouse_code text, old_on_hand integer, new_on_hand integer);
	CREATE FUNCTION {s}.log_inventory_move() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO {s}.inventory_moves (product_id, warehouse_code, old_on_hand, new_on_hand)
		VALUES (NEW.product_id, NEW.warehouse_code, CASE WHEN TG_OP = 'UPDATE' THEN OLD.on_hand END, NEW.on_hand);
		RETURN NEW;
	END $$;
	CREATE TRIGGER log_inventory_move AFTER INSERT OR UPDATE ON {s}.inventory
		FOR EACH ROW EXECUTE FUNCTION {s}.log_inventory_move();`

// liveItems are the order items the aggregates count: orders neither cancelled nor returned.
const liveItems = `SELECT oi.order_item_id, oi.order_id, o.customer_id, o.campaign_id, oi.product_id, oi.quantity,
	oi.quantity * oi.unit_price - oi.discount AS net, o.ordered_at,
	to_char(o.ordered_at AT TIME ZONE 'UTC', 'YYYYMMDD')::bigint AS d
	FROM {s}.order_items oi JOIN {s}.orders o USING (order_id) WHERE o.status NOT IN ('cancelled', 'returned')`

// The oracles: each aggregate computed directly from the source in SQL.
var oracles = map[string]string{
	"fact_inventory": `
		SELECT i.product_id, i.warehouse_code, $1::bigint, i.on_hand, i.reserved,
			coalesce(sum(greatest(m.new_on_hand - coalesce(m.old_on_hand, 0), 0)), 0),
			coalesce(sum(greatest(coalesce(m.old_on_hand, 0) - m.new_on_hand, 0)), 0), 0
		FROM {s}.inventory i LEFT JOIN {s}.inventory_moves m USING (product_id, warehouse_code)
		GROUP BY i.product_id, i.warehouse_code, i.on_hand, i.reserved
		UNION ALL
		SELECT product_id, '*', d, NULL, NULL, 0, 0, sum(quantity) FROM (` + liveItems + `) l GROUP BY product_id, d`,
	"fact_cart": `
		WITH sess AS (
			SELECT session_id, min(occurred_at) AS first_at,
				(array_agg(customer_id ORDER BY occurred_at DESC, cart_event_id DESC) FILTER (WHERE customer_id IS NOT NULL))[1] AS customer_id
			FROM {s}.cart_events GROUP BY session_id),
		cell AS (
			SELECT session_id, product_id,
				coalesce(sum(quantity) FILTER (WHERE action = 'add'), 0) AS added,
				coalesce(sum(quantity) FILTER (WHERE action = 'remove'), 0) AS removed,
				coalesce(sum(quantity) FILTER (WHERE action = 'checkout'), 0) AS checked_out,
				max(occurred_at) FILTER (WHERE action = 'checkout') AS checkout_at
			FROM {s}.cart_events GROUP BY session_id, product_id),
		attributed AS (
			SELECT DISTINCT ON (i.order_item_id) c.session_id, c.product_id, i.quantity
			FROM (` + liveItems + `) i
			JOIN cell c ON c.product_id = i.product_id AND c.checkout_at <= i.ordered_at AND i.ordered_at <= c.checkout_at + interval '1 hour'
			JOIN sess s ON s.session_id = c.session_id AND s.customer_id = i.customer_id
			ORDER BY i.order_item_id, c.checkout_at DESC, c.session_id DESC)
		SELECT c.session_id::text, c.product_id, s.customer_id, to_char(s.first_at AT TIME ZONE 'UTC', 'YYYYMMDD')::bigint,
			c.added, c.removed, c.checked_out,
			coalesce((SELECT sum(a.quantity) FROM attributed a WHERE a.session_id = c.session_id AND a.product_id = c.product_id), 0)
		FROM cell c JOIN sess s USING (session_id)`,
	"fact_marketing": `
		WITH ev AS (
			SELECT campaign_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMMDD')::bigint AS d,
				count(*) FILTER (WHERE event_type = 'impression') AS impressions,
				count(*) FILTER (WHERE event_type = 'click') AS clicks,
				coalesce(sum(cost) FILTER (WHERE event_type = 'spend'), 0) AS spend
			FROM {s}.campaign_events GROUP BY 1, 2),
		sold AS (
			SELECT campaign_id, d, count(DISTINCT order_id) AS orders, sum(net) AS revenue
			FROM (` + liveItems + `) l WHERE campaign_id IS NOT NULL GROUP BY 1, 2)
		SELECT coalesce(ev.campaign_id, sold.campaign_id), coalesce(ev.d, sold.d), coalesce(impressions, 0), coalesce(clicks, 0),
			coalesce(spend, 0), coalesce(orders, 0), coalesce(revenue, 0)
		FROM ev FULL JOIN sold ON ev.campaign_id = sold.campaign_id AND ev.d = sold.d`,
}

// The same columns of the warehouse tables.
var warehouse = map[string]string{
	"fact_inventory": `SELECT product_id, warehouse_code, date_key, on_hand, reserved, received_units, shipped_units, sold_units FROM fact_inventory`,
	"fact_cart": `SELECT session_id, product_id, customer_id, date_key, added_units, removed_units, checked_out_units, purchased_units
		FROM fact_cart`,
	"fact_marketing": `SELECT campaign_id, date_key, impressions, clicks, spend, attributed_orders, attributed_revenue FROM fact_marketing`,
}

// Capture, the dimensions, fact_sales and the three aggregates run on a seeded
// shop while the generator and a script of checkouts, orders, cancellations,
// returns, receipts and shipments change it; after a fence, every aggregate
// table equals the same aggregate computed on the source in SQL, row for row.
func TestAggregatesMatchSource(t *testing.T) {
	t.Parallel()
	s := newSlice(t, 1)
	ctx := context.Background()
	s.exec(inventoryMoves)
	// The inventory oracle assumes one commit day: never start within minutes of
	// midnight UTC (the run takes well under a minute).
	if wait := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); wait < 4*time.Minute {
		time.Sleep(wait + time.Second)
	}
	today := dimensions.DateKey(time.Now())
	s.capture()
	for _, spec := range dimensions.All() {
		s.run(s.dim(spec))
	}
	s.run(s.fact(facts.Sales))
	aggs := []*facts.Pipeline{s.fact(facts.Inventory), s.fact(facts.Cart), s.fact(facts.Marketing)}
	for _, p := range aggs {
		s.run(p)
	}
	for _, p := range aggs {
		s.streaming(p)
	}

	gen, err := shop.NewGenerator(capturetest.Connect(t), shop.GeneratorConfig{Schema: s.schema, Rate: 250, Seed: 11}, nil)
	if err != nil {
		t.Fatal(err)
	}
	genCtx, stop := context.WithTimeout(ctx, 4*time.Second)
	defer stop()
	if err := gen.Run(genCtx); err != nil {
		t.Fatal(err)
	}
	s.script()

	fence := capturetest.Fence(t, s.db)
	for _, p := range aggs {
		capturetest.Eventually(t, 120*time.Second, p.Name()+" passes the fence", func() bool { return p.Stats().Watermark >= fence })
	}
	if dimensions.DateKey(time.Now()) != today {
		t.Fatal("the run took more than four minutes and crossed midnight UTC: the inventory oracle assumes one commit day")
	}
	for _, table := range []string{"fact_inventory", "fact_cart", "fact_marketing"} {
		want := s.oracle(oracles[table], today)
		got := s.warehouseRows(warehouse[table])
		if len(want) < 10 {
			t.Fatalf("%s: only %d oracle rows, too few to compare", table, len(want))
		}
		t.Logf("%s: %d rows, oracle %d", table, len(got), len(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s differs from its oracle (%d rows, want %d):\n%s", table, len(got), len(want), diff(got, want))
		}
	}
	s.checkRoas()
	s.checkKeys()
	if n := s.query("SELECT count(*) FROM fact_cart WHERE purchased_units > 0")[0][0]; n.(int64) < 3 {
		t.Errorf("only %v cart rows with purchases: the attribution is barely exercised", n)
	}
}

// script makes what random traffic rarely does: checkouts followed by orders of
// the same customer (some cancelled or returned, one preceded by two checkouts,
// one before its checkout), campaign orders and spend, receipts and shipments.
func (s *slice) script() {
	s.t.Helper()
	ctx := context.Background()
	sessionID := func(n int) [16]byte {
		var id [16]byte
		copy(id[:], fmt.Sprintf("script-%09d", n))
		return id
	}
	cartEvent := func(sess int, customer, product int64, action shop.CartAction) {
		if _, err := shop.AddCartEvent(ctx, s.db, s.schema, shop.CartEvent{SessionID: sessionID(sess), CustomerID: customer,
			ProductID: product, Action: action, Quantity: 2}); err != nil {
			s.t.Fatal(err)
		}
	}
	order := func(customer, campaign, product int64) int64 {
		id, _, err := shop.InsertOrder(ctx, s.db, s.schema, shop.Order{CustomerID: customer, CampaignID: campaign,
			Items: []shop.OrderItem{{ProductID: product, Quantity: 2}, {ProductID: product + 1, Quantity: 1, Discount: "1.50"}}})
		if err != nil {
			s.t.Fatal(err)
		}
		return id
	}
	status := func(id int64, st shop.OrderStatus) {
		if err := shop.SetOrderStatus(ctx, s.db, s.schema, id, st); err != nil {
			s.t.Fatal(err)
		}
	}
	for i := 0; i < 8; i++ {
		customer, product := int64(10+i), int64(20+3*i)
		cartEvent(i, customer, product, shop.CartAdd)
		cartEvent(i, customer, product, shop.CartCheckout)
		if i == 3 { // a second session checks out later: it takes the order
			cartEvent(100+i, customer, product, shop.CartAdd)
			cartEvent(100+i, customer, product, shop.CartCheckout)
		}
		id := order(customer, int64(1+i%3), product)
		switch i {
		case 5:
			status(id, shop.OrderCancelled)
		case 6:
			status(id, shop.OrderDelivered)
			status(id, shop.OrderReturned)
		case 7:
			cartEvent(200+i, customer, product, shop.CartCheckout) // after the order: explains nothing
		default:
			if err := shop.ShipOrder(ctx, s.db, s.schema, id); err != nil {
				s.t.Fatal(err)
			}
		}
		if _, err := shop.AddCampaignEvent(ctx, s.db, s.schema, shop.CampaignEvent{CampaignID: int64(1 + i%3),
			Type: shop.CampaignSpend, Cost: "12.3456"}); err != nil {
			s.t.Fatal(err)
		}
		if err := shop.AdjustInventory(ctx, s.db, s.schema, product, "ZZZ9", 40-10*i); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *slice) exec(q string) {
	s.t.Helper()
	if _, err := s.db.Exec(context.Background(), strings.ReplaceAll(q, "{s}", pgx.Identifier{s.schema}.Sanitize())); err != nil {
		s.t.Fatal(err)
	}
}

// oracle runs a query on the source and renders its rows, sorted.
func (s *slice) oracle(q string, args ...any) []string {
	s.t.Helper()
	q = strings.ReplaceAll(q, "{s}", pgx.Identifier{s.schema}.Sanitize())
	if !strings.Contains(q, "$1") {
		args = nil
	}
	rows, err := s.db.Query(context.Background(), "SELECT * FROM ("+q+") o", args...)
	if err != nil {
		s.t.Fatalf("oracle: %v", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, renderRow(vals))
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (s *slice) warehouseRows(q string) []string {
	s.t.Helper()
	var out []string
	for _, row := range s.query(q) {
		out = append(out, renderRow(row))
	}
	slices.Sort(out)
	return out
}

// renderRow renders values of either database alike: numbers as plain
// decimals, uuids as text, NULL as NULL.
func renderRow(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = renderValue(v)
	}
	return strings.Join(parts, "|")
}

func renderValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case *big.Rat:
		return trimDecimal(x.FloatString(9))
	case pgtype.Numeric:
		text, err := x.Value()
		if r, ok := new(big.Rat).SetString(fmt.Sprint(text)); err == nil && ok {
			return trimDecimal(r.FloatString(9))
		}
	case int32:
		return fmt.Sprint(int64(x))
	}
	return fmt.Sprint(v)
}

func trimDecimal(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

func diff(got, want []string) string {
	var b strings.Builder
	n := 0
	for _, g := range got {
		if !slices.Contains(want, g) && n < 20 {
			fmt.Fprintf(&b, "  extra   %s\n", g)
			n++
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) && n < 40 {
			fmt.Fprintf(&b, "  missing %s\n", w)
			n++
		}
	}
	return b.String()
}

// checkRoas compares ROAS with revenue / spend: correctly rounded to NUMERIC's
// 9 decimals, NULL without spend.
func (s *slice) checkRoas() {
	s.t.Helper()
	half := big.NewRat(1, 2_000_000_000)
	for _, r := range s.query("SELECT campaign_id, date_key, spend, attributed_revenue, roas FROM fact_marketing") {
		spend, revenue := r[2].(*big.Rat), r[3].(*big.Rat)
		if spend.Sign() == 0 {
			if r[4] != nil {
				s.t.Errorf("campaign %v on %v: roas %v without spend", r[0], r[1], r[4])
			}
			continue
		}
		roas, _ := r[4].(*big.Rat)
		exact := new(big.Rat).Quo(revenue, spend)
		if roas == nil || new(big.Rat).Abs(new(big.Rat).Sub(roas, exact)).Cmp(half) > 0 {
			s.t.Errorf("campaign %v on %v: roas %v, want %s rounded", r[0], r[1], r[4], exact.FloatString(12))
		}
	}
}

// checkKeys checks that every surrogate key names a version of the row's own
// natural key (or is NULL for anonymous sessions), and none is unknown.
func (s *slice) checkKeys() {
	s.t.Helper()
	for _, q := range []string{
		`SELECT count(*) FROM fact_inventory f LEFT JOIN dim_product d USING (product_key) WHERE d.product_id IS DISTINCT FROM f.product_id`,
		`SELECT count(*) FROM fact_cart f LEFT JOIN dim_product d USING (product_key) WHERE d.product_id IS DISTINCT FROM f.product_id`,
		`SELECT count(*) FROM fact_cart f LEFT JOIN dim_customer d USING (customer_key) WHERE d.customer_id IS DISTINCT FROM f.customer_id`,
		`SELECT count(*) FROM fact_marketing f LEFT JOIN dim_campaign d USING (campaign_key) WHERE d.campaign_id IS DISTINCT FROM f.campaign_id`,
	} {
		if n := s.query(q)[0][0]; n != int64(0) {
			s.t.Errorf("%v rows with a wrong or unknown key: %s", n, q)
		}
	}
}
