package shop

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// orderRow draws an order and its items (kept in s.items for the next COPY).
// The order's status is where its drawn timeline stands at the end of the
// seeded history, so shipped_at, delivered_at and updated_at agree with it.
func (s *seeder) orderRow(r *rand.Rand) func(int) []any {
	return func(i int) []any {
		cid := r.IntN(len(s.customer))
		c := s.customer[cid]
		ordered := within(r, c.created, s.end)
		var campaign any
		if chance(r, 0.3) {
			k := r.IntN(len(s.campaign))
			if cp := s.campaign[k]; !ordered.Before(cp.start) && ordered.Before(cp.end.AddDate(0, 0, 7)) {
				campaign = k + 1
			}
		}
		status, updated, shipped, delivered := s.timeline(r, ordered)
		s.drawItems(r, i)
		return []any{i, cid + 1, campaign, status, ordered, c.place.city, c.place.state, c.place.country,
			shipped, delivered, updated}
	}
}

// timeline draws an order's milestones and returns the status reached by the
// end of history, when it was reached, and the shipped/delivered instants
// reached (nil when not).
func (s *seeder) timeline(r *rand.Rand, ordered time.Time) (status string, at time.Time, shipped, delivered any) {
	paid := ordered.Add(time.Duration(between(r, 1, 60)) * time.Minute)
	ship := paid.Add(time.Duration(between(r, 6*60, 36*60)) * time.Minute)
	deliver := ship.Add(time.Duration(between(r, 24, 120)) * time.Hour)
	status, at = "placed", ordered
	switch x := r.IntN(100); {
	case x < 6: // cancelled before shipping
		cancel := ordered.Add(time.Duration(between(r, 5, 600)) * time.Minute)
		if cancel.Before(s.end) {
			return "cancelled", cancel, nil, nil
		}
	case x < 11: // returned after delivery
		ret := deliver.AddDate(0, 0, between(r, 2, 20))
		if ret.Before(s.end) {
			return "returned", ret, ship, deliver
		}
	}
	if paid.Before(s.end) {
		status, at = "paid", paid
	}
	if ship.Before(s.end) {
		status, at, shipped = "shipped", ship, ship
	}
	if deliver.Before(s.end) {
		status, at, delivered = "delivered", deliver, deliver
	}
	return status, at, shipped, delivered
}

// drawItems appends 1–4 lines of distinct products for order id.
func (s *seeder) drawItems(r *rand.Rand, order int) {
	n := between(r, 1, 4)
	seen := make([]int, 0, n)
	for range n {
		p := r.IntN(len(s.product))
		if slices.Contains(seen, p) {
			continue
		}
		seen = append(seen, p)
		prod := s.product[p]
		qty := int64(1)
		if x := r.IntN(10); x >= 9 {
			qty = 3
		} else if x >= 6 {
			qty = 2
		}
		var discount int64
		if chance(r, 0.25) {
			discount = prod.price * qty * int64(between(r, 5, 20)) / 100
		}
		s.items = append(s.items, []any{len(s.items) + 1, order, p + 1, prod.seller, qty,
			decimal(prod.price, -2), decimal(discount, -2)})
	}
}

// inventoryRows stocks every product in 2–3 of the warehouses.
func (s *seeder) inventoryRows(r *rand.Rand) [][]any {
	rows := make([][]any, 0, len(s.product)*5/2)
	for p := range s.product {
		codes := slices.Clone(s.v.warehouses)
		r.Shuffle(len(codes), func(i, j int) { codes[i], codes[j] = codes[j], codes[i] })
		codes = codes[:between(r, 2, 3)]
		slices.Sort(codes)
		for _, code := range codes {
			onHand := between(r, 0, 500)
			rows = append(rows, []any{p + 1, code, onHand, between(r, 0, min(20, onHand)),
				within(r, s.base, s.end)})
		}
	}
	return rows
}

