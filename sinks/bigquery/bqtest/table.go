package bqtest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	bq "google.golang.org/api/bigquery/v2"
)

type dataset struct {
	meta   *bq.Dataset
	tables map[string]*table
}

// table is a table's metadata (as the REST API holds it) and its data: rows
// appended without CDC, and the winning CDC change per primary key.
type table struct {
	project, dataset, name string
	meta                   *bq.Table
	gen                    int     // bumped on every metadata change; the etag
	plain                  [][]any // rows appended without CDC
	keyed                  map[string]*change
}

// change is one CDC row as the double keeps it. A deleted key keeps its last
// change (a tombstone) so an older upsert arriving later cannot bring it back:
// the table's state is, per key, the change with the greatest sequence number
// (ties and unsequenced changes by arrival), whatever order they arrived in.
type change struct {
	values  []any // by column position; columns only ever get appended
	del     bool
	seq     Sequence // nil: no _CHANGE_SEQUENCE_NUMBER
	arrival uint64
}

// supersedes reports whether c replaces cur as the key's current version.
// "If a _CHANGE_SEQUENCE_NUMBER is not provided, BigQuery applies changes in the
// order they were ingested" (change-data-capture#manage_custom_ordering); ties
// go to the later arrival.
func (c *change) supersedes(cur *change) bool {
	if c.seq != nil && cur.seq != nil {
		if n := c.seq.Compare(cur.seq); n != 0 {
			return n > 0
		}
	}
	return c.arrival > cur.arrival
}

func tableKey(project, ds string) string { return project + "." + ds }

func (s *Server) lookupTable(project, ds, name string) (*table, error) {
	d, ok := s.datasets[tableKey(project, ds)]
	if !ok {
		return nil, fmt.Errorf("Not found: Dataset %s:%s", project, ds)
	}
	t, ok := d.tables[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("Not found: Table %s:%s.%s", project, ds, name)
	}
	return t, nil
}

// column finds a column by name; BigQuery column names are case-insensitive.
func (t *table) column(name string) *bq.TableFieldSchema {
	if t.meta.Schema == nil {
		return nil
	}
	for _, f := range t.meta.Schema.Fields {
		if strings.EqualFold(f.Name, name) {
			return f
		}
	}
	return nil
}

// colIndex is the position of a column, or -1.
func (t *table) colIndex(name string) int {
	for i, f := range t.meta.Schema.Fields {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

func (t *table) primaryKey() []string {
	if t.meta.TableConstraints == nil || t.meta.TableConstraints.PrimaryKey == nil {
		return nil
	}
	return t.meta.TableConstraints.PrimaryKey.Columns
}

// keyOf renders the primary key values of a row as a map key.
func (t *table) keyOf(values []any) (string, error) {
	var b strings.Builder
	for i, k := range t.primaryKey() {
		var v any
		if j := t.colIndex(k); j >= 0 && j < len(values) {
			v = values[j]
		}
		if v == nil {
			return "", fmt.Errorf("primary key column %q is missing or NULL", k)
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(canonical(v))
	}
	return b.String(), nil
}

func canonical(v any) string {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10)
	case string:
		return "s" + x
	case *big.Rat:
		return x.RatString()
	case time.Time:
		return fmt.Sprint(x.UnixMicro())
	case []byte:
		return hex.EncodeToString(x)
	default:
		return fmt.Sprintf("%T:%v", v, v)
	}
}

// apply records a CDC change.
func (t *table) apply(c *change) error {
	key, err := t.keyOf(c.values)
	if err != nil {
		return err
	}
	if cur, ok := t.keyed[key]; !ok || c.supersedes(cur) {
		t.keyed[key] = c
	}
	return nil
}

// rows is the table as a query sees it: every column of the current schema,
// NULL (nil) where a row has no value; CDC rows resolved (deleted keys absent,
// newest sequence wins), ordered by primary key; then rows appended without CDC
// in arrival order.
func (t *table) rows() []map[string]any {
	keys := make([]string, 0, len(t.keyed))
	for k, c := range t.keyed {
		if !c.del {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]map[string]any, 0, len(keys)+len(t.plain))
	for _, k := range keys {
		out = append(out, t.project1(t.keyed[k].values))
	}
	for _, r := range t.plain {
		out = append(out, t.project1(r))
	}
	return out
}

func (t *table) project1(values []any) map[string]any {
	row := make(map[string]any, len(t.meta.Schema.Fields))
	for i, f := range t.meta.Schema.Fields {
		row[f.Name] = nil
		if i < len(values) {
			row[f.Name] = values[i]
		}
	}
	return row
}

// Rows returns the current rows of a table (see table.rows for the semantics).
func (s *Server) Rows(project, ds, name string) ([]map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTable(project, ds, name)
	if err != nil {
		return nil, err
	}
	return t.rows(), nil
}

// Table returns a copy of a table's REST metadata, or false if it does not exist.
func (s *Server) Table(project, ds, name string) (*bq.Table, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTable(project, ds, name)
	if err != nil {
		return nil, false
	}
	return cloneTable(t.meta), true
}

// Dataset returns a copy of a dataset's REST metadata, or false if it does not exist.
func (s *Server) Dataset(project, ds string) (*bq.Dataset, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.datasets[tableKey(project, ds)]
	if !ok {
		return nil, false
	}
	var out bq.Dataset
	b, _ := json.Marshal(d.meta)
	_ = json.Unmarshal(b, &out)
	return &out, true
}

func cloneTable(in *bq.Table) *bq.Table {
	var out bq.Table
	b, _ := json.Marshal(in)
	_ = json.Unmarshal(b, &out)
	return &out
}
