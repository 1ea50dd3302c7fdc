package facts

import (
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/stream"
)

// The aggregate facts (fact_inventory, fact_cart, fact_marketing) keep every
// row ("cell") as the sum of the current contributions of the source rows that
// feed it, and keep each source row's current contribution in state keyed by
// its id. A new version of a source row replaces its contribution (the old one
// is subtracted, the new one added); a version at or before the one applied
// (a capture re-delivery, fact_sales re-publishing after a restart, a replay)
// is skipped, tombstones included. Every applied source version is also a
// state record, and restoring replays those records through the same code, so
// a restore rebuilds exactly the cells an uninterrupted run holds.

// aggregate is the part of an aggregate fact that differs from the others:
// its source rows and how they make up its cells. applyAggregate,
// restoreAggregate and aggregateBase.emit run the rest for all of them.
type aggregate interface {
	base() *aggregateBase
	// setSale replaces a fact_sales item's contribution.
	setSale(id int64, s *sale, t touched)
	// truncate deletes every live source row at pos, in key order (see
	// liveKeys), and returns their state records.
	truncate(pos stream.Position, t touched) []stream.Event
	// change applies a captured change of a source row and returns its state
	// record; false when it does not apply (see admit).
	change(r stream.Record, q *quality.Quarantine, t touched) (stream.Event, bool)
	// restoreSource replays a source row's state record; false when ev is not one.
	restoreSource(ev stream.Event) bool
	// row renders a cell as it stands now, without its position columns; nil
	// when the cell is gone.
	row(key string, r stream.Record, q *quality.Quarantine) map[string]any
}

// aggregateBase is what every aggregate fact holds beside its source rows and
// cells: the fact_sales items it consumes and its cells' writes.
type aggregateBase struct {
	p         *Pipeline
	name      string // the fact's name, for errors
	saleTable string // state table of the consumed fact_sales items
	sales     map[int64]*sale
	w         *writes
}

func (b *aggregateBase) base() *aggregateBase { return b }

// schemas returns the state tables of an aggregate whose source rows are
// recorded in source.
func (b *aggregateBase) schemas(source stream.TableSchema) []stream.TableSchema {
	return []stream.TableSchema{source, saleState(b.saleTable), b.w.schema}
}

// applyAggregate processes one input change of an aggregate fact: a fact_sales
// row replaces its item's contribution, a truncate deletes every source row, a
// captured change replaces its source row's; then the touched cells are written.
func applyAggregate(a aggregate, r stream.Record, q *quality.Quarantine) ([]sinks.Row, []stream.Event) {
	b := a.base()
	ev := r.Event
	t := touched{}
	var state []stream.Event
	switch {
	case isSale(ev):
		id, s, ok := saleFrom(ev)
		if !ok || applied(b.sales, id, s.pos) {
			return nil, nil // re-published by fact_sales, or replayed
		}
		a.setSale(id, s, t)
		state = append(state, s.record(b.saleTable, id))
	case ev.Op == stream.OpTruncate:
		state = a.truncate(ev.Pos, t)
	default:
		rec, ok := a.change(r, q, t)
		if !ok {
			return nil, nil
		}
		state = append(state, rec)
	}
	rows, cells := b.emit(a, r, q, t)
	return rows, append(state, cells...)
}

// restoreAggregate replays one state record of an aggregate fact.
func restoreAggregate(a aggregate, ev stream.Event) error {
	b := a.base()
	switch ev.Table {
	case b.saleTable:
		id, s := saleFromState(ev)
		a.setSale(id, s, touched{})
	case b.w.schema.Table:
		b.w.restore(ev)
	default:
		if !a.restoreSource(ev) {
			return fmt.Errorf("%s: unknown state record %s.%s", b.name, ev.Schema, ev.Table)
		}
	}
	return nil
}

// emit writes the touched cells as they stand now, with the dimension versions
// valid at the change that rewrote them.
func (b *aggregateBase) emit(a aggregate, r stream.Record, q *quality.Quarantine, t touched) (rows []sinks.Row, state []stream.Event) {
	for _, key := range t.keys() {
		pos, rec := b.w.next(key, t[key], r.Event.Pos)
		state = append(state, rec)
		vals := a.row(key, r, q)
		if vals == nil {
			rows = append(rows, sinks.Row{Op: sinks.Delete, Values: t[key], Pos: pos})
			continue
		}
		sourcePos(vals, r.Event.Pos)
		rows = append(rows, sinks.Row{Op: sinks.Upsert, Values: vals, Pos: pos})
	}
	return rows, state
}

