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
	// factCol indexes the fact row's columns (spec.Columns) in line.fact.
	factCol map[string]int
}

type order struct {
	customerID any
	campaignID any
	status     any
	orderedAt  any
	pos        stream.Position
}

// line is one order item. It lives as long as the item (a status change of
// its order rewrites its fact row), so every fact_sales row is held once in
// memory: slices in column order, not maps, which cost several times as much.
type line struct {
	src  []any // the source order_items columns fact_sales reads, in srcColumns order
	fact []any // the fact row in spec.Columns order, nil while parked; amounts unset
	// unitCost is the product version's unit cost (nil when unknown): with the
	// quantity, price and discount it gives the amounts, computed as a row is
	// emitted rather than held as four more numbers per line.
	unitCost *big.Rat
	created  stream.Position
	pos      stream.Position
}

// srcColumns are the order_items columns a line keeps: what the fact row is
// computed from (the lookups' natural keys among them), also in its state record.
var srcColumns = []string{"order_id", "product_id", "seller_id", "quantity", "unit_price", "discount"}

func srcIndex(c string) int {
	for i, name := range srcColumns {
		if name == c {
			return i
		}
	}
	return -1
}

// srcOf picks a line's source columns from an order_items row.
func srcOf(row map[string]any, prefix string) []any {
	src := make([]any, len(srcColumns))
	for i, c := range srcColumns {
		src[i] = row[prefix+c]
	}
	return src
}

func (l *line) source(c string) any {
	if i := srcIndex(c); i >= 0 {
		return l.src[i]
	}
	return nil
}

func (l *line) orderID() int64 {
	oid, _ := asInt(l.src[0])
	return oid
}

