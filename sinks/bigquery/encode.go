package bigquery

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/bigquery"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"cloud.google.com/go/bigquery/storage/managedwriter/adapt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/starstream/starstream/sinks"
)

// CDC pseudo-columns (https://cloud.google.com/bigquery/docs/change-data-capture).
const (
	changeTypeColumn     = "_CHANGE_TYPE"
	changeSequenceColumn = "_CHANGE_SEQUENCE_NUMBER"
)

// rowSchema is how rows of one table version are encoded: the table's actual
// columns (read back from BigQuery, so a pipeline on an older definition still
// writes every column), their proto field numbers, and the writer schema sent
// to the Storage Write API.
type rowSchema struct {
	cols       []column
	byName     map[string]int
	changeType protowire.Number
	changeSeq  protowire.Number
	descriptor *descriptorpb.DescriptorProto
}

type column struct {
	name     string
	typ      sinks.Type // "" for a column type the sink does not write
	required bool
	num      protowire.Number
}

var fieldTypes = map[bigquery.FieldType]sinks.Type{
	bigquery.StringFieldType:    sinks.String,
	bigquery.IntegerFieldType:   sinks.Int64,
	bigquery.FloatFieldType:     sinks.Float64,
	bigquery.NumericFieldType:   sinks.Numeric,
	bigquery.BooleanFieldType:   sinks.Bool,
	bigquery.TimestampFieldType: sinks.Timestamp,
	bigquery.DateFieldType:      sinks.Date,
	bigquery.JSONFieldType:      sinks.JSON,
	bigquery.BytesFieldType:     sinks.Bytes,
}

// newRowSchema builds the writer schema through adapt from the table schema
// plus the two CDC pseudo-columns. Every field is optional in the writer schema
// (proto2, so presence is explicit and "" or 0 stay distinct from NULL): a
// DELETE carries only its key, and NOT NULL is checked here per row instead.
func newRowSchema(s bigquery.Schema) (*rowSchema, error) {
	relaxed := make(bigquery.Schema, 0, len(s)+2)
	for _, f := range s {
		c := *f
		c.Required = false
		relaxed = append(relaxed, &c)
	}
	ts, err := adapt.BQSchemaToStorageTableSchema(relaxed)
	if err != nil {
		return nil, fmt.Errorf("convert schema: %w", err)
	}
	for _, name := range []string{changeTypeColumn, changeSequenceColumn} {
		ts.Fields = append(ts.Fields, &storagepb.TableFieldSchema{
			Name: name, Type: storagepb.TableFieldSchema_STRING, Mode: storagepb.TableFieldSchema_NULLABLE,
		})
	}
	d, err := adapt.StorageSchemaToProto2Descriptor(ts, "root")
	if err != nil {
		return nil, fmt.Errorf("build row descriptor: %w", err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("build row descriptor: got %T", d)
	}
	dp, err := adapt.NormalizeDescriptor(md)
	if err != nil {
		return nil, fmt.Errorf("normalize row descriptor: %w", err)
	}
	nums := map[string]protowire.Number{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		name := string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && proto.HasExtension(opts, storagepb.E_ColumnName) {
			name = proto.GetExtension(opts, storagepb.E_ColumnName).(string)
		}
		nums[name] = fd.Number()
	}
	rs := &rowSchema{
		byName:     map[string]int{},
		changeType: nums[changeTypeColumn],
		changeSeq:  nums[changeSequenceColumn],
		descriptor: dp,
	}
	for i, f := range s {
		rs.cols = append(rs.cols, column{name: f.Name, typ: fieldTypes[f.Type], required: f.Required, num: nums[f.Name]})
		rs.byName[f.Name] = i
	}
	return rs, nil
}

// encode appends the serialized proto row for r to buf. Its error is the
// reason of a RowError: the row is refused, the batch goes on.
func (rs *rowSchema) encode(buf []byte, r sinks.Row, pk []string) ([]byte, error) {
	for name := range r.Values {
		if _, ok := rs.byName[name]; !ok {
			return nil, fmt.Errorf("unknown column %q", name)
		}
	}
	if r.Op == sinks.Delete {
		// BigQuery deletes by primary key: only the key travels.
		for _, k := range pk {
			c := rs.cols[rs.byName[k]]
			v := r.Values[k]
			if v == nil {
				return nil, fmt.Errorf("primary key column %q is missing", k)
			}
			var err error
			if buf, err = appendValue(buf, c, v); err != nil {
				return nil, err
			}
		}
		buf = protowire.AppendTag(buf, rs.changeType, protowire.BytesType)
		buf = protowire.AppendString(buf, "DELETE")
	} else {
		for _, c := range rs.cols {
			v := r.Values[c.name]
			if v == nil {
				if c.required {
					return nil, fmt.Errorf("column %q is NOT NULL but the row has no value", c.name)
				}
				continue
			}
			var err error
			if buf, err = appendValue(buf, c, v); err != nil {
				return nil, err
			}
		}
		buf = protowire.AppendTag(buf, rs.changeType, protowire.BytesType)
		buf = protowire.AppendString(buf, "UPSERT")
	}
	// r.Pos.ChangeSequence(), built without allocating.
	var tmp [33]byte
	seq := strconv.AppendUint(tmp[:0], r.Pos.LSN, 16)
	seq = strconv.AppendUint(append(seq, '/'), r.Pos.Seq, 16)
	buf = protowire.AppendTag(buf, rs.changeSeq, protowire.BytesType)
	buf = protowire.AppendBytes(buf, seq)
	return buf, nil
}

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	// NUMERIC has precision 38 and scale 9: |v| < 10^29, at most 9 decimals.
	numericScale = new(big.Int).Exp(big.NewInt(10), big.NewInt(9), nil)
	numericLimit = new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil)
)