// sourceRow is the latest applied version of a source row (or consumed
// fact_sales item) an aggregate keeps.
type sourceRow interface {
	position() stream.Position
	isDeleted() bool
}

// applied reports whether rows holds a version of id at or after pos.
func applied[K comparable, V sourceRow](rows map[K]V, id K, pos stream.Position) bool {
	old, ok := rows[id]
	if !ok {
		return false
	}
	last := old.position()
	return stale(&last, pos)
}

// admit reports whether a captured change of source row id applies: not when
// it was already applied (a re-delivery), nor when an error rule quarantines it
// (the row's previous contribution stays). warn is the warning rules it breaks.
func admit[K comparable, V sourceRow](rows map[K]V, id K, rules []quality.Rule, r stream.Record, q *quality.Quarantine) (warn []string, ok bool) {
	if applied(rows, id, r.Event.Pos) {
		return nil, false
	}
	warn, blocked := check(rules, r, q)
	return warn, !blocked
}

// liveKeys returns the keys of the source rows not deleted, in order, so a
// truncate deletes them in the same order on every run.
func liveKeys[K cmp.Ordered, V sourceRow](rows map[K]V) []K {
	keys := make([]K, 0, len(rows))
	for k, v := range rows {
		if !v.isDeleted() {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// attributed reports whether an order status lets its items count as sold,
// purchased or attributed: a cancelled or returned order does not (the money
// went back), so when an order becomes so its items are withdrawn.
func attributed(status string) bool { return status != "cancelled" && status != "returned" }

// sale is a fact_sales row as the aggregates consume it, from fact.sales.
type sale struct {
	orderID    int64
	customerID any // int64, or nil
	productID  any // int64, or nil
	campaignID any // int64, or nil
	quantity   int64
	net        *big.Rat
	status     string
	orderedAt  time.Time
	pos        stream.Position
	deleted    bool
}

func (s *sale) position() stream.Position { return s.pos }
func (s *sale) isDeleted() bool           { return s.deleted }

// counts reports whether the sale contributes to aggregates at all.
func (s *sale) counts() bool {
	return s != nil && !s.deleted && attributed(s.status) && !s.orderedAt.IsZero()
}

// isSale reports whether an input record is a fact_sales row: fact topics carry
// the "fact" namespace (Spec.RecordSchema), captured tables the source schema.
func isSale(ev stream.Event) bool { return ev.Schema == "fact" && ev.Table == Sales.Short() }

// saleFrom reads a fact.sales record; deletes carry only the key.
func saleFrom(ev stream.Event) (int64, *sale, bool) {
	id, ok := asInt(ev.Key["order_item_id"])
	if !ok {
		return 0, nil, false
	}
	s := &sale{pos: ev.Pos, deleted: ev.Op == stream.OpDelete}
	if s.deleted || ev.After == nil {
		s.deleted = true
		return id, s, true
	}
	row := ev.After
	s.orderID, _ = asInt(row["order_id"])
	s.customerID, s.productID, s.campaignID = intOrNil(row["customer_id"]), intOrNil(row["product_id"]), intOrNil(row["campaign_id"])
	s.quantity, _ = asInt(row["quantity"])
	s.net, _ = row["net_amount"].(*big.Rat)
	if s.net == nil {
		s.net = new(big.Rat)
	}
	s.status, _ = row["order_status"].(string)
	s.orderedAt, _ = row["ordered_at"].(time.Time)
	return id, s, true
}

func intOrNil(v any) any {
	if n, ok := asInt(v); ok {
		return n
	}
	return nil
}

// saleState is the state record of a consumed fact_sales row.
func saleState(table string) stream.TableSchema {
	return stream.TableSchema{Schema: "state", Table: table, Columns: []stream.Column{
		{Name: "order_item_id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
		{Name: "order_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "customer_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "product_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "campaign_id", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "quantity", Type: stream.Type{Kind: stream.KindInt}, Nullable: true},
		{Name: "net_amount", Type: stream.Type{Kind: stream.KindDecimal, Precision: 38, Scale: 9}, Nullable: true},
		{Name: "order_status", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
		{Name: "ordered_at", Type: stream.Type{Kind: stream.KindTimestamp}, Nullable: true},
		{Name: "deleted", Type: stream.Type{Kind: stream.KindBool}},
	}}
}

func (s *sale) record(table string, id int64) stream.Event {
	after := map[string]any{"order_item_id": id, "order_id": s.orderID, "customer_id": s.customerID, "product_id": s.productID,
		"campaign_id": s.campaignID, "quantity": s.quantity, "net_amount": ratOrNil(s.net), "order_status": s.status,
		"ordered_at": nil, "deleted": s.deleted}
	if !s.orderedAt.IsZero() {
		after["ordered_at"] = s.orderedAt
	}
	return stream.Event{Schema: "state", Table: table, Op: stream.OpUpdate, Key: map[string]any{"order_item_id": id}, After: after, Pos: s.pos}
}

func saleFromState(ev stream.Event) (int64, *sale) {
	id, _ := asInt(ev.After["order_item_id"])
	s := &sale{pos: ev.Pos}
	s.deleted, _ = ev.After["deleted"].(bool)
	s.orderID, _ = asInt(ev.After["order_id"])
	s.customerID, s.productID, s.campaignID = intOrNil(ev.After["customer_id"]), intOrNil(ev.After["product_id"]), intOrNil(ev.After["campaign_id"])
	s.quantity, _ = asInt(ev.After["quantity"])
	s.net, _ = ev.After["net_amount"].(*big.Rat)
	if s.net == nil {
		s.net = new(big.Rat)
	}
	s.status, _ = ev.After["order_status"].(string)
	s.orderedAt, _ = ev.After["ordered_at"].(time.Time)
	return id, s
}

// stale reports whether a change at pos was already applied to a source row
// last changed at last (nil: never seen).
func stale(last *stream.Position, pos stream.Position) bool { return last != nil && !last.Less(pos) }

// writeSeqBits is how far a cell's write position shifts the input's sequence
// to make room for repeated writes from one input position (see writes.next).
const writeSeqBits = 20

// writes remembers the sink position each cell was last written at and is the
// cells' state record. Several input records can share a position (fact_sales
// re-publishes all items of an order at the order's update) and a release can
// be split into several batches between them; the sink ignores a write at a
// position equal to the stored one, so a cell written again from the same input
// position takes the next sequence number instead.
type writes struct {
	schema stream.TableSchema
	grain  []string
	last   map[string]sinks.Position
}

func newWrites(table string, grain []stream.Column) *writes {
	cols := append([]stream.Column{}, grain...)
	cols = append(cols,
		stream.Column{Name: "write_lsn", Type: stream.Type{Kind: stream.KindInt}},
		stream.Column{Name: "write_seq", Type: stream.Type{Kind: stream.KindInt}})
	w := &writes{schema: stream.TableSchema{Schema: "state", Table: table, Columns: cols}, last: map[string]sinks.Position{}}
	for _, c := range grain {
		w.grain = append(w.grain, c.Name)
	}
	return w
}

func (w *writes) reset() { w.last = map[string]sinks.Position{} }

// next returns the position of a cell's write caused by a change at at, and
// the state record of that write.
func (w *writes) next(key string, grain map[string]any, at stream.Position) (sinks.Position, stream.Event) {
	p := sinks.Position{LSN: uint64(at.LSN), Seq: at.Seq << writeSeqBits}
	if last, ok := w.last[key]; ok && !last.Less(p) {
		p = sinks.Position{LSN: last.LSN, Seq: last.Seq + 1}
	}
	w.last[key] = p
	after := map[string]any{"write_lsn": int64(p.LSN), "write_seq": int64(p.Seq)}
	k := map[string]any{}
	for _, g := range w.grain {
		after[g], k[g] = grain[g], grain[g]
	}
	return p, stream.Event{Schema: "state", Table: w.schema.Table, Op: stream.OpUpdate, Key: k, After: after, Pos: at}
}

func (w *writes) restore(ev stream.Event) {
	vals := make([]any, len(w.grain))
	for i, g := range w.grain {
		vals[i] = ev.After[g]
	}
	lsn, _ := asInt(ev.After["write_lsn"])
	seq, _ := asInt(ev.After["write_seq"])
	w.last[dimensions.NaturalKey(vals...)] = sinks.Position{LSN: uint64(lsn), Seq: uint64(seq)}
}

// touched collects the cells one input change rewrote, with their grain values
// (a cell left without contributions is gone from the transform's map by the
// time it is written, as a delete).
type touched map[string]map[string]any

func (t touched) add(key string, grain map[string]any) { t[key] = grain }

// keys returns the touched cells in a stable order, so outputs do not depend
// on map iteration.
func (t touched) keys() []string {
	out := make([]string, 0, len(t))
	for k := range t {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// flags counts the data-quality warnings of the source rows contributing to a
// cell, by rule, so that replacing a contribution also replaces its flags.
type flags map[string]int

func (f flags) add(rules []string, n int) {
	for _, r := range rules {
		if f[r] += n; f[r] == 0 {
			delete(f, r)
		}
	}
}

// column renders the cell's dq_warnings: its contributors' rules and the
// referential failures of its own lookups, sorted; nil when clean.
func (f flags) column(lookups []quality.Failure) any {
	set := map[string]bool{}
	for r := range f {
		set[r] = true
	}
	for _, l := range lookups {
		set[l.Rule] = true
	}
	if len(set) == 0 {
		return nil
	}
	names := make([]string, 0, len(set))
	for r := range set {
		names = append(names, r)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// warnings returns the rules of the warning failures (the row still loads).
func warnings(fs []quality.Failure) []string {
	var out []string
	for _, f := range fs {
		if f.Severity == quality.Warn {
			out = append(out, f.Rule)
		}
	}
	return out
}

func splitWarnings(v any) []string {
	s, _ := v.(string)
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joinWarnings(rules []string) any {
	if len(rules) == 0 {
		return nil
	}
	return strings.Join(rules, ",")
}

// check evaluates the spec's rules on a captured change: failures are
// quarantined; blocked is true when an error keeps the change out (the source
// row's previous contribution stays).
func check(rules []quality.Rule, r stream.Record, q *quality.Quarantine) (warn []string, blocked bool) {
	ev := r.Event
	if ev.Op != stream.OpSnapshot && ev.Op != stream.OpInsert && ev.Op != stream.OpUpdate {
		return nil, false
	}
	failures := quality.Evaluate(rules, ev.Table, ev.After, ev.Unchanged, ev.CommitTime)
	for _, f := range failures {
		q.Add(r, f)
	}
	return warnings(failures), quality.Blocking(failures)
}

// resolve looks up a cell's reference at the position of the change that
// rewrites it; a missing version is the unknown member, quarantined against
// that change. A nil natural key (an anonymous visitor) is no reference: nil.
func resolve(p *Pipeline, column string, natural any, r stream.Record, q *quality.Quarantine, fails *[]quality.Failure) any {
	if natural == nil {
		return nil
	}
	for _, l := range p.spec.Lookups {
		if l.Column != column {
			continue
		}
		key, _, fail := p.lookup(l, natural, r.Event.Pos)
		if fail != nil {
			*fails = append(*fails, *fail)
			q.Add(r, *fail)
		}
		return key
	}
	return nil
}

// position columns of a fact row: the input change that last rewrote it.
func sourcePos(vals map[string]any, at stream.Position) {
	vals["source_lsn"], vals["source_seq"] = int64(at.LSN), int64(at.Seq)
}

// dateOfKey is the day a dim_date key names, as a DATE value.
func dateOfKey(key int64) time.Time {
	return time.Date(int(key/10000), time.Month(key/100%100), int(key%100), 0, 0, 0, 0, time.UTC)
}

// roundRat rounds r to scale decimals, half away from zero (as NUMERIC does).
func roundRat(r *big.Rat, scale int) *big.Rat {
	f := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	n := new(big.Int).Mul(r.Num(), f)
	n.Mul(n, big.NewInt(2))
	d := new(big.Int).Mul(r.Denom(), big.NewInt(2))
	// (2·num·f ± denom) / (2·denom), truncated toward zero.
	if n.Sign() >= 0 {
		n.Add(n, r.Denom())
	} else {
		n.Sub(n, r.Denom())
	}
	n.Quo(n, d)
	return new(big.Rat).SetFrac(n, f)
}
