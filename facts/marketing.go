package facts

import (
	"fmt"
	"math/big"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// marketing is fact_marketing's logic. A campaign event contributes to the
// cell of its campaign and the UTC day it occurred: one impression or click,
// or its cost when it is a spend event (the cost on impressions and clicks is
// what the spend events bill, so it is not counted twice). A fact_sales item
// with a campaign contributes to the cell of that campaign and its order's
// day, while its order counts (see attributed): its net amount to the revenue
// and its order to the distinct attributed orders. ROAS is revenue / spend,
// NULL without spend.
type marketing struct {
	aggregateBase
	events map[int64]*campaignEvent
	cells  map[string]*campaignDay
}

type campaignEvent struct {
	campaignID int64
	day        int64
	typ        string
	cost       *big.Rat
	warn       []string
	pos        stream.Position
	deleted    bool
}

type campaignDay struct {
	campaignID, day     int64
	impressions, clicks int64
	spend, revenue      *big.Rat
	orders              map[int64]int // attributed order → its contributing items
	n                   int           // contributing source rows
	warns               flags
}

const (
	marketingEventTable = "fact_marketing_event"
	marketingSaleTable  = "fact_marketing_sale"
)

var marketingEventState = stream.TableSchema{Schema: "state", Table: marketingEventTable, Columns: []stream.Column{
	{Name: "campaign_event_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	{Name: "campaign_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
	{Name: "date_key", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
	{Name: "event_type", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "cost", Type: stream.Type{Kind: stream.KindDecimal, Precision: 38, Scale: 9}, Nullable: true},
	{Name: "warnings", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
}}

func newMarketing(p *Pipeline) *marketing {
	m := &marketing{aggregateBase: aggregateBase{p: p, name: Marketing.Name, saleTable: marketingSaleTable, w: newWrites("fact_marketing_cell", []stream.Column{
		{Name: "campaign_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
		{Name: "date_key", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	})}}
	m.reset()
	return m
}

func (m *marketing) reset() {
	m.events, m.sales, m.cells = map[int64]*campaignEvent{}, map[int64]*sale{}, map[string]*campaignDay{}
	m.w.reset()
}

func (m *marketing) stateSchemas() []stream.TableSchema { return m.schemas(marketingEventState) }

func (m *marketing) restore(ev stream.Event) error { return restoreAggregate(m, ev) }

func (m *marketing) restoreSource(ev stream.Event) bool {
	if ev.Table != marketingEventTable {
		return false
	}
	id, _ := asInt(ev.After["campaign_event_id"])
	e := &campaignEvent{typ: str(ev.After["event_type"]), cost: ratOr0(ev.After["cost"]), warn: splitWarnings(ev.After["warnings"]), pos: ev.Pos}
	e.campaignID, _ = asInt(ev.After["campaign_id"])
	e.day, _ = asInt(ev.After["date_key"])
	e.deleted, _ = ev.After["deleted"].(bool)
	m.setEvent(id, e, touched{})
	return true
}

func (e *campaignEvent) position() stream.Position { return e.pos }
func (e *campaignEvent) isDeleted() bool           { return e.deleted }

func (e *campaignEvent) record(id int64) stream.Event {
	return stream.Event{Schema: "state", Table: marketingEventTable, Op: stream.OpUpdate, Key: map[string]any{"campaign_event_id": id},
		After: map[string]any{"campaign_event_id": id, "campaign_id": e.campaignID, "date_key": e.day, "event_type": e.typ,
			"cost": ratOrNil(e.cost), "warnings": joinWarnings(e.warn), "deleted": e.deleted}, Pos: e.pos}
}

func (m *marketing) apply(r stream.Record, q *quality.Quarantine) ([]sinks.Row, []stream.Event) {
	return applyAggregate(m, r, q)
}

func (m *marketing) truncate(pos stream.Position, t touched) (state []stream.Event) {
	for _, id := range liveKeys(m.events) {
		e := &campaignEvent{pos: pos, deleted: true}
		m.setEvent(id, e, t)
		state = append(state, e.record(id))
	}
	return state
}

func (m *marketing) change(r stream.Record, q *quality.Quarantine, t touched) (stream.Event, bool) {
	ev := r.Event
	id, ok := asInt(ev.Key["campaign_event_id"])
	if !ok {
		return stream.Event{}, false
	}
	warn, ok := admit(m.events, id, m.p.spec.Rules, r, q)
	if !ok {
		return stream.Event{}, false // already applied, or quarantined: the previous contribution stays
	}
	e := &campaignEvent{pos: ev.Pos, deleted: ev.Op == stream.OpDelete}
	if !e.deleted {
		row := ev.After
		e.campaignID, _ = asInt(row["campaign_id"])
		at, _ := row["occurred_at"].(time.Time)
		e.day = dimensions.DateKey(at)
		e.typ, e.cost, e.warn = str(row["event_type"]), ratOr0(row["cost"]), warn
	}
	m.setEvent(id, e, t)
	return e.record(id), true
}

// setEvent replaces a campaign event's contribution.
func (m *marketing) setEvent(id int64, e *campaignEvent, t touched) {
	if old := m.events[id]; old != nil && !old.deleted {
		m.addEvent(old, -1, t)
	}
	m.events[id] = e
	if !e.deleted {
		m.addEvent(e, 1, t)
	}
}

func (m *marketing) addEvent(e *campaignEvent, sign int, t touched) {
	c := m.cell(e.campaignID, e.day, t)
	switch e.typ {
	case "impression":
		c.impressions += int64(sign)
	case "click":
		c.clicks += int64(sign)
	case "spend":
		c.spend.Add(c.spend, signed(e.cost, sign))
	}
	c.warns.add(e.warn, sign)
	m.settle(c, sign)
}

// setSale replaces a fact_sales item's contribution.
func (m *marketing) setSale(id int64, s *sale, t touched) {
	if old := m.sales[id]; old.counts() && old.campaignID != nil {
		m.addSale(old, -1, t)
	}
	m.sales[id] = s
	if s.counts() && s.campaignID != nil {
		m.addSale(s, 1, t)
	}
}

func (m *marketing) addSale(s *sale, sign int, t touched) {
	day := dimensions.DateKey(s.orderedAt)
	c := m.cell(s.campaignID.(int64), day, t)
	c.revenue.Add(c.revenue, signed(s.net, sign))
	if c.orders[s.orderID] += sign; c.orders[s.orderID] == 0 {
		delete(c.orders, s.orderID)
	}
	m.settle(c, sign)
}

func (m *marketing) cell(campaign, day int64, t touched) *campaignDay {
	key := dimensions.NaturalKey(campaign, day)
	t.add(key, map[string]any{"campaign_id": campaign, "date_key": day})
	c := m.cells[key]
	if c == nil {
		c = &campaignDay{campaignID: campaign, day: day, spend: new(big.Rat), revenue: new(big.Rat), orders: map[int64]int{}, warns: flags{}}
		m.cells[key] = c
	}
	return c
}

// settle counts a contribution in or out; a cell without any is deleted.
func (m *marketing) settle(c *campaignDay, sign int) {
	if c.n += sign; c.n == 0 {
		delete(m.cells, dimensions.NaturalKey(c.campaignID, c.day))
	}
}

// row renders a cell with the campaign version valid at the change that
// rewrote it.
func (m *marketing) row(key string, r stream.Record, q *quality.Quarantine) map[string]any {
	c := m.cells[key]
	if c == nil {
		return nil
	}
	var fails []quality.Failure
	vals := map[string]any{"campaign_id": c.campaignID, "date_key": c.day, "activity_date": dateOfKey(c.day),
		"campaign_key": resolve(m.p, "campaign_key", c.campaignID, r, q, &fails),
		"impressions":  c.impressions, "clicks": c.clicks, "spend": new(big.Rat).Set(c.spend),
		"attributed_orders": int64(len(c.orders)), "attributed_revenue": new(big.Rat).Set(c.revenue), "roas": nil}
	if c.spend.Sign() > 0 {
		vals["roas"] = roundRat(new(big.Rat).Quo(c.revenue, c.spend), 9)
	}
	vals["dq_warnings"] = c.warns.column(fails)
	return vals
}

func signed(r *big.Rat, sign int) *big.Rat {
	if sign < 0 {
		return new(big.Rat).Neg(r)
	}
	return r
}

func ratOr0(v any) *big.Rat {
	if r, ok := v.(*big.Rat); ok && r != nil {
		return r
	}
	return new(big.Rat)
}

// ratOrNil keeps a missing number an untyped nil, which encoders read as NULL.
func ratOrNil(r *big.Rat) any {
	if r == nil {
		return nil
	}
	return r
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}
