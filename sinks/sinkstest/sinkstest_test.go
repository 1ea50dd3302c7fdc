package sinkstest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
)

// memSink is a minimal in-memory reference sink: it checks the suite itself
// against an implementation simple enough to be obviously right.
type memSink struct {
	mu     sync.Mutex
	tables map[string]*memTable
	fail   int
}

type memTable struct {
	def  sinks.Table
	rows map[string]modelRow
}

var _ sinks.Sink = (*memSink)(nil)

func (m *memSink) EnsureTable(_ context.Context, t sinks.Table) error {
	if err := t.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.tables[t.Name]; ok {
		for _, c := range t.Columns {
			if !slices.ContainsFunc(old.def.Columns, func(o sinks.Column) bool { return o.Name == c.Name }) {
				old.def.Columns = append(old.def.Columns, c)
			}
		}
		return nil
	}
	t.Columns = slices.Clone(t.Columns)
	m.tables[t.Name] = &memTable{def: t, rows: map[string]modelRow{}}
	return nil
}

func (m *memSink) Write(_ context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return nil, fmt.Errorf("injected: %w", sinks.ErrTransient)
	}
	tb, ok := m.tables[table]
	if !ok {
		return nil, fmt.Errorf("%s: %w", table, sinks.ErrUnknownTable)
	}
	cols := columns(tb.def)
	var rowErrs []sinks.RowError
	for i, r := range rows {
		if reason := memCheck(tb.def, cols, r); reason != "" {
			rowErrs = append(rowErrs, sinks.RowError{Index: i, Reason: reason})
			continue
		}
		k, _ := keyOf(tb.def, r.Values)
		if old, ok := tb.rows[k]; ok && !old.pos.Less(r.Pos) {
			continue
		}
		tb.rows[k] = modelRow{pos: r.Pos, deleted: r.Op == sinks.Delete, values: r.Values}
	}
	return rowErrs, nil
}

func memCheck(t sinks.Table, cols map[string]sinks.Column, r sinks.Row) string {
	for name, v := range r.Values {
		c, ok := cols[name]
		if !ok {
			return "unknown column " + name
		}
		if v == nil {
			continue
		}
		var typeOK bool
		switch c.Type {
		case sinks.String:
			_, typeOK = v.(string)
		case sinks.Int64:
			_, typeOK = v.(int64)
		case sinks.Float64:
			_, typeOK = v.(float64)
		case sinks.Numeric:
			_, typeOK = v.(*big.Rat)
		case sinks.Bool:
			_, typeOK = v.(bool)
		case sinks.Timestamp, sinks.Date:
			_, typeOK = v.(time.Time)
		case sinks.JSON:
			s, ok := v.(string)
			typeOK = ok && json.Valid([]byte(s))
		case sinks.Bytes:
			_, typeOK = v.([]byte)
		}
		if !typeOK {
			return fmt.Sprintf("column %s: %T is not a %s", name, v, c.Type)
		}
	}
	for _, c := range t.Columns {
		if !c.Nullable && r.Values[c.Name] == nil && (r.Op == sinks.Upsert || slices.Contains(t.PrimaryKey, c.Name)) {
			return "NULL in NOT NULL column " + c.Name
		}
	}
	return ""
}

func (m *memSink) Close() error { return nil }

func TestSuiteAgainstMemSink(t *testing.T) {
	Run(t, Harness{
		New: func(*testing.T) sinks.Sink { return &memSink{tables: map[string]*memTable{}} },
		Rows: func(t *testing.T, s sinks.Sink, table string) []map[string]any {
			m := s.(*memSink)
			m.mu.Lock()
			defer m.mu.Unlock()
			var out []map[string]any
			for _, r := range m.tables[table].rows {
				if !r.deleted {
					out = append(out, r.values)
				}
			}
			return out
		},
		FailNextWrites: func(t *testing.T, s sinks.Sink, n int) {
			m := s.(*memSink)
			m.mu.Lock()
			defer m.mu.Unlock()
			m.fail = n
		},
		MaxBatchRows: 5_000,
	})
}

func TestCanonJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ a, b string }{
		{`{"b":1,"a":[1,2]}`, `{ "a": [1, 2], "b": 1.0 }`},
		{`[1e3]`, `[1000]`},
		{`"x"`, ` "x" `},
	} {
		ca, err := canonJSON([]byte(tc.a))
		if err != nil {
			t.Fatal(err)
		}
		cb, err := canonJSON([]byte(tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if ca != cb {
			t.Errorf("canon(%s) = %s, canon(%s) = %s, want equal", tc.a, ca, tc.b, cb)
		}
	}
}

func TestAssertRowsCatchesDifferences(t *testing.T) {
	t.Parallel()
	tbl := ordersTable("o")
	want := []map[string]any{order(1, "placed", "1.5", 1)}
	for name, got := range map[string][]map[string]any{
		"value differs":     {order(1, "paid", "1.5", 1)},
		"row missing":       nil,
		"row extra":         {order(1, "placed", "1.5", 1), order(2, "placed", "1.5", 1)},
		"bookkeeping shown": {{"order_id": int64(1), "status": "placed", "amount": "1.5", "updated_at": at(1), "_deleted": false}},
		"numeric rounding":  {order(1, "placed", "1.500000001", 1)},
		"timestamp micros":  {{"order_id": int64(1), "status": "placed", "amount": "1.5", "updated_at": at(1).Add(time.Microsecond)}},
		"unnormalised type": {{"order_id": uint64(1), "status": "placed", "amount": "1.5", "updated_at": at(1)}},
	} {
		if diffRows(tbl, got, want) == nil {
			t.Errorf("%s: diffRows found no difference", name)
		}
	}
	// Equal values in other spellings pass.
	ok := []map[string]any{{"order_id": int64(1), "status": "placed", "amount": "1.500", "updated_at": at(1).In(time.FixedZone("x", 3600))}}
	assertRows(t, tbl, ok, want)
}
