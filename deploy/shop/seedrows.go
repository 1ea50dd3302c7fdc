package shop

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// tables returns the COPY of every shop table, in foreign-key order.
func (s *seeder) tables() []copyTable {
	n := s.cfg.Scale
	return []copyTable{
		{"sellers", []string{"seller_id", "name", "city", "state", "country", "rating", "status", "joined_at", "updated_at"},
			counted(n*sellersPerScale, s.sellerRow(s.rng(1)))},
		{"customers", []string{"customer_id", "email", "full_name", "phone", "city", "state", "country", "segment",
			"loyalty_tier", "birth_date", "marketing_opt_in", "created_at", "updated_at"},
			counted(n*customersPerScale, s.customerRow(s.rng(2)))},
		{"products", []string{"product_id", "seller_id", "sku", "name", "category", "subcategory", "brand", "list_price",
			"unit_cost", "is_active", "description", "attributes", "tags", "thumbnail", "launched_on", "updated_at"},
			counted(n*productsPerScale, s.productRow(s.rng(3)))},
		{"campaigns", []string{"campaign_id", "name", "channel", "target_product_id", "start_date", "end_date", "budget",
			"daily_send_time", "status", "updated_at"},
			counted(n*campaignsPerScale, s.campaignRow(s.rng(4)))},
		{"orders", []string{"order_id", "customer_id", "campaign_id", "status", "ordered_at", "ship_city", "ship_state",
			"ship_country", "shipped_at", "delivered_at", "updated_at"},
			counted(n*ordersPerScale, s.orderRow(s.rng(5)))},
		{"order_items", []string{"order_item_id", "order_id", "product_id", "seller_id", "quantity", "unit_price", "discount"},
			listed(func() [][]any { return s.items })},
		{"inventory", []string{"product_id", "warehouse_code", "on_hand", "reserved", "updated_at"},
			listed(func() [][]any { return s.inventoryRows(s.rng(6)) })},
		{"cart_events", []string{"cart_event_id", "session_id", "customer_id", "product_id", "action", "quantity", "occurred_at"},
			listed(func() [][]any { return s.cartRows(s.rng(7), n*cartEventsPerScale) })},
		{"campaign_events", []string{"campaign_event_id", "campaign_id", "customer_id", "event_type", "cost", "occurred_at"},
			counted(n*campaignEventsPerScale, s.campaignEventRow(s.rng(8)))},
		{"page_views", []string{"page_view_id", "session_id", "customer_id", "url", "referrer", "user_agent", "client_time", "occurred_at"},
			listed(func() [][]any { return s.pageViewRows(s.rng(9), n*pageViewsPerScale) })},
	}
}

// within returns a uniformly drawn instant in [from, to), to the second.
func within(r *rand.Rand, from, to time.Time) time.Time {
	span := int64(to.Sub(from) / time.Second)
	if span <= 0 {
		return from
	}
	return from.Add(time.Duration(r.Int64N(span)) * time.Second)
}

func day(t time.Time) time.Time { return t.Truncate(24 * time.Hour) }

func (s *seeder) sellerRow(r *rand.Rand) func(int) []any {
	kinds := []string{"Outlet", "Store", "Supply", "Goods", "Trading", "Market"}
	return func(i int) []any {
		p := pick(r, s.v.places)
		var rating any
		if !chance(r, 0.1) {
			rating = decimal(int64(between(r, 250, 500)), -2)
		}
		status := "active"
		if x := r.IntN(100); x < 3 {
			status = "closed"
		} else if x < 10 {
			status = "suspended"
		}
		joined := day(s.base.AddDate(0, 0, -between(r, 0, 1000)))
		return []any{i, pick(r, s.v.brands) + " " + pick(r, kinds), p.city, p.state, p.country, rating, status,
			joined, within(r, s.base, s.end)}
	}
}

// weighted picks xs[i] with probability weights[i]/sum(weights).
func weighted(r *rand.Rand, xs []string, weights []int) string {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := r.IntN(total)
	for i, w := range weights {
		if x < w {
			return xs[i]
		}
		x -= w
	}
	return xs[len(xs)-1]
}

