package stream

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// Kind is the logical type of a column, independent of the source database.
type Kind string

// Column kinds and the Go value each carries in an Event.
const (
	KindBool      Kind = "bool"      // bool
	KindInt       Kind = "int"       // int64
	KindFloat     Kind = "float"     // float64
	KindDecimal   Kind = "decimal"   // *big.Rat; Precision and Scale required
	KindString    Kind = "string"    // string (also unconstrained numeric, as its text)
	KindBytes     Kind = "bytes"     // []byte
	KindJSON      Kind = "json"      // string holding JSON text
	KindUUID      Kind = "uuid"      // string in canonical form
	KindDate      Kind = "date"      // time.Time at UTC midnight
	KindTime      Kind = "time"      // time.Duration since midnight
	KindTimestamp Kind = "timestamp" // time.Time (UTC)
	KindArray     Kind = "array"     // []any of Elem
)

// Type is a column's logical type.
type Type struct {
	Kind      Kind
	Precision int    `json:",omitempty"`
	Scale     int    `json:",omitempty"`
	Elem      *Type  `json:",omitempty"` // element type of arrays
	SourceTyp string `json:",omitempty"` // source type name, for documentation (e.g. "numeric(12,2)")
}

// Column describes one column of a table.
type Column struct {
	Name     string
	Type     Type
	Nullable bool
	Key      bool // part of the primary key
}

// TableSchema describes the rows of one table; it becomes the Avro schema of its topic.
type TableSchema struct {
	Schema  string
	Table   string
	Columns []Column
}

var avroName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks that the schema can be expressed in Avro.
func (s TableSchema) Validate() error {
	if !avroName.MatchString(s.Schema) || !avroName.MatchString(s.Table) {
		return fmt.Errorf("%w: names %q.%q must match %s", ErrBadSchema, s.Schema, s.Table, avroName)
	}
	if len(s.Columns) == 0 {
		return fmt.Errorf("%w: %s.%s has no columns", ErrBadSchema, s.Schema, s.Table)
	}
	seen := map[string]bool{}
	for _, c := range s.Columns {
		if !avroName.MatchString(c.Name) {
			return fmt.Errorf("%w: column %q of %s.%s is not an Avro name", ErrBadSchema, c.Name, s.Schema, s.Table)
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: column %q twice in %s.%s", ErrBadSchema, c.Name, s.Schema, s.Table)
		}
		seen[c.Name] = true
		if c.Type.Kind == KindDecimal && (c.Type.Precision <= 0 || c.Type.Scale < 0 || c.Type.Scale > c.Type.Precision) {
			return fmt.Errorf("%w: decimal column %q needs 0 <= scale <= precision", ErrBadSchema, c.Name)
		}
		if c.Type.Kind == KindArray && c.Type.Elem == nil {
			return fmt.Errorf("%w: array column %q has no element type", ErrBadSchema, c.Name)
		}
	}
	return nil
}

// KeyColumns returns the primary-key columns in declaration order.
func (s TableSchema) KeyColumns() []Column {
	var out []Column
	for _, c := range s.Columns {
		if c.Key {
			out = append(out, c)
		}
	}
	return out
}

// Column returns the named column.
func (s TableSchema) Column(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

func avroType(t Type) any {
	switch t.Kind {
	case KindBool:
		return "boolean"
	case KindInt:
		return "long"
	case KindFloat:
		return "double"
	case KindDecimal:
		return map[string]any{"type": "bytes", "logicalType": "decimal", "precision": t.Precision, "scale": t.Scale}
	case KindBytes:
		return "bytes"
	case KindUUID:
		return map[string]any{"type": "string", "logicalType": "uuid"}
	case KindDate:
		return map[string]any{"type": "int", "logicalType": "date"}
	case KindTime:
		return map[string]any{"type": "long", "logicalType": "time-micros"}
	case KindTimestamp:
		return map[string]any{"type": "long", "logicalType": "timestamp-micros"}
	case KindArray:
		return map[string]any{"type": "array", "items": []any{"null", avroType(*t.Elem)}}
	case KindJSON:
		return map[string]any{"type": "string", "connect.name": "json"}
	default:
		return "string"
	}
}

// unionBranch is the name goavro gives the non-null branch of a column's union.
func unionBranch(t Type) string {
	switch t.Kind {
	case KindBool:
		return "boolean"
	case KindInt:
		return "long"
	case KindFloat:
		return "double"
	case KindDecimal:
		return "bytes.decimal"
	case KindBytes:
		return "bytes"
	case KindDate:
		return "int.date"
	case KindTime:
		return "long.time-micros"
	case KindTimestamp:
		return "long.timestamp-micros"
	case KindArray:
		return "array"
	default:
		return "string"
	}
}

func rowRecord(s TableSchema, name string, keyOnly bool) map[string]any {
	var fields []any
	for _, c := range s.Columns {
		if keyOnly && !c.Key {
			continue
		}
		f := map[string]any{"name": c.Name, "type": []any{"null", avroType(c.Type)}, "default": nil}
		if c.Type.SourceTyp != "" {
			f["doc"] = c.Type.SourceTyp
		}
		fields = append(fields, f)
	}
	return map[string]any{"type": "record", "name": name, "fields": fields}
}

// ValueSchema returns the Avro schema of the topic's values: an envelope with
// op, before, after, unchanged TOAST columns and the position.
func (s TableSchema) ValueSchema() (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	env := map[string]any{
		"type":      "record",
		"name":      "Envelope",
		"namespace": "starstream." + s.Schema + "." + s.Table,
		"fields": []any{
			map[string]any{"name": "op", "type": "string"},
			map[string]any{"name": "before", "type": []any{"null", rowRecord(s, "Row", false)}, "default": nil},
			map[string]any{"name": "after", "type": []any{"null", "Row"}, "default": nil},
			map[string]any{"name": "unchanged", "type": map[string]any{"type": "array", "items": "string"}, "default": []any{}},
			map[string]any{"name": "lsn", "type": "long"},
			map[string]any{"name": "seq", "type": "long"},
			map[string]any{"name": "commit_time", "type": map[string]any{"type": "long", "logicalType": "timestamp-micros"}},
		},
	}
	b, err := json.Marshal(env)
	return string(b), err
}

// KeySchema returns the Avro schema of the topic's keys: the primary-key columns.
func (s TableSchema) KeySchema() (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	if len(s.KeyColumns()) == 0 {
		return "", fmt.Errorf("%w: %s.%s has no primary key", ErrBadSchema, s.Schema, s.Table)
	}
	rec := rowRecord(s, "Key", true)
	rec["namespace"] = "starstream." + s.Schema + "." + s.Table
	b, err := json.Marshal(rec)
	return string(b), err
}
