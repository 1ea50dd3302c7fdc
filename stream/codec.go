package stream

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/linkedin/goavro/v2"
)

// Codecs holds the Avro codecs known to a process, by Rabin fingerprint
// (Avro single-object encoding names its writer schema by that fingerprint)
// and, with a schema registry, by registry schema id (the Confluent wire
// format names it by id). It is safe for concurrent use.
type Codecs struct {
	mu     sync.RWMutex
	raw    map[uint64]string // loaded from the schema topic, compiled on first use
	byFP   map[uint64]*goavro.Codec
	schema map[uint64]string
	names  map[uint64][2]string // envelope fingerprint → schema, table (from the namespace)
	byID   map[int]uint64       // registry schema id → fingerprint
	reg    *Registry            // nil: single-object encoding only
}

// NewCodecs returns an empty set of codecs for single-object encoding with the
// schemas in the schema topic.
func NewCodecs() *Codecs { return NewRegistryCodecs(nil) }

// NewRegistryCodecs returns an empty set of codecs bound to a schema registry:
// writers given these codecs register their schemas there and write the
// Confluent wire format; decoders read both formats, looking unknown ids up in
// the registry. A nil registry is NewCodecs.
func NewRegistryCodecs(reg *Registry) *Codecs {
	return &Codecs{raw: map[uint64]string{}, byFP: map[uint64]*goavro.Codec{}, schema: map[uint64]string{},
		names: map[uint64][2]string{}, byID: map[int]uint64{}, reg: reg}
}

// Registry returns the schema registry the codecs are bound to, or nil.
func (c *Codecs) Registry() *Registry { return c.reg }

// addID records the fingerprint of a registry schema id.
func (c *Codecs) addID(id int, fp uint64) {
	c.mu.Lock()
	c.byID[id] = fp
	c.mu.Unlock()
}

// Resolve makes the writer schema of an encoded record (key or value) known when
// it is in the Confluent wire format, asking the registry for its id; for
// single-object encoding it does nothing (LoadSchemas reads the schema topic).
// Consumers do this themselves; it serves readers that call DecodeEvent directly.
func (c *Codecs) Resolve(ctx context.Context, record []byte) error {
	ref, err := readHeader(record)
	if err != nil || ref.id == 0 {
		return err
	}
	return c.resolveID(ctx, ref.id)
}

// resolveID compiles the schema of a registry id, asking the registry once.
func (c *Codecs) resolveID(ctx context.Context, id int) error {
	c.mu.RLock()
	_, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return nil
	}
	if c.reg == nil {
		return fmt.Errorf("%w id %d: the record is in the Confluent wire format but no schema registry is configured (kafka.schema_registry_url)", ErrUnknownSchema, id)
	}
	text, err := c.reg.SchemaByID(ctx, id)
	if err != nil {
		return err
	}
	fp, err := c.Add(text)
	if err != nil {
		return fmt.Errorf("%w: schema id %d: %v", ErrPoison, id, err)
	}
	c.addID(id, fp)
	return nil
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

// confluentMagic starts a record in the Confluent wire format, followed by the
// writer schema's registry id (4 bytes, big endian) and the Avro binary.
const confluentMagic = 0

// writerRef names the writer schema of an encoded record: its registry id
// (Confluent wire format) or its fingerprint (single-object encoding).
type writerRef struct {
	id   int // > 0: Confluent wire format
	fp   uint64
	body []byte // the Avro binary after the header
}

func (w writerRef) String() string {
	if w.id > 0 {
		return fmt.Sprintf("id %d", w.id)
	}
	return fmt.Sprintf("fingerprint %016x", w.fp)
}

// readHeader tells the two formats apart by their first byte: 0xC3 starts
// single-object encoding, 0 the Confluent wire format.
func readHeader(buf []byte) (writerRef, error) {
	if len(buf) > 0 && buf[0] == confluentMagic {
		if len(buf) < 5 {
			return writerRef{}, fmt.Errorf("%w: Confluent wire format header cut short (%d bytes)", ErrPoison, len(buf))
		}
		id := int(binary.BigEndian.Uint32(buf[1:5]))
		if id <= 0 || id > math.MaxInt32 {
			return writerRef{}, fmt.Errorf("%w: Confluent wire format with schema id %d", ErrPoison, id)
		}
		return writerRef{id: id, body: buf[5:]}, nil
	}
	fp, err := Fingerprint(buf)
	if err != nil {
		if len(buf) < 2 {
			return writerRef{}, fmt.Errorf("%w: neither avro single-object encoding nor the Confluent wire format: %d bytes", ErrPoison, len(buf))
		}
		return writerRef{}, fmt.Errorf("%w: neither avro single-object encoding nor the Confluent wire format: starts %02X %02X, not C3 01 or 00", ErrPoison, buf[0], buf[1])
	}
	return writerRef{fp: fp, body: buf[10:]}, nil
}

