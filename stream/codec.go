package stream

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
)

// Codecs holds the Avro codecs known to a process, by Rabin fingerprint
// (Avro single-object encoding names its writer schema by that fingerprint).
// It is safe for concurrent use.
type Codecs struct {
	mu     sync.RWMutex
	raw    map[uint64]string // loaded from the schema topic, compiled on first use
	byFP   map[uint64]*goavro.Codec
	schema map[uint64]string
	names  map[uint64][2]string // envelope fingerprint → schema, table (from the namespace)
}

// NewCodecs returns an empty set of codecs.
func NewCodecs() *Codecs {
	return &Codecs{raw: map[uint64]string{}, byFP: map[uint64]*goavro.Codec{}, schema: map[uint64]string{}, names: map[uint64][2]string{}}
}

// Add compiles an Avro schema and returns its fingerprint.
func (c *Codecs) Add(schemaJSON string) (uint64, error) {
	codec, err := goavro.NewCodec(schemaJSON)
	if err != nil {
		return 0, fmt.Errorf("compile avro schema: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byFP[codec.Rabin]; !ok {
		c.byFP[codec.Rabin] = codec
		c.schema[codec.Rabin] = schemaJSON
		var ns struct {
			Namespace string `json:"namespace"`
		}
		_ = json.Unmarshal([]byte(schemaJSON), &ns)
		if parts := strings.Split(ns.Namespace, "."); len(parts) == 3 && parts[0] == "starstream" {
			c.names[codec.Rabin] = [2]string{parts[1], parts[2]}
		}
	}
	return codec.Rabin, nil
}

// AddRaw records a schema under its fingerprint without compiling it yet: a
// schema topic holds many more schemas than a process reads.
func (c *Codecs) AddRaw(fp uint64, schemaJSON string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byFP[fp]; !ok {
		c.raw[fp] = schemaJSON
	}
}

// Lookup returns the codec of a fingerprint, compiling a raw schema on first use.
func (c *Codecs) Lookup(fp uint64) (*goavro.Codec, bool) {
	c.mu.RLock()
	codec, ok := c.byFP[fp]
	raw, pending := c.raw[fp]
	c.mu.RUnlock()
	if ok || !pending {
		return codec, ok
	}
	got, err := c.Add(raw)
	c.mu.Lock()
	delete(c.raw, fp)
	c.mu.Unlock()
	if err != nil || got != fp {
		return nil, false
	}
	return c.Lookup(fp)
}

// Schema returns the schema text of a fingerprint.
func (c *Codecs) Schema(fp uint64) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.schema[fp]
	return s, ok
}

// Fingerprint reads the writer-schema fingerprint of a single-object encoded record.
func Fingerprint(buf []byte) (uint64, error) {
	fp, _, err := goavro.FingerprintFromSOE(buf)
	if err != nil {
		return 0, fmt.Errorf("%w: not avro single-object encoding: %v", ErrPoison, err)
	}
	return fp, nil
}

// TableCodec encodes the events of one table version.
type TableCodec struct {
	Table      TableSchema
	KeyFP      uint64
	ValueFP    uint64
	KeyJSON    string
	ValueJSON  string
	key, value *goavro.Codec
}

// NewTableCodec builds the key and value codecs of a table and adds them to codecs.
func NewTableCodec(codecs *Codecs, s TableSchema) (*TableCodec, error) {
	vj, err := s.ValueSchema()
	if err != nil {
		return nil, err
	}
	kj, err := s.KeySchema()
	if err != nil {
		return nil, err
	}
	tc := &TableCodec{Table: s, KeyJSON: kj, ValueJSON: vj}
	if tc.KeyFP, err = codecs.Add(kj); err != nil {
		return nil, err
	}
	if tc.ValueFP, err = codecs.Add(vj); err != nil {
		return nil, err
	}
	tc.key, _ = codecs.Lookup(tc.KeyFP)
	tc.value, _ = codecs.Lookup(tc.ValueFP)
	return tc, nil
}

// EncodeKey returns the single-object encoded primary key of the event.
func (tc *TableCodec) EncodeKey(ev *Event) ([]byte, error) {
	rec, err := tc.nativeRow(ev.Key, true)
	if err != nil {
		return nil, fmt.Errorf("encode key of %s.%s: %w", tc.Table.Schema, tc.Table.Table, err)
	}
	return tc.key.SingleFromNative(nil, rec)
}

// EncodeValue returns the single-object encoded envelope of the event.
func (tc *TableCodec) EncodeValue(ev *Event) ([]byte, error) {
	env := map[string]any{
		"op":          string(ev.Op),
		"before":      nil,
		"after":       nil,
		"unchanged":   toAnySlice(ev.Unchanged),
		"lsn":         int64(ev.Pos.LSN),
		"seq":         int64(ev.Pos.Seq),
		"commit_time": ev.CommitTime.UTC(),
	}
	name := "starstream." + tc.Table.Schema + "." + tc.Table.Table + ".Row"
	for field, row := range map[string]map[string]any{"before": ev.Before, "after": ev.After} {
		if row == nil {
			continue
		}
		rec, err := tc.nativeRow(row, false)
		if err != nil {
			return nil, fmt.Errorf("encode %s of %s.%s: %w", field, tc.Table.Schema, tc.Table.Table, err)
		}
		env[field] = goavro.Union(name, rec)
	}
	buf, err := tc.value.SingleFromNative(nil, env)
	if err != nil {
		return nil, fmt.Errorf("encode %s.%s at %s: %w", tc.Table.Schema, tc.Table.Table, ev.Pos, err)
	}
	return buf, nil
}

func toAnySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (tc *TableCodec) nativeRow(row map[string]any, keyOnly bool) (map[string]any, error) {
	rec := make(map[string]any, len(tc.Table.Columns))
	for _, c := range tc.Table.Columns {
		if keyOnly && !c.Key {
			continue
		}
		v, err := nativeValue(c.Type, row[c.Name])
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		if v == nil {
			rec[c.Name] = nil
			continue
		}
		rec[c.Name] = goavro.Union(unionBranch(c.Type), v)
	}
	return rec, nil
}

// nativeValue converts a Go value of the column's kind into what goavro expects.
func nativeValue(t Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch t.Kind {
	case KindInt:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		case int32:
			return int64(n), nil
		case int16:
			return int64(n), nil
		}
	case KindFloat:
		switch n := v.(type) {
		case float64:
			return n, nil
		case float32:
			return float64(n), nil
		}
	case KindDecimal:
		if r, ok := v.(*big.Rat); ok {
			return r, nil
		}
	case KindDate, KindTimestamp:
		if tm, ok := v.(time.Time); ok {
			return tm.UTC(), nil
		}
	case KindTime:
		if d, ok := v.(time.Duration); ok {
			return d, nil
		}
	case KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case KindBytes:
		if b, ok := v.([]byte); ok {
			return b, nil
		}
	case KindArray:
		items, ok := v.([]any)
		if !ok {
			break
		}
		out := make([]any, len(items))
		for i, item := range items {
			nv, err := nativeValue(*t.Elem, item)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
			if nv != nil {
				nv = goavro.Union(unionBranch(*t.Elem), nv)
			}
			out[i] = nv
		}
		return out, nil
	default: // string, json, uuid
		if s, ok := v.(string); ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %T is not a %s value", ErrBadSchema, v, t.Kind)
}

// Decoded is one decoded record: the event and the writer schema's fingerprint.
type Decoded struct {
	Event       Event
	Fingerprint uint64
}

// DecodeEvent decodes a single-object encoded envelope. The schema and table
// come from the writer schema's namespace ("starstream.<schema>.<table>").
func (c *Codecs) DecodeEvent(value []byte) (Decoded, error) {
	fp, err := Fingerprint(value)
	if err != nil {
		return Decoded{}, err
	}
	codec, ok := c.Lookup(fp)
	if !ok {
		return Decoded{Fingerprint: fp}, fmt.Errorf("%w: %016x", ErrUnknownSchema, fp)
	}
	native, _, err := codec.NativeFromSingle(value)
	if err != nil {
		return Decoded{Fingerprint: fp}, fmt.Errorf("%w: %v", ErrPoison, err)
	}
	env, ok := native.(map[string]any)
	if !ok {
		return Decoded{Fingerprint: fp}, fmt.Errorf("%w: value is not an envelope", ErrPoison)
	}
	c.mu.RLock()
	name, named := c.names[fp]
	c.mu.RUnlock()
	if !named {
		return Decoded{Fingerprint: fp}, fmt.Errorf("%w: schema %016x is not a starstream.<schema>.<table> envelope", ErrPoison, fp)
	}
	ev := Event{Schema: name[0], Table: name[1]}
	op, _ := env["op"].(string)
	ev.Op = Op(op)
	lsn, _ := env["lsn"].(int64)
	seq, _ := env["seq"].(int64)
	ev.Pos = Position{LSN: LSN(lsn), Seq: uint64(seq)}
	ev.CommitTime, _ = env["commit_time"].(time.Time)
	for _, u := range asSlice(env["unchanged"]) {
		if s, ok := u.(string); ok {
			ev.Unchanged = append(ev.Unchanged, s)
		}
	}
	ev.Before = goRow(env["before"])
	ev.After = goRow(env["after"])
	return Decoded{Event: ev, Fingerprint: fp}, nil
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// unwrap strips goavro's union wrapper {"branch": value}.
func unwrap(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for _, inner := range m {
			return inner
		}
	}
	return v
}

func goRow(v any) map[string]any {
	rec, ok := unwrap(v).(map[string]any)
	if !ok || v == nil {
		return nil
	}
	out := make(map[string]any, len(rec))
	for k, col := range rec {
		val := unwrap(col)
		if arr, ok := val.([]any); ok {
			items := make([]any, len(arr))
			for i, it := range arr {
				items[i] = unwrap(it)
			}
			val = items
		}
		out[k] = val
	}
	return out
}

// DecodeKey decodes a single-object encoded key record into column values.
func (c *Codecs) DecodeKey(key []byte) (map[string]any, error) {
	fp, err := Fingerprint(key)
	if err != nil {
		return nil, err
	}
	codec, ok := c.Lookup(fp)
	if !ok {
		return nil, fmt.Errorf("%w: key %016x", ErrUnknownSchema, fp)
	}
	native, _, err := codec.NativeFromSingle(key)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrPoison, err)
	}
	return goRow(goavro.Union("k", native)), nil
}