// customerOrNull returns a customer id, or nil with probability anon.
func (s *seeder) customerOrNull(r *rand.Rand, anon float64) any {
	if chance(r, anon) {
		return nil
	}
	return r.IntN(len(s.customer)) + 1
}

// cartRows draws shopping sessions until about target events: adds, an
// occasional remove, and for some sessions a checkout line per product left.
func (s *seeder) cartRows(r *rand.Rand, target int) [][]any {
	rows := make([][]any, 0, target+8)
	for len(rows) < target {
		session := newUUID(r)
		customer := s.customerOrNull(r, 0.3)
		at := within(r, s.base, s.end.Add(-2*time.Hour))
		step := func() time.Time {
			at = at.Add(time.Duration(between(r, 10, 600)) * time.Second)
			return at
		}
		add := func(action string, product, qty int) {
			rows = append(rows, []any{len(rows) + 1, session, customer, product, action, qty, step()})
		}
		cart := map[int]int{}
		var order []int
		for range between(r, 1, 3) {
			p, q := r.IntN(len(s.product))+1, between(r, 1, 2)
			if _, ok := cart[p]; !ok {
				order = append(order, p)
			}
			cart[p] += q
			add("add", p, q)
		}
		if chance(r, 0.3) {
			p := order[0]
			add("remove", p, cart[p])
			delete(cart, p)
			order = order[1:]
		}
		if len(order) > 0 && chance(r, 0.4) {
			for _, p := range order {
				add("checkout", p, cart[p])
			}
		}
	}
	return rows
}

func (s *seeder) campaignEventRow(r *rand.Rand) func(int) []any {
	return func(i int) []any {
		k := r.IntN(len(s.campaign))
		cp := s.campaign[k]
		end := cp.end
		if end.After(s.end) {
			end = s.end
		}
		at := within(r, cp.start, end)
		kind, cost, anon := "impression", int64(between(r, 0, 100)), 0.6
		switch x := r.IntN(100); {
		case x >= 95:
			kind, cost, anon = "spend", int64(between(r, 500, 50000))*100, 1
		case x >= 75:
			kind, cost, anon = "click", int64(between(r, 1000, 25000)), 0.3
		}
		return []any{i, k + 1, s.customerOrNull(r, anon), kind, decimal(cost, -4), at}
	}
}

// pageViewRows draws browsing sessions of 1–8 views until about target views.
// client_time is the occurred_at instant on the visitor's wall clock.
func (s *seeder) pageViewRows(r *rand.Rand, target int) [][]any {
	rows := make([][]any, 0, target+8)
	for len(rows) < target {
		session := newUUID(r)
		customer := s.customerOrNull(r, 0.5)
		offset := time.Duration(pick(r, s.v.places).utcOffsetHours) * time.Hour
		agent := pick(r, s.v.userAgents)
		at := within(r, s.base, s.end.Add(-time.Hour))
		var referrer any
		if chance(r, 0.5) {
			referrer = pick(r, s.v.referrers)
		}
		for range between(r, 1, 8) {
			at = at.Add(time.Duration(between(r, 3, 300)) * time.Second)
			rows = append(rows, []any{len(rows) + 1, session, customer, s.url(r), referrer, agent,
				at.Add(offset), at})
			referrer = nil
		}
	}
	return rows
}

// url draws a page of the shop.
func (s *seeder) url(r *rand.Rand) string { return pageURL(r, s.v, len(s.product)) }

func pageURL(r *rand.Rand, v *vocab, products int) string {
	switch x := r.IntN(10); {
	case x < 5:
		return fmt.Sprintf("/p/%d", r.IntN(products)+1)
	case x < 7:
		c := pick(r, v.categories)
		return "/c/" + c.name + "/" + pick(r, c.subs)
	case x < 8:
		return "/search?q=" + pick(r, v.words)
	case x < 9:
		return "/cart"
	}
	return "/"
}