func (s *seeder) customerRow(r *rand.Rand) func(int) []any {
	return func(i int) []any {
		p := pick(r, s.v.places)
		name := s.v.fullName(r)
		var tel, birth any
		if !chance(r, 0.15) {
			tel = phone(r)
		}
		if !chance(r, 0.2) {
			birth = time.Date(between(r, 1950, 2005), time.Month(between(r, 1, 12)), between(r, 1, 28), 0, 0, 0, 0, time.UTC)
		}
		created := within(r, s.base, s.base.AddDate(0, 0, seedDays-65))
		updated := within(r, created, created.AddDate(0, 0, 60))
		s.customer = append(s.customer, seedCustomer{created: created, place: p})
		return []any{i, email(name, uint64(i)), name, tel, p.city, p.state, p.country,
			weighted(r, s.v.segments, []int{70, 20, 10}), weighted(r, s.v.tiers, []int{50, 30, 15, 5}),
			birth, chance(r, 0.4), created, updated}
	}
}

func (s *seeder) productRow(r *rand.Rand) func(int) []any {
	sellers := s.cfg.Scale * sellersPerScale
	return func(i int) []any {
		c := pick(r, s.v.categories)
		sub := pick(r, c.subs)
		brand := pick(r, s.v.brands)
		name := fmt.Sprintf("%s %s %s", brand, pick(r, s.v.words), sub)
		price := int64(between(r, 499, 9999))
		if chance(r, 0.2) {
			price *= 10
		}
		cost := price * 100 * int64(between(r, 40, 75)) / 100 // in 1/10000
		seller := int64(between(r, 1, sellers))
		size := between(r, 120, 1500)
		if i%10 == 3 { // every tenth product is large enough to be stored out of line
			size = between(r, 9*1024, 24*1024)
		}
		var thumb []byte
		if !chance(r, 0.1) {
			thumb = thumbnail(r)
		}
		s.product = append(s.product, seedProduct{seller: seller, price: price})
		return []any{i, seller, fmt.Sprintf("SKU-%07d", i), name, c.name, sub, brand, decimal(price, -2),
			decimal(cost, -4), !chance(r, 0.05), s.v.description(r, name, size),
			s.attributes(r), s.tags(r, c.name, sub), thumb,
			day(s.base.AddDate(0, 0, -between(r, 0, 2000))), within(r, s.base, s.end)}
	}
}

// thumbnail returns a small fake PNG: the signature then random bytes.
func thumbnail(r *rand.Rand) []byte {
	b := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}
	for range between(r, 48, 512) {
		b = append(b, byte(r.UintN(256)))
	}
	return b
}

func (s *seeder) attributes(r *rand.Rand) []byte {
	a := map[string]any{
		"color":           pick(r, s.v.colors),
		"weight_g":        between(r, 20, 20000),
		"dimensions_cm":   []int{between(r, 1, 120), between(r, 1, 120), between(r, 1, 120)},
		"warranty_months": pick(r, []int{0, 6, 12, 24}),
		"fragile":         chance(r, 0.2),
	}
	if chance(r, 0.3) {
		a["rating"] = map[string]any{"stars": float64(between(r, 10, 50)) / 10, "reviews": between(r, 0, 5000)}
	}
	b, _ := json.Marshal(a) // plain values: cannot fail
	return b
}

func (s *seeder) tags(r *rand.Rand, cat, sub string) []string {
	t := []string{cat, sub}
	for range between(r, 0, 3) {
		if w := pick(r, s.v.words); !slices.Contains(t, w) {
			t = append(t, w)
		}
	}
	return t
}

func (s *seeder) campaignRow(r *rand.Rand) func(int) []any {
	products := s.cfg.Scale * productsPerScale
	return func(i int) []any {
		ch := pick(r, s.v.channels)
		var target, send any
		if i%2 == 0 {
			target = between(r, 1, products)
		}
		if ch == "email" {
			send = pgtype.Time{Microseconds: int64(between(r, 6*60, 20*60)) * 60 * 1_000_000, Valid: true}
		}
		start := day(s.base.AddDate(0, 0, between(r, 0, seedDays-35)))
		end := start.AddDate(0, 0, between(r, 14, 120))
		status := "active"
		switch {
		case !end.After(s.end):
			status = "ended"
		case chance(r, 0.2):
			status = "paused"
		}
		s.campaign = append(s.campaign, seedCampaign{start: start, end: end})
		return []any{i, fmt.Sprintf("%s %s #%d", ch, pick(r, s.v.words), i), ch, target, start, end,
			decimal(int64(between(r, 1000, 50000))*100, -2), send, status, within(r, start, start.AddDate(0, 0, 14))}
	}
}
