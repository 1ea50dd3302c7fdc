package sinkstest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/sinks"
)

// model is the reference a sink is compared with: per key, the version with the
// newest position, deletes kept as tombstones.
type model struct {
	table sinks.Table
	rows  map[string]modelRow
}

type modelRow struct {
	pos     sinks.Position
	deleted bool
	values  map[string]any
}

func newModel(t sinks.Table) *model {
	return &model{table: t, rows: map[string]modelRow{}}
}

// apply applies a batch as the contract says, skipping the rows the sink refused.
func (m *model) apply(t *testing.T, rows []sinks.Row, refused ...int) {
	t.Helper()
	for i, r := range rows {
		if slices.Contains(refused, i) {
			continue
		}
		k, err := keyOf(m.table, r.Values)
		if err != nil {
			t.Fatalf("model: row %d: %v", i, err)
		}
		if old, ok := m.rows[k]; ok && r.Pos.Less(old.pos) {
			continue
		}
		m.rows[k] = modelRow{pos: r.Pos, deleted: r.Op == sinks.Delete, values: r.Values}
	}
}

// live returns the rows a reader must see.
func (m *model) live() []map[string]any {
	var out []map[string]any
	for _, r := range m.rows {
		if !r.deleted {
			out = append(out, r.values)
		}
	}
	return out
}

// keyOf renders a row's primary key canonically.
func keyOf(t sinks.Table, values map[string]any) (string, error) {
	cols := columns(t)
	parts := make([]string, len(t.PrimaryKey))
	for i, k := range t.PrimaryKey {
		s, err := canon(cols[k], values[k])
		if err != nil {
			return "", fmt.Errorf("key column %s: %w", k, err)
		}
		parts[i] = s
	}
	return strings.Join(parts, " | "), nil
}

func columns(t sinks.Table) map[string]sinks.Column {
	cols := make(map[string]sinks.Column, len(t.Columns))
	for _, c := range t.Columns {
		cols[c.Name] = c
	}
	return cols
}

// canonRows renders rows as comparable strings keyed by primary key. Columns the
// row lacks read as NULL; columns the table lacks are an error (bookkeeping
// columns must not leak to readers).
func canonRows(t sinks.Table, rows []map[string]any) (map[string]map[string]string, error) {
	cols := columns(t)
	out := make(map[string]map[string]string, len(rows))
	for _, r := range rows {
		for name := range r {
			if _, ok := cols[name]; !ok {
				return nil, fmt.Errorf("row has column %q that table %s does not define", name, t.Name)
			}
		}
		k, err := keyOf(t, r)
		if err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("key %s appears twice among the live rows", k)
		}
		cr := make(map[string]string, len(t.Columns))
		for _, c := range t.Columns {
			s, err := canon(c, r[c.Name])
			if err != nil {
				return nil, fmt.Errorf("key %s: column %s: %w", k, c.Name, err)
			}
			cr[c.Name] = s
		}
		out[k] = cr
	}
	return out, nil
}