// appendValue encodes one column value the way adapt's descriptor declares it:
// INT64 and TIMESTAMP (µs since the epoch) as int64, DATE (days since the epoch)
// as int32, FLOAT64 as double, NUMERIC as bytes, the rest as strings or bytes.
func appendValue(buf []byte, c column, v any) ([]byte, error) {
	wrong := func() ([]byte, error) {
		return nil, fmt.Errorf("column %q is %s, got a %T", c.name, c.typ, v)
	}
	switch c.typ {
	case sinks.String:
		s, ok := v.(string)
		if !ok {
			return wrong()
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("column %q: string is not valid UTF-8", c.name)
		}
		buf = protowire.AppendTag(buf, c.num, protowire.BytesType)
		return protowire.AppendString(buf, s), nil
	case sinks.JSON:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		case json.RawMessage:
			s = string(x)
		default:
			return wrong()
		}
		if !json.Valid([]byte(s)) {
			return nil, fmt.Errorf("column %q: invalid JSON text", c.name)
		}
		buf = protowire.AppendTag(buf, c.num, protowire.BytesType)
		return protowire.AppendString(buf, s), nil
	case sinks.Int64:
		var n int64
		switch x := v.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case int32:
			n = int64(x)
		default:
			return wrong()
		}
		buf = protowire.AppendTag(buf, c.num, protowire.VarintType)
		return protowire.AppendVarint(buf, uint64(n)), nil
	case sinks.Float64:
		f, ok := v.(float64)
		if !ok {
			return wrong()
		}
		buf = protowire.AppendTag(buf, c.num, protowire.Fixed64Type)
		return protowire.AppendFixed64(buf, math.Float64bits(f)), nil
	case sinks.Bool:
		b, ok := v.(bool)
		if !ok {
			return wrong()
		}
		buf = protowire.AppendTag(buf, c.num, protowire.VarintType)
		return protowire.AppendVarint(buf, protowire.EncodeBool(b)), nil
	case sinks.Numeric:
		r, ok := v.(*big.Rat)
		if !ok || r == nil {
			return wrong()
		}
		var tmp [17]byte
		b, err := appendNumeric(tmp[:0], r)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", c.name, err)
		}
		buf = protowire.AppendTag(buf, c.num, protowire.BytesType)
		return protowire.AppendBytes(buf, b), nil
	case sinks.Timestamp:
		t, ok := v.(time.Time)
		if !ok {
			return wrong()
		}
		if t.Before(minTime) || t.After(maxTime) {
			return nil, fmt.Errorf("column %q: timestamp %s outside 0001-01-01..9999-12-31", c.name, t)
		}
		buf = protowire.AppendTag(buf, c.num, protowire.VarintType)
		return protowire.AppendVarint(buf, uint64(t.UnixMicro())), nil
	case sinks.Date:
		t, ok := v.(time.Time)
		if !ok {
			return wrong()
		}
		if t.Year() < 1 || t.Year() > 9999 {
			return nil, fmt.Errorf("column %q: date %s outside 0001-01-01..9999-12-31", c.name, t.Format(time.DateOnly))
		}
		// The civil date as written, whatever the location.
		day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		days := day.Unix() / 86400 // exact: day is a UTC midnight
		buf = protowire.AppendTag(buf, c.num, protowire.VarintType)
		return protowire.AppendVarint(buf, uint64(int64(int32(days)))), nil
	case sinks.Bytes:
		b, ok := v.([]byte)
		if !ok {
			return wrong()
		}
		buf = protowire.AppendTag(buf, c.num, protowire.BytesType)
		return protowire.AppendBytes(buf, b), nil
	}
	return nil, fmt.Errorf("column %q has a type the sink does not write", c.name)
}

