package facts

import (
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// inventory is fact_inventory's logic. Each change of an inventory row lands
// in the cell of its product, warehouse and UTC commit day: the cell takes the
// row's on_hand and reserved (so the day's latest change is the end-of-day
// level) and the change's on_hand delta, an increase counted as received, a
// decrease as shipped. Snapshot rows set the level without a movement (their
// history is unknown); an insert moves from 0 (stock arriving at a new
// location); a delete sets the level to 0 without a movement, and a truncate
// forgets the levels without touching any day. Sold units come from fact_sales
// at product level — an order item does not say which warehouse serves it — on
// the product's row for warehouse AllWarehouses and the order's day, while the
// order counts (see attributed).
type inventory struct {
	aggregateBase
	stock map[string]*stockLevel // by product and warehouse
	cells map[string]*stockDay
}

type stockLevel struct {
	productID int64
	warehouse string
	onHand    int64
	pos       stream.Position
	deleted   bool
}

// stockChange is one applied change of an inventory row, and its state record.
type stockChange struct {
	productID        int64
	warehouse        string
	onHand, reserved int64
	day              int64 // 0: touches no day (truncate)
	movement         bool  // its on_hand delta counts as received or shipped
	deleted          bool
	warn             []string
	pos              stream.Position
}

type stockDay struct {
	productID               int64
	warehouse               string
	day                     int64
	onHand, reserved        any // int64; nil on the AllWarehouses row
	received, shipped, sold int64
	sales                   int // contributing fact_sales items (AllWarehouses row)
	warns                   flags
}

const (
	inventoryStockTable = "fact_inventory_stock"
	inventorySaleTable  = "fact_inventory_sale"
)

var inventoryStockState = stream.TableSchema{Schema: "state", Table: inventoryStockTable, Columns: []stream.Column{
	{Name: "product_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	{Name: "warehouse_code", Type: stream.Type{Kind: stream.KindString}, Key: true},
	{Name: "on_hand", Type: stream.Type{Kind: stream.KindInt}},
	{Name: "reserved", Type: stream.Type{Kind: stream.KindInt}},
	{Name: "date_key", Type: stream.Type{Kind: stream.KindInt}},
	{Name: "movement", Type: stream.Type{Kind: stream.KindBool}},
	{Name: "warnings", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
}}

func newInventory(p *Pipeline) *inventory {
	i := &inventory{aggregateBase: aggregateBase{p: p, name: Inventory.Name, saleTable: inventorySaleTable, w: newWrites("fact_inventory_cell", []stream.Column{
		{Name: "product_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
		{Name: "warehouse_code", Type: stream.Type{Kind: stream.KindString}, Key: true},
		{Name: "date_key", Type: stream.Type{Kind: stream.KindInt}, Key: true},
	})}}
	i.reset()
	return i
}

func (i *inventory) reset() {
	i.stock, i.sales, i.cells = map[string]*stockLevel{}, map[int64]*sale{}, map[string]*stockDay{}
	i.w.reset()
}

func (i *inventory) stateSchemas() []stream.TableSchema { return i.schemas(inventoryStockState) }

func (i *inventory) restore(ev stream.Event) error { return restoreAggregate(i, ev) }

func (i *inventory) restoreSource(ev stream.Event) bool {
	if ev.Table != inventoryStockTable {
		return false
	}
	c := stockChange{warehouse: str(ev.After["warehouse_code"]), warn: splitWarnings(ev.After["warnings"]), pos: ev.Pos}
	c.productID, _ = asInt(ev.After["product_id"])
	c.onHand, _ = asInt(ev.After["on_hand"])
	c.reserved, _ = asInt(ev.After["reserved"])
	c.day, _ = asInt(ev.After["date_key"])
	c.movement, _ = ev.After["movement"].(bool)
	c.deleted, _ = ev.After["deleted"].(bool)
	i.applyStock(c, touched{})
	return true
}

func (l *stockLevel) position() stream.Position { return l.pos }
func (l *stockLevel) isDeleted() bool           { return l.deleted }

func (c stockChange) record() stream.Event {
	key := map[string]any{"product_id": c.productID, "warehouse_code": c.warehouse}
	return stream.Event{Schema: "state", Table: inventoryStockTable, Op: stream.OpUpdate, Key: key,
		After: map[string]any{"product_id": c.productID, "warehouse_code": c.warehouse, "on_hand": c.onHand, "reserved": c.reserved,
			"date_key": c.day, "movement": c.movement, "warnings": joinWarnings(c.warn), "deleted": c.deleted}, Pos: c.pos}
}

func (i *inventory) apply(r stream.Record, q *quality.Quarantine) ([]sinks.Row, []stream.Event) {
	return applyAggregate(i, r, q)
}

func (i *inventory) truncate(pos stream.Position, t touched) (state []stream.Event) {
	for _, k := range liveKeys(i.stock) {
		l := i.stock[k]
		c := stockChange{productID: l.productID, warehouse: l.warehouse, deleted: true, pos: pos}
		i.applyStock(c, t)
		state = append(state, c.record())
	}
	return state
}

func (i *inventory) change(r stream.Record, q *quality.Quarantine, t touched) (stream.Event, bool) {
	ev := r.Event
	row := ev.Row()
	c := stockChange{warehouse: str(row["warehouse_code"]), pos: ev.Pos}
	var ok bool
	if c.productID, ok = asInt(row["product_id"]); !ok {
		return stream.Event{}, false
	}
	warn, ok := admit(i.stock, stockKey(c.productID, c.warehouse), i.p.spec.Rules, r, q)
	if !ok {
		return stream.Event{}, false // already applied, or quarantined: the previous level stays
	}
	c.day = dimensions.DateKey(ev.CommitTime)
	if ev.Op == stream.OpDelete {
		c.deleted = true
	} else {
		c.onHand, _ = asInt(row["on_hand"])
		c.reserved, _ = asInt(row["reserved"])
		c.movement, c.warn = ev.Op != stream.OpSnapshot, warn
	}
	i.applyStock(c, t)
	return c.record(), true
}

func stockKey(product int64, warehouse string) string {
	return dimensions.NaturalKey(product, warehouse)
}

// applyStock applies one change of an inventory row to its day and level.
func (i *inventory) applyStock(c stockChange, t touched) {
	key := stockKey(c.productID, c.warehouse)
	prev := i.stock[key]
	if c.day != 0 {
		d := i.cell(c.productID, c.warehouse, c.day, t)
		if c.movement {
			var before int64
			if prev != nil && !prev.deleted {
				before = prev.onHand
			}
			if delta := c.onHand - before; delta > 0 {
				d.received += delta
			} else {
				d.shipped -= delta
			}
		}
		d.onHand, d.reserved = c.onHand, c.reserved
		d.warns.add(c.warn, 1)
	}
	i.stock[key] = &stockLevel{productID: c.productID, warehouse: c.warehouse, onHand: c.onHand, pos: c.pos, deleted: c.deleted}
}

// setSale replaces a fact_sales item's contribution to sold_units.
func (i *inventory) setSale(id int64, s *sale, t touched) {
	if old := i.sales[id]; old.counts() && old.productID != nil {
		i.addSale(old, -1, t)
	}
	i.sales[id] = s
	if s.counts() && s.productID != nil {
		i.addSale(s, 1, t)
	}
}

func (i *inventory) addSale(s *sale, sign int, t touched) {
	day := dimensions.DateKey(s.orderedAt)
	d := i.cell(s.productID.(int64), AllWarehouses, day, t)
	d.sold += int64(sign) * s.quantity
	if d.sales += sign; d.sales == 0 {
		delete(i.cells, dimensions.NaturalKey(d.productID, d.warehouse, d.day))
	}
}

func (i *inventory) cell(product int64, warehouse string, day int64, t touched) *stockDay {
	key := dimensions.NaturalKey(product, warehouse, day)
	t.add(key, map[string]any{"product_id": product, "warehouse_code": warehouse, "date_key": day})
	d := i.cells[key]
	if d == nil {
		d = &stockDay{productID: product, warehouse: warehouse, day: day, warns: flags{}}
		i.cells[key] = d
	}
	return d
}

// row renders a cell with the product version valid at the change that
// rewrote it.
func (i *inventory) row(key string, r stream.Record, q *quality.Quarantine) map[string]any {
	d := i.cells[key]
	if d == nil {
		return nil
	}
	var fails []quality.Failure
	vals := map[string]any{"product_id": d.productID, "warehouse_code": d.warehouse, "date_key": d.day,
		"inventory_date": dateOfKey(d.day), "product_key": resolve(i.p, "product_key", d.productID, r, q, &fails),
		"on_hand": d.onHand, "reserved": d.reserved,
		"received_units": d.received, "shipped_units": d.shipped, "sold_units": d.sold}
	vals["dq_warnings"] = d.warns.column(fails)
	return vals
}
