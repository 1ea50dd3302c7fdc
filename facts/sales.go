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

// sales is fact_sales' logic: it joins order items to their order, resolves
// keys at the item's creation position, and follows order status changes.
type sales struct {
	p      *Pipeline
	q      *quality.Quarantine // the batch being processed
	orders map[int64]*order
	lines  map[int64]*line
	parked map[int64][]int64 // order id → items that arrived before their order
	// items indexes the resolved lines by order id. It outlives the order:
	// an order deleted or truncated and written again (capture's re-snapshot
	// after a crash truncates every table first) finds its lines here, so its
	// status changes still reach them.
	items map[int64]map[int64]bool
}

type order struct {
	customerID any
	campaignID any
	status     any
	orderedAt  any
	pos        stream.Position
}

type line struct {
	src     map[string]any // the source order_items row
	fact    map[string]any // the fact row, nil while parked
	created stream.Position
	pos     stream.Position
}

func newSales(p *Pipeline) *sales {
	s := &sales{p: p}
	s.reset()
	return s
}

func (s *sales) reset() {
	s.orders, s.lines, s.parked, s.items = map[int64]*order{}, map[int64]*line{}, map[int64][]int64{}, map[int64]map[int64]bool{}
}

// index records a resolved line under its order.
func (s *sales) index(oid, id int64) {
	if s.items[oid] == nil {
		s.items[oid] = map[int64]bool{}
	}
	s.items[oid][id] = true
}

