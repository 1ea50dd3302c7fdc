package facts

import (
	"sort"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// PurchaseWindow is how long after a checkout an order of the same customer
// counts as the purchase of what was checked out.
const PurchaseWindow = time.Hour

// cart is fact_cart's logic. Each cart event contributes its quantity to the
// cell of its session and product, as added, removed or checked out. The
// session's first event dates every cell of the session, and its customer is
// that of its latest event carrying one.
//
// Purchases: a fact_sales item of an order that counts (see attributed), with
// customer C, product P and ordered_at T, is attributed to the cell (session S,
// P) whose session's customer is C and whose latest checkout of P in S
// happened at K with K <= T <= K + PurchaseWindow; among several such cells, to
// the one with the latest K (then the greatest session id), so an item counts
// in at most one session. The rule depends only on the current events and items, never on the
// order they arrive in: whenever a checkout, a session's customer or an item
// changes, the items it concerns are attributed again.
type cart struct {
	aggregateBase
	events   map[int64]*cartEvent
	sessions map[string]*cartSession
	cells    map[string]*cartCell
	items    map[string]map[int64]bool       // customer and product → attributable items
	cands    map[string]map[string]*cartCell // customer and product → cells with a checkout
	attr     map[int64]attribution           // item → the cell it counts in
}

type cartEvent struct {
	sessionID  string
	customerID any // int64, or nil
	productID  int64
	action     string
	quantity   int64
	at         time.Time
	warn       []string
	pos        stream.Position
	deleted    bool
}

type cartSession struct {
	id       string
	events   map[int64]*cartEvent // live events
	cells    map[int64]*cartCell  // by product
	first    time.Time
	customer any
}

type cartCell struct {
	key                                   string
	session                               *cartSession
	productID                             int64
	added, removed, checkedOut, purchased int64
	checkout                              time.Time // latest checkout of the product in the session
	n                                     int       // contributing events
	warns                                 flags
	cand                                  string    // key of c.cands it is listed under, "" none
	candAt                                time.Time // checkout it is listed with
}

type attribution struct {
	cell string
	qty  int64
}

const (
	cartEventTable = "fact_cart_event"
	cartSaleTable  = "fact_cart_sale"
)

var cartEventState = stream.TableSchema{Schema: "state", Table: cartEventTable, Columns: []stream.Column{
	{Name: "cart_event_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	{Name: "session_id", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "customer_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
	{Name: "product_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
	{Name: "action", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "quantity", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
	{Name: "occurred_at", Type: stream.Type{Kind: stream.KindTimestamp}, Nullable: true},
	{Name: "warnings", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
}}

func newCart(p *Pipeline) *cart {
	c := &cart{aggregateBase: aggregateBase{p: p, name: Cart.Name, saleTable: cartSaleTable, w: newWrites("fact_cart_cell", []stream.Column{
		{Name: "session_id", Type: stream.Type{Kind: stream.KindString}, Key: true},
		{Name: "product_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	})}}
	c.reset()
	return c
}

func (c *cart) reset() {
	c.events, c.sessions, c.cells, c.sales = map[int64]*cartEvent{}, map[string]*cartSession{}, map[string]*cartCell{}, map[int64]*sale{}
	c.items, c.cands, c.attr = map[string]map[int64]bool{}, map[string]map[string]*cartCell{}, map[int64]attribution{}
	c.w.reset()
}

func (c *cart) stateSchemas() []stream.TableSchema { return c.schemas(cartEventState) }

func (c *cart) restore(ev stream.Event) error { return restoreAggregate(c, ev) }

func (c *cart) restoreSource(ev stream.Event) bool {
	if ev.Table != cartEventTable {
		return false
	}
	id, _ := asInt(ev.After["cart_event_id"])
	e := &cartEvent{sessionID: str(ev.After["session_id"]), customerID: intOrNil(ev.After["customer_id"]),
		action: str(ev.After["action"]), warn: splitWarnings(ev.After["warnings"]), pos: ev.Pos}
	e.productID, _ = asInt(ev.After["product_id"])
	e.quantity, _ = asInt(ev.After["quantity"])
	e.at, _ = ev.After["occurred_at"].(time.Time)
	e.deleted, _ = ev.After["deleted"].(bool)
	c.setEvent(id, e, touched{})
	return true
}

func (e *cartEvent) position() stream.Position { return e.pos }
func (e *cartEvent) isDeleted() bool           { return e.deleted }

func (e *cartEvent) record(id int64) stream.Event {
	after := map[string]any{"cart_event_id": id, "session_id": nil, "customer_id": e.customerID, "product_id": e.productID,
		"action": e.action, "quantity": e.quantity, "occurred_at": nil, "warnings": joinWarnings(e.warn), "deleted": e.deleted}
	if !e.deleted {
		after["session_id"], after["occurred_at"] = e.sessionID, e.at
	}
	return stream.Event{Schema: "state", Table: cartEventTable, Op: stream.OpUpdate, Key: map[string]any{"cart_event_id": id}, After: after, Pos: e.pos}
}

func (c *cart) apply(r stream.Record, q *quality.Quarantine) ([]sinks.Row, []stream.Event) {
	return applyAggregate(c, r, q)
}

func (c *cart) truncate(pos stream.Position, t touched) (state []stream.Event) {
	for _, id := range liveKeys(c.events) {
		e := &cartEvent{pos: pos, deleted: true}
		c.setEvent(id, e, t)
		state = append(state, e.record(id))
	}
	return state
}

func (c *cart) change(r stream.Record, q *quality.Quarantine, t touched) (stream.Event, bool) {
	ev := r.Event
	id, ok := asInt(ev.Key["cart_event_id"])
	if !ok {
		return stream.Event{}, false
	}
	warn, ok := admit(c.events, id, c.p.spec.Rules, r, q)
	if !ok {
		return stream.Event{}, false // already applied, or quarantined: the previous contribution stays
	}
	e := &cartEvent{pos: ev.Pos, deleted: ev.Op == stream.OpDelete}
	if !e.deleted {
		row := ev.After
		e.sessionID, e.customerID, e.action, e.warn = str(row["session_id"]), intOrNil(row["customer_id"]), str(row["action"]), warn
		e.productID, _ = asInt(row["product_id"])
		e.quantity, _ = asInt(row["quantity"])
		e.at, _ = row["occurred_at"].(time.Time)
	}
	c.setEvent(id, e, t)
	return e.record(id), true
}

// setEvent replaces a cart event's contribution, then attributes again the
// items of every customer and product whose candidate checkouts changed.
func (c *cart) setEvent(id int64, e *cartEvent, t touched) {
	affected := map[string]bool{}
	var sessions []*cartSession
	if old := c.events[id]; old != nil && !old.deleted {
		s := c.sessions[old.sessionID]
		delete(s.events, id)
		c.count(s.cells[old.productID], old, -1, t)
		sessions = append(sessions, s)
	}
	c.events[id] = e
	if !e.deleted {
		s := c.sessions[e.sessionID]
		if s == nil {
			s = &cartSession{id: e.sessionID, events: map[int64]*cartEvent{}, cells: map[int64]*cartCell{}}
			c.sessions[e.sessionID] = s
		}
		s.events[id] = e
		cell := s.cells[e.productID]
		if cell == nil {
			cell = &cartCell{key: dimensions.NaturalKey(s.id, e.productID), session: s, productID: e.productID, warns: flags{}}
			s.cells[e.productID] = cell
			c.cells[cell.key] = cell
		}
		c.count(cell, e, 1, t)
		sessions = append(sessions, s)
	}
	for _, s := range sessions {
		c.refresh(s, t, affected)
	}
	keys := make([]string, 0, len(affected))
	for k := range affected {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for item := range c.items[k] {
			c.attribute(item, t)
		}
	}
	for _, s := range sessions {
		for product, cell := range s.cells {
			if cell.n == 0 {
				delete(s.cells, product)
				delete(c.cells, cell.key)
			}
		}
		if len(s.events) == 0 {
			delete(c.sessions, s.id)
		}
	}
}

func (c *cart) count(cell *cartCell, e *cartEvent, sign int, t touched) {
	q := int64(sign) * e.quantity
	switch e.action {
	case "add":
		cell.added += q
	case "remove":
		cell.removed += q
	case "checkout":
		cell.checkedOut += q
	}
	cell.n += sign
	cell.warns.add(e.warn, sign)
	t.add(cell.key, cell.grain())
}

func (cell *cartCell) grain() map[string]any {
	return map[string]any{"session_id": cell.session.id, "product_id": cell.productID}
}

// refresh recomputes a session's first event and customer and its cells'
// checkouts, and lists each cell as a candidate under its customer and product
// (cells of anonymous sessions or without checkout are no candidates).
func (c *cart) refresh(s *cartSession, t touched, affected map[string]bool) {
	var first, latest time.Time
	var latestID int64
	var customer any
	checkout := map[int64]time.Time{}
	for id, e := range s.events {
		if first.IsZero() || e.at.Before(first) {
			first = e.at
		}
		if e.customerID != nil && (customer == nil || e.at.After(latest) || (e.at.Equal(latest) && id > latestID)) {
			customer, latest, latestID = e.customerID, e.at, id
		}
		if e.action == "checkout" && e.at.After(checkout[e.productID]) {
			checkout[e.productID] = e.at
		}
	}
	changed := !first.Equal(s.first) || customer != s.customer
	s.first, s.customer = first, customer
	for product, cell := range s.cells {
		if changed {
			t.add(cell.key, cell.grain())
		}
		cell.checkout = checkout[product]
		cand := ""
		if customer != nil && !cell.checkout.IsZero() {
			cand = dimensions.NaturalKey(customer, product)
		}
		if cand == cell.cand && cell.checkout.Equal(cell.candAt) {
			continue
		}
		t.add(cell.key, cell.grain())
		if cell.cand != "" {
			delete(c.cands[cell.cand], cell.key)
			if len(c.cands[cell.cand]) == 0 {
				delete(c.cands, cell.cand)
			}
			affected[cell.cand] = true
		}
		if cand != "" {
			if c.cands[cand] == nil {
				c.cands[cand] = map[string]*cartCell{}
			}
			c.cands[cand][cell.key] = cell
			affected[cand] = true
		}
		cell.cand, cell.candAt = cand, cell.checkout
	}
}

// attributable returns the candidate key of a sale, "" when it cannot count.
func attributable(s *sale) string {
	if !s.counts() || s.customerID == nil || s.productID == nil {
		return ""
	}
	return dimensions.NaturalKey(s.customerID, s.productID)
}

// setSale replaces a fact_sales item and attributes it again.
func (c *cart) setSale(id int64, s *sale, t touched) {
	if old := c.sales[id]; old != nil {
		if k := attributable(old); k != "" {
			delete(c.items[k], id)
			if len(c.items[k]) == 0 {
				delete(c.items, k)
			}
		}
	}
	c.sales[id] = s
	if k := attributable(s); k != "" {
		if c.items[k] == nil {
			c.items[k] = map[int64]bool{}
		}
		c.items[k][id] = true
	}
	c.attribute(id, t)
}

// attribute moves an item's purchased units to the cell the rule picks now.
func (c *cart) attribute(id int64, t touched) {
	s := c.sales[id]
	var best *cartCell
	if k := attributable(s); k != "" {
		for _, cell := range c.cands[k] {
			if s.orderedAt.Before(cell.checkout) || s.orderedAt.After(cell.checkout.Add(PurchaseWindow)) {
				continue
			}
			if best == nil || cell.checkout.After(best.checkout) || (cell.checkout.Equal(best.checkout) && cell.session.id > best.session.id) {
				best = cell
			}
		}
	}
	cur, has := c.attr[id]
	if has && best != nil && cur.cell == best.key && cur.qty == s.quantity {
		return
	}
	if has {
		if cell := c.cells[cur.cell]; cell != nil {
			cell.purchased -= cur.qty
			t.add(cell.key, cell.grain())
		}
		delete(c.attr, id)
	}
	if best != nil {
		best.purchased += s.quantity
		c.attr[id] = attribution{cell: best.key, qty: s.quantity}
		t.add(best.key, best.grain())
	}
}

// row renders a cell with the customer and product versions valid at the
// change that rewrote it.
func (c *cart) row(key string, r stream.Record, q *quality.Quarantine) map[string]any {
	cell := c.cells[key]
	if cell == nil {
		return nil
	}
	s := cell.session
	var fails []quality.Failure
	day := dimensions.DateKey(s.first)
	vals := map[string]any{"session_id": s.id, "product_id": cell.productID, "customer_id": s.customer,
		"customer_key": resolve(c.p, "customer_key", s.customer, r, q, &fails),
		"product_key":  resolve(c.p, "product_key", cell.productID, r, q, &fails),
		"date_key":     day, "session_started_at": s.first, "checked_out_at": nil,
		"added_units": cell.added, "removed_units": cell.removed, "checked_out_units": cell.checkedOut, "purchased_units": cell.purchased}
	if !cell.checkout.IsZero() {
		vals["checked_out_at"] = cell.checkout
	}
	vals["dq_warnings"] = cell.warns.column(fails)
	return vals
}