// NumericBytes encodes a NUMERIC value as the Storage Write API expects it in a
// BYTES field: the little-endian two's complement of the value scaled by 10^9
// (https://cloud.google.com/bigquery/docs/write-api#data_type_conversions; adapt
// maps NUMERIC columns to bytes). Values with more than 9 decimals or beyond
// NUMERIC's 38 digits are refused rather than rounded.
func NumericBytes(r *big.Rat) ([]byte, error) {
	return appendNumeric(nil, r)
}

// appendNumeric appends NumericBytes(r) to buf; values that fit an int64 once
// scaled (prices, amounts) take a path without big.Int arithmetic.
func appendNumeric(buf []byte, r *big.Rat) ([]byte, error) {
	if num, den := r.Num(), r.Denom(); num.IsInt64() && den.IsInt64() {
		n, d := num.Int64(), den.Int64()
		const scale = 1_000_000_000
		if d > 0 && scale%d == 0 {
			m := scale / d
			if v := n * m; n == 0 || (v/m == n && (v < 0) == (n < 0)) {
				return appendTwosComplementLE(buf, v), nil
			}
		}
	}
	scaled := new(big.Int).Mul(r.Num(), numericScale)
	q, rem := new(big.Int).QuoRem(scaled, r.Denom(), new(big.Int))
	if rem.Sign() != 0 {
		return nil, fmt.Errorf("NUMERIC %s has more than 9 decimal places", r.RatString())
	}
	if new(big.Int).Abs(q).Cmp(numericLimit) >= 0 {
		return nil, fmt.Errorf("NUMERIC %s is out of range (38 digits, 9 after the point)", strings.TrimRight(r.FloatString(9), "0"))
	}
	// Two's complement, big-endian, in the fewest bytes that keep the sign bit.
	n := q.BitLen()/8 + 1
	be := make([]byte, n)
	if q.Sign() >= 0 {
		q.FillBytes(be)
	} else {
		t := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), q)
		t.FillBytes(be)
	}
	for i := range be {
		buf = append(buf, be[n-1-i])
	}
	return buf, nil
}

// appendTwosComplementLE appends v in the fewest little-endian bytes that keep its sign.
func appendTwosComplementLE(buf []byte, v int64) []byte {
	for {
		b := byte(v)
		v >>= 8 // arithmetic shift keeps the sign
		if (v == 0 && b&0x80 == 0) || (v == -1 && b&0x80 != 0) {
			return append(buf, b)
		}
		buf = append(buf, b)
	}
}