// canon renders a value of column c as a string that is equal for equal values,
// accepting both what a Row carries and what a harness reads back.
func canon(c sinks.Column, v any) (string, error) {
	if v == nil {
		return "NULL", nil
	}
	switch c.Type {
	case sinks.String:
		if s, ok := v.(string); ok {
			return strconv.Quote(s), nil
		}
	case sinks.Int64:
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case int:
			return strconv.Itoa(n), nil
		case int32:
			return strconv.FormatInt(int64(n), 10), nil
		}
	case sinks.Float64:
		switch f := v.(type) {
		case float64:
			return strconv.FormatFloat(f, 'g', -1, 64), nil
		case float32:
			return strconv.FormatFloat(float64(f), 'g', -1, 32), nil
		}
	case sinks.Numeric:
		var r *big.Rat
		switch n := v.(type) {
		case *big.Rat:
			if n == nil {
				return "NULL", nil
			}
			r = n
		case big.Rat:
			r = &n
		case string:
			var ok bool
			if r, ok = new(big.Rat).SetString(n); !ok {
				return "", fmt.Errorf("NUMERIC string %q does not parse", n)
			}
		}
		if r != nil {
			return r.FloatString(9), nil
		}
	case sinks.Bool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
	case sinks.Timestamp:
		if ts, ok := v.(time.Time); ok {
			return ts.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano), nil
		}
	case sinks.Date:
		switch d := v.(type) {
		case time.Time:
			if d.UTC().Truncate(24*time.Hour) != d.UTC() {
				return "", fmt.Errorf("DATE %v is not UTC midnight", d)
			}
			return d.UTC().Format(time.DateOnly), nil
		case string:
			if _, err := time.Parse(time.DateOnly, d); err != nil {
				return "", fmt.Errorf("DATE string: %w", err)
			}
			return d, nil
		}
	case sinks.JSON:
		var text []byte
		switch j := v.(type) {
		case string:
			text = []byte(j)
		case []byte:
			text = j
		}
		if text != nil {
			return canonJSON(text)
		}
	case sinks.Bytes:
		if b, ok := v.([]byte); ok {
			if b == nil {
				return "NULL", nil
			}
			return "0x" + hex.EncodeToString(b), nil
		}
	}
	return "", fmt.Errorf("%s value of Go type %T: harness must normalise it", c.Type, v)
}

// canonJSON compares JSON by meaning: key order, spacing and number spelling
// (1.0 vs 1) are the warehouse's business.
func canonJSON(text []byte) (string, error) {
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("JSON %q: %w", text, err)
	}
	v = normNumbers(v)
	out, err := json.Marshal(v)
	return string(out), err
}

func normNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normNumbers(e)
		}
	case json.Number:
		if r, ok := new(big.Rat).SetString(x.String()); ok {
			if r.IsInt() {
				return json.Number(r.Num().String())
			}
			if f, _ := r.Float64(); !math.IsInf(f, 0) {
				return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
			}
		}
	}
	return v
}

// assertLive compares the sink's live rows with the model's.
func assertLive(t *testing.T, h Harness, s sinks.Sink, m *model) {
	t.Helper()
	assertRows(t, m.table, h.Rows(t, s, m.table.Name), m.live())
}

// assertRows compares two row sets and reports the keys that differ.
func assertRows(t *testing.T, table sinks.Table, gotRows, wantRows []map[string]any) {
	t.Helper()
	if err := diffRows(table, gotRows, wantRows); err != nil {
		t.Fatal(err)
	}
}

// diffRows returns an error listing the keys whose rows differ.
func diffRows(table sinks.Table, gotRows, wantRows []map[string]any) error {
	got, err := canonRows(table, gotRows)
	if err != nil {
		return fmt.Errorf("%s: rows read back: %w", table.Name, err)
	}
	want, err := canonRows(table, wantRows)
	if err != nil {
		return fmt.Errorf("%s: expected rows: %w", table.Name, err)
	}
	var diffs []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing    %s: want %s", k, fmtRow(table, w)))
		case !equalRow(g, w):
			diffs = append(diffs, fmt.Sprintf("differs    %s:\n      got  %s\n      want %s", k, fmtRow(table, g), fmtRow(table, w)))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s: %s", k, fmtRow(table, g)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	if len(diffs) > 20 {
		diffs = append(diffs[:20], fmt.Sprintf("… and %d more", len(diffs)-20))
	}
	return fmt.Errorf("%s: %d live rows, want %d:\n  %s", table.Name, len(got), len(want), strings.Join(diffs, "\n  "))
}

func equalRow(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func fmtRow(t sinks.Table, r map[string]string) string {
	parts := make([]string, 0, len(t.Columns))
	for _, c := range t.Columns {
		parts = append(parts, c.Name+"="+r[c.Name])
	}
	return strings.Join(parts, " ")
}