var (
	orderState = stream.TableSchema{Schema: "state", Table: "fact_sales_order", Columns: []stream.Column{
		{Name: "order_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
		{Name: "customer_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "campaign_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "status", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
		{Name: "ordered_at", Type: stream.Type{Kind: stream.KindTimestamp}, Nullable: true},
		{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
	}}
	lineSource = []stream.Column{
		{Name: "src_order_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "src_product_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "src_seller_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "src_quantity", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "src_unit_price", Type: stream.Type{Kind: stream.KindDecimal, Precision: 38, Scale: 9}, Nullable: true},
		{Name: "src_discount", Type: stream.Type{Kind: stream.KindDecimal, Precision: 38, Scale: 9}, Nullable: true},
		{Name: "created_lsn", Type: stream.Type{Kind: stream.KindInt}},
		{Name: "created_seq", Type: stream.Type{Kind: stream.KindInt}},
		{Name: "parked", Type: stream.Type{Kind: stream.KindBool}},
		{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
	}
)

func (s *sales) lineState() stream.TableSchema {
	ts := s.p.spec.RecordSchema("state", "fact_sales_line")
	ts.Columns = append(ts.Columns, lineSource...)
	return ts
}

func (s *sales) stateSchemas() []stream.TableSchema {
	return []stream.TableSchema{orderState, s.lineState()}
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int:
		return int64(n), true
	}
	return 0, false
}

func (s *sales) orderRecord(id int64, o *order, deleted bool) stream.Event {
	after := map[string]any{"order_id": id, "customer_id": nil, "campaign_id": nil, "status": nil, "ordered_at": nil, "deleted": deleted}
	if o != nil {
		after["customer_id"], after["campaign_id"], after["status"], after["ordered_at"] = o.customerID, o.campaignID, o.status, o.orderedAt
	}
	return stream.Event{Schema: "state", Table: orderState.Table, Op: stream.OpUpdate,
		Key: map[string]any{"order_id": id}, After: after, Pos: o.posOr()}
}

func (o *order) posOr() stream.Position {
	if o == nil {
		return stream.Position{}
	}
	return o.pos
}

func (s *sales) lineRecord(id int64, l *line, deleted bool) stream.Event {
	after := map[string]any{}
	for _, c := range s.p.spec.Columns {
		after[c.Name] = nil
		if l.fact != nil {
			after[c.Name] = l.fact[c.Name]
		}
	}
	after["order_item_id"] = id
	for _, c := range []string{"order_id", "product_id", "seller_id", "quantity", "unit_price", "discount"} {
		after["src_"+c] = l.src[c]
	}
	after["created_lsn"], after["created_seq"] = int64(l.created.LSN), int64(l.created.Seq)
	after["parked"], after["deleted"] = l.fact == nil, deleted
	return stream.Event{Schema: "state", Table: "fact_sales_line", Op: stream.OpUpdate,
		Key: map[string]any{"order_item_id": id}, After: after, Pos: l.pos}
}

func (s *sales) restore(ev stream.Event) error {
	switch ev.Table {
	case orderState.Table:
		id, _ := asInt(ev.After["order_id"])
		if del, _ := ev.After["deleted"].(bool); del {
			delete(s.orders, id)
			return nil
		}
		o := s.orders[id]
		if o == nil {
			o = &order{}
			s.orders[id] = o
		}
		o.customerID, o.campaignID, o.status, o.orderedAt, o.pos = ev.After["customer_id"], ev.After["campaign_id"], ev.After["status"], ev.After["ordered_at"], ev.Pos
	case "fact_sales_line":
		id, _ := asInt(ev.After["order_item_id"])
		s.dropLine(id)
		if del, _ := ev.After["deleted"].(bool); del {
			return nil
		}
		l := &line{src: map[string]any{"order_item_id": id}, pos: ev.Pos}
		for _, c := range []string{"order_id", "product_id", "seller_id", "quantity", "unit_price", "discount"} {
			l.src[c] = ev.After["src_"+c]
		}
		lsn, _ := asInt(ev.After["created_lsn"])
		seq, _ := asInt(ev.After["created_seq"])
		l.created = stream.Position{LSN: stream.LSN(lsn), Seq: uint64(seq)}
		if parked, _ := ev.After["parked"].(bool); !parked {
			l.fact = map[string]any{}
			for _, c := range s.p.spec.Columns {
				l.fact[c.Name] = ev.After[c.Name]
			}
		}
		s.addLine(id, l)
	default:
		return fmt.Errorf("fact_sales: unknown state record %s.%s", ev.Schema, ev.Table)
	}
	return nil
}

// addLine indexes a line under its order, or parks it while the order is unknown.
func (s *sales) addLine(id int64, l *line) {
	s.lines[id] = l
	oid, _ := asInt(l.src["order_id"])
	if l.fact == nil {
		s.parked[oid] = append(s.parked[oid], id)
		return
	}
	s.index(oid, id)
}

func (s *sales) dropLine(id int64) {
	l := s.lines[id]
	if l == nil {
		return
	}
	oid, _ := asInt(l.src["order_id"])
	if ids := s.items[oid]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(s.items, oid)
		}
	}
	if ids := s.parked[oid]; len(ids) > 0 {
		keep := ids[:0]
		for _, x := range ids {
			if x != id {
				keep = append(keep, x)
			}
		}
		s.parked[oid] = keep
	}
	delete(s.lines, id)
}

func (s *sales) apply(r stream.Record, q *quality.Quarantine) ([]sinks.Row, []stream.Event) {
	s.q = q
	ev := r.Event
	if ev.Op == stream.OpSnapshot || ev.Op == stream.OpInsert || ev.Op == stream.OpUpdate {
		failures := quality.Evaluate(s.p.spec.Rules, ev.Table, ev.After, ev.Unchanged, ev.CommitTime)
		for _, f := range failures {
			q.Add(r, f)
		}
		if quality.Blocking(failures) {
			return nil, nil // quarantined: the previous state stays
		}
	}
	switch ev.Table {
	case "orders":
		return s.applyOrder(ev)
	case "order_items":
		return s.applyItem(ev)
	}
	return nil, nil
}

func (s *sales) applyOrder(ev stream.Event) (rows []sinks.Row, state []stream.Event) {
	if ev.Op == stream.OpTruncate {
		for id := range s.orders {
			state = append(state, s.orderRecord(id, &order{pos: ev.Pos}, true))
		}
		s.orders = map[int64]*order{}
		return nil, state
	}
	id, ok := asInt(ev.Key["order_id"])
	if !ok {
		return nil, nil
	}
	o := s.orders[id]
	if o != nil && !o.pos.Less(ev.Pos) {
		return nil, nil // already applied (re-delivery)
	}
	if ev.Op == stream.OpDelete {
		delete(s.orders, id)
		return nil, []stream.Event{s.orderRecord(id, &order{pos: ev.Pos}, true)}
	}
	if o == nil {
		o = &order{}
		s.orders[id] = o
	}
	o.customerID, o.campaignID, o.status, o.orderedAt, o.pos = ev.After["customer_id"], ev.After["campaign_id"], ev.After["status"], ev.After["ordered_at"], ev.Pos
	state = append(state, s.orderRecord(id, o, false))
	// Items that arrived first (snapshot order) are resolved now, at their own position.
	for _, itemID := range s.parked[id] {
		l := s.lines[itemID]
		s.compute(itemID, l, o)
		l.pos = maxPos(l.pos, ev.Pos)
		s.index(id, itemID)
		rows = append(rows, s.row(l))
		state = append(state, s.lineRecord(itemID, l, false))
	}
	delete(s.parked, id)
	// The status follows the order onto its lines: those of an order that
	// changed, and those of an order written again after a delete or truncate.
	for itemID := range s.items[id] {
		l := s.lines[itemID]
		if l.fact["order_status"] == o.status {
			continue
		}
		l.fact["order_status"] = o.status
		l.pos = maxPos(l.pos, ev.Pos)
		rows = append(rows, s.row(l))
		state = append(state, s.lineRecord(itemID, l, false))
	}
	return rows, state
}

func maxPos(a, b stream.Position) stream.Position {
	if a.Less(b) {
		return b
	}
	return a
}

func (s *sales) applyItem(ev stream.Event) (rows []sinks.Row, state []stream.Event) {
	if ev.Op == stream.OpTruncate {
		for id, l := range s.lines {
			l.pos = ev.Pos
			if l.fact != nil {
				rows = append(rows, s.deleteRow(id, ev.Pos))
			}
			state = append(state, s.lineRecord(id, l, true))
		}
		s.lines, s.parked, s.items = map[int64]*line{}, map[int64][]int64{}, map[int64]map[int64]bool{}
		return rows, state
	}
	id, ok := asInt(ev.Key["order_item_id"])
	if !ok {
		return nil, nil
	}
	old := s.lines[id]
	if old != nil && !old.pos.Less(ev.Pos) {
		return nil, nil // already applied (re-delivery)
	}
	if ev.Op == stream.OpDelete {
		if old == nil {
			return nil, nil
		}
		s.dropLine(id)
		old.pos = ev.Pos
		if old.fact != nil {
			rows = append(rows, s.deleteRow(id, ev.Pos))
		}
		return rows, []stream.Event{s.lineRecord(id, old, true)}
	}
	l := &line{src: ev.After, created: ev.Pos, pos: ev.Pos}
	if old != nil {
		// Keys stay those valid when the item was sold, and an insert is
		// when it was sold: a line known only from a snapshot row before
		// its insert was read after it (an initial snapshot finished after
		// a crash labels rows read at the restart at the consistent point),
		// and is resolved again at the insert.
		if ev.Op != stream.OpInsert {
			l.created = old.created
		}
		s.dropLine(id)
	}
	oid, _ := asInt(l.src["order_id"])
	if o := s.orders[oid]; o != nil {
		s.compute(id, l, o)
		rows = append(rows, s.row(l))
	}
	s.addLine(id, l)
	return rows, []stream.Event{s.lineRecord(id, l, false)}
}

// compute fills the fact row of a line from its order and the dimension versions
// valid at the line's creation.
func (s *sales) compute(id int64, l *line, o *order) {
	f := map[string]any{"order_item_id": id, "order_id": l.src["order_id"], "order_status": o.status, "ordered_at": o.orderedAt,
		"source_lsn": int64(l.created.LSN), "source_seq": int64(l.created.Seq), "date_key": nil,
		"customer_id": o.customerID, "product_id": l.src["product_id"], "campaign_id": o.campaignID}
	if t, ok := o.orderedAt.(time.Time); ok {
		f["date_key"] = dimensions.DateKey(t)
	}
	var unitCost *big.Rat
	var warnings []quality.Failure
	for _, lk := range s.p.spec.Lookups {
		natural := l.src[lk.From]
		switch lk.From {
		case "customer_id":
			natural = o.customerID
		case "campaign_id":
			natural = o.campaignID
			if natural == nil {
				f[lk.Column] = nil // no campaign: not an unknown one
				continue
			}
		}
		key, attrs, fail := s.p.lookup(lk, natural, l.created)
		f[lk.Column] = key
		if fail != nil {
			warnings = append(warnings, *fail)
			s.q.Add(stream.Record{Event: stream.Event{Table: "order_items", Key: map[string]any{"order_item_id": id},
				After: l.src, Pos: l.created}}, *fail)
		}
		if lk.Column == "product_key" && attrs != nil {
			unitCost, _ = attrs["unit_cost"].(*big.Rat)
		}
	}
	f["dq_warnings"] = quality.Flags(warnings)
	qty, _ := asInt(l.src["quantity"])
	price, _ := l.src["unit_price"].(*big.Rat)
	discount, _ := l.src["discount"].(*big.Rat)
	if price == nil {
		price = new(big.Rat)
	}
	if discount == nil {
		discount = new(big.Rat)
	}
	q := new(big.Rat).SetInt64(qty)
	gross := new(big.Rat).Mul(q, price)
	net := new(big.Rat).Sub(gross, discount)
	f["quantity"], f["unit_price"], f["discount"], f["gross_amount"], f["net_amount"] = qty, price, discount, gross, net
	f["cost_amount"], f["margin"] = nil, nil
	if unitCost != nil {
		cost := new(big.Rat).Mul(q, unitCost)
		f["cost_amount"], f["margin"] = cost, new(big.Rat).Sub(net, cost)
	}
	l.fact = f
}

func (s *sales) row(l *line) sinks.Row {
	vals := make(map[string]any, len(l.fact))
	for k, v := range l.fact {
		vals[k] = v
	}
	return sinks.Row{Op: sinks.Upsert, Values: vals, Pos: sinks.Position{LSN: uint64(l.pos.LSN), Seq: l.pos.Seq}}
}

func (s *sales) deleteRow(id int64, pos stream.Position) sinks.Row {
	return sinks.Row{Op: sinks.Delete, Values: map[string]any{"order_item_id": id}, Pos: sinks.Position{LSN: uint64(pos.LSN), Seq: pos.Seq}}
}