func newSales(p *Pipeline) *sales {
	s := &sales{p: p, factCol: map[string]int{}}
	for i, c := range p.spec.Columns {
		s.factCol[c.Name] = i
	}
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
	after := s.values(l, len(srcColumns)+4)
	after["order_item_id"] = id
	for i, c := range srcColumns {
		after["src_"+c] = l.src[i]
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
		l := &line{src: srcOf(ev.After, "src_"), pos: ev.Pos}
		lsn, _ := asInt(ev.After["created_lsn"])
		seq, _ := asInt(ev.After["created_seq"])
		l.created = stream.Position{LSN: stream.LSN(lsn), Seq: uint64(seq)}
		if parked, _ := ev.After["parked"].(bool); !parked {
			l.fact = make([]any, len(s.p.spec.Columns))
			for i, c := range s.p.spec.Columns {
				if !amountColumns[c.Name] {
					l.fact[i] = ev.After[c.Name]
				}
			}
			// cost_amount is quantity × unit cost; nil when the product was unknown.
			if cost, ok := ev.After["cost_amount"].(*big.Rat); ok {
				l.unitCost = new(big.Rat)
				if qty, _ := asInt(ev.After["quantity"]); qty != 0 {
					l.unitCost.Quo(cost, new(big.Rat).SetInt64(qty))
				}
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
	oid := l.orderID()
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
	oid := l.orderID()
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
		i, ok := s.factCol["order_status"]
		if !ok || l.fact[i] == o.status {
			continue
		}
		l.fact[i] = o.status
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
	l := &line{src: srcOf(ev.After, ""), created: ev.Pos, pos: ev.Pos}
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
	if o := s.orders[l.orderID()]; o != nil {
		s.compute(id, l, o)
		rows = append(rows, s.row(l))
	}
	s.addLine(id, l)
	return rows, []stream.Event{s.lineRecord(id, l, false)}
}

// compute fills the fact row of a line from its order and the dimension versions
// valid at the line's creation.
func (s *sales) compute(id int64, l *line, o *order) {
	f := make([]any, len(s.p.spec.Columns))
	set := func(c string, v any) {
		if i, ok := s.factCol[c]; ok {
			f[i] = v
		}
	}
	set("order_item_id", id)
	set("order_id", l.source("order_id"))
	set("order_status", o.status)
	set("ordered_at", o.orderedAt)
	set("source_lsn", int64(l.created.LSN))
	set("source_seq", int64(l.created.Seq))
	set("customer_id", o.customerID)
	set("product_id", l.source("product_id"))
	set("campaign_id", o.campaignID)
	if t, ok := o.orderedAt.(time.Time); ok {
		set("date_key", dimensions.DateKey(t))
	}
	var unitCost *big.Rat
	var warnings []quality.Failure
	for _, lk := range s.p.spec.Lookups {
		natural := l.source(lk.From)
		switch lk.From {
		case "customer_id":
			natural = o.customerID
		case "campaign_id":
			natural = o.campaignID
			if natural == nil {
				continue // no campaign: NULL, not an unknown one
			}
		}
		key, attrs, fail := s.p.lookup(lk, natural, l.created)
		set(lk.Column, key)
		if fail != nil {
			warnings = append(warnings, *fail)
			s.q.Add(stream.Record{Event: stream.Event{Table: "order_items", Key: map[string]any{"order_item_id": id},
				After: s.sourceRow(id, l), Pos: l.created}}, *fail)
		}
		if lk.Column == "product_key" && attrs != nil {
			unitCost, _ = attrs["unit_cost"].(*big.Rat)
		}
	}
	set("dq_warnings", quality.Flags(warnings))
	qty, _ := asInt(l.source("quantity"))
	price, _ := l.source("unit_price").(*big.Rat)
	discount, _ := l.source("discount").(*big.Rat)
	if price == nil {
		price = new(big.Rat)
	}
	if discount == nil {
		discount = new(big.Rat)
	}
	set("quantity", qty)
	set("unit_price", price)
	set("discount", discount)
	l.fact, l.unitCost = f, unitCost
}

// amountColumns are the fact row's columns derived from the others (values).
var amountColumns = map[string]bool{"gross_amount": true, "net_amount": true, "cost_amount": true, "margin": true}

// values is a line's fact row with its amounts (all nil while parked), sized
// for extra more columns.
func (s *sales) values(l *line, extra int) map[string]any {
	vals := make(map[string]any, len(s.p.spec.Columns)+extra)
	for i, c := range s.p.spec.Columns {
		vals[c.Name] = nil
		if l.fact != nil {
			vals[c.Name] = l.fact[i]
		}
	}
	if l.fact == nil {
		return vals
	}
	qty, _ := asInt(vals["quantity"])
	price, _ := vals["unit_price"].(*big.Rat)
	discount, _ := vals["discount"].(*big.Rat)
	if price == nil {
		price = new(big.Rat)
	}
	if discount == nil {
		discount = new(big.Rat)
	}
	q := new(big.Rat).SetInt64(qty)
	gross := new(big.Rat).Mul(q, price)
	net := new(big.Rat).Sub(gross, discount)
	put := func(c string, v any) {
		if _, ok := s.factCol[c]; ok {
			vals[c] = v
		}
	}
	put("gross_amount", gross)
	put("net_amount", net)
	if l.unitCost != nil {
		cost := new(big.Rat).Mul(q, l.unitCost)
		put("cost_amount", cost)
		put("margin", new(big.Rat).Sub(net, cost))
	}
	return vals
}

// sourceRow is a line's source row, for a quarantine record.
func (s *sales) sourceRow(id int64, l *line) map[string]any {
	row := map[string]any{"order_item_id": id}
	for i, c := range srcColumns {
		row[c] = l.src[i]
	}
	return row
}

func (s *sales) row(l *line) sinks.Row {
	return sinks.Row{Op: sinks.Upsert, Values: s.values(l, 0), Pos: sinks.Position{LSN: uint64(l.pos.LSN), Seq: l.pos.Seq}}
}

func (s *sales) deleteRow(id int64, pos stream.Position) sinks.Row {
	return sinks.Row{Op: sinks.Delete, Values: map[string]any{"order_item_id": id}, Pos: sinks.Position{LSN: uint64(pos.LSN), Seq: pos.Seq}}
}
