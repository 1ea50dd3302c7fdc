package stream

import (
	"encoding/json"
	"fmt"
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
	Table     TableSchema
	KeyFP     uint64
	ValueFP   uint64
	KeyJSON   string
	ValueJSON string

	rowCols, keyCols []column // compiled Avro encoders (avroenc.go)
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
	tc := &TableCodec{Table: s, KeyJSON: kj, ValueJSON: vj,
		rowCols: compileColumns(s, false), keyCols: compileColumns(s, true)}
	if tc.KeyFP, err = codecs.Add(kj); err != nil {
		return nil, err
	}
	if tc.ValueFP, err = codecs.Add(vj); err != nil {
		return nil, err
	}
	return tc, nil
}

// EncodeKey returns the single-object encoded primary key of the event.
func (tc *TableCodec) EncodeKey(ev *Event) ([]byte, error) {
	return tc.AppendKey(nil, ev.Key)
}

// AppendKey appends the single-object encoding of a primary key (the key
// columns of key) to buf.
func (tc *TableCodec) AppendKey(buf []byte, key map[string]any) ([]byte, error) {
	n := len(buf)
	buf, err := appendRecord(appendSOEHeader(buf, tc.KeyFP), tc.keyCols, key)
	if err != nil {
		return buf[:n], fmt.Errorf("encode key of %s.%s: %w", tc.Table.Schema, tc.Table.Table, err)
	}
	return buf, nil
}

// EncodeValue returns the single-object encoded envelope of the event.
func (tc *TableCodec) EncodeValue(ev *Event) ([]byte, error) {
	return tc.AppendValue(nil, ev)
}

// AppendValue appends the single-object encoded envelope of the event to buf.
func (tc *TableCodec) AppendValue(buf []byte, ev *Event) ([]byte, error) {
	n := len(buf)
	buf, err := tc.appendEnvelope(appendSOEHeader(buf, tc.ValueFP), ev)
	if err != nil {
		return buf[:n], err
	}
	return buf, nil
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