// lookupRef returns the codec of a record's writer schema and its fingerprint.
func (c *Codecs) lookupRef(ref writerRef) (*goavro.Codec, uint64, bool) {
	fp := ref.fp
	if ref.id > 0 {
		c.mu.RLock()
		var ok bool
		fp, ok = c.byID[ref.id]
		c.mu.RUnlock()
		if !ok {
			return nil, 0, false
		}
	}
	codec, ok := c.Lookup(fp)
	return codec, fp, ok
}

// decodeBody decodes the Avro binary of a record; the Confluent wire format has
// nothing after it.
func decodeBody(codec *goavro.Codec, ref writerRef) (any, error) {
	native, rest, err := codec.NativeFromBinary(ref.body)
	if err != nil {
		return nil, err
	}
	if ref.id > 0 && len(rest) != 0 {
		return nil, fmt.Errorf("%d bytes after the record", len(rest))
	}
	return native, nil
}

// TableCodec encodes the events of one table version.
type TableCodec struct {
	Table     TableSchema
	KeyFP     uint64
	ValueFP   uint64
	KeyJSON   string
	ValueJSON string
	// KeyID and ValueID are the registry schema ids the writer registered the
	// key and value schemas under (subjects <topic>-key and <topic>-value):
	// records then use the Confluent wire format. Zero: single-object encoding.
	KeyID, ValueID int

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

// EncodeKey returns the encoded primary key of the event: Confluent wire format
// when the codec was registered in a schema registry, else single-object encoding.
func (tc *TableCodec) EncodeKey(ev *Event) ([]byte, error) {
	return tc.AppendKey(nil, ev.Key)
}

// AppendKey appends the encoding of a primary key (the key columns of key) to buf.
func (tc *TableCodec) AppendKey(buf []byte, key map[string]any) ([]byte, error) {
	n := len(buf)
	buf, err := appendRecord(appendHeader(buf, tc.KeyID, tc.KeyFP), tc.keyCols, key)
	if err != nil {
		return buf[:n], fmt.Errorf("encode key of %s.%s: %w", tc.Table.Schema, tc.Table.Table, err)
	}
	return buf, nil
}

// EncodeValue returns the encoded envelope of the event (format as EncodeKey).
func (tc *TableCodec) EncodeValue(ev *Event) ([]byte, error) {
	return tc.AppendValue(nil, ev)
}

// AppendValue appends the encoded envelope of the event to buf.
func (tc *TableCodec) AppendValue(buf []byte, ev *Event) ([]byte, error) {
	n := len(buf)
	buf, err := tc.appendEnvelope(appendHeader(buf, tc.ValueID, tc.ValueFP), ev)
	if err != nil {
		return buf[:n], err
	}
	return buf, nil
}

// Decoded is one decoded record: the event and the writer schema's fingerprint
// (and registry id, for the Confluent wire format).
type Decoded struct {
	Event       Event
	Fingerprint uint64
	SchemaID    int
}

// DecodeEvent decodes an envelope in single-object encoding or the Confluent
// wire format. The schema and table come from the writer schema's namespace
// ("starstream.<schema>.<table>"). A schema id not seen yet is an
// ErrUnknownSchema: consumers resolve it through the registry and try again.
func (c *Codecs) DecodeEvent(value []byte) (Decoded, error) {
	ref, err := readHeader(value)
	if err != nil {
		return Decoded{}, err
	}
	codec, fp, ok := c.lookupRef(ref)
	if !ok {
		return Decoded{Fingerprint: ref.fp, SchemaID: ref.id}, fmt.Errorf("%w %s", ErrUnknownSchema, ref)
	}
	native, err := decodeBody(codec, ref)
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
		return Decoded{Fingerprint: fp}, fmt.Errorf("%w: schema %s is not a starstream.<schema>.<table> envelope", ErrPoison, ref)
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
	return Decoded{Event: ev, Fingerprint: fp, SchemaID: ref.id}, nil
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

// DecodeKey decodes a key record (either format) into column values.
func (c *Codecs) DecodeKey(key []byte) (map[string]any, error) {
	ref, err := readHeader(key)
	if err != nil {
		return nil, err
	}
	codec, _, ok := c.lookupRef(ref)
	if !ok {
		return nil, fmt.Errorf("%w of key: %s", ErrUnknownSchema, ref)
	}
	native, err := decodeBody(codec, ref)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrPoison, err)
	}
	return goRow(goavro.Union("k", native)), nil
}
