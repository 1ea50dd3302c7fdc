package stream

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"time"
)

// The writer encodes Avro binary itself instead of through goavro: goavro
// needs every row as a map of union maps ({"long": 7}) and a big.Int
// division per decimal, which made encoding half of capture's CPU and most of
// its garbage. The encoder below is compiled once per table version and
// appends straight into the caller's buffer. It writes exactly the bytes
// goavro writes for the same schema and values (avroenc_test.go compares the
// two for every column kind); decoding still goes through goavro.

// soeMagic starts an Avro single-object encoding, followed by the writer
// schema's Rabin fingerprint, little endian.
var soeMagic = [2]byte{0xC3, 0x01}

func appendSOEHeader(buf []byte, fp uint64) []byte {
	buf = append(buf, soeMagic[0], soeMagic[1])
	return binary.LittleEndian.AppendUint64(buf, fp)
}

// appendHeader appends the Confluent wire format header (magic byte 0, schema
// id big endian) when the schema has a registry id, else the single-object one.
func appendHeader(buf []byte, id int, fp uint64) []byte {
	if id > 0 {
		return binary.BigEndian.AppendUint32(append(buf, confluentMagic), uint32(id))
	}
	return appendSOEHeader(buf, fp)
}

// appendLong appends an Avro long: zig-zag, then base-128 varint.
func appendLong(buf []byte, v int64) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

func appendString(buf []byte, s string) []byte {
	return append(appendLong(buf, int64(len(s))), s...)
}

func appendBytes(buf []byte, b []byte) []byte {
	return append(appendLong(buf, int64(len(b))), b...)
}

// appendTimestampMicros is goavro's timestamp-micros conversion, overflow
// included.
func appendTimestampMicros(buf []byte, t time.Time) []byte {
	return appendLong(buf, t.Unix()*1e6+int64(t.Nanosecond()/1e3))
}

// column is one field of a Row or Key record: a union of null and the column's type.
type column struct {
	name string
	typ  Type
	dec  *decimalScale // decimals only
}

type decimalScale struct {
	pow    int64    // 10^scale when it fits (scale <= 18), else 0
	bigPow *big.Int // 10^scale
}

func compileColumns(s TableSchema, keyOnly bool) []column {
	var cols []column
	for _, c := range s.Columns {
		if keyOnly && !c.Key {
			continue
		}
		cols = append(cols, column{name: c.Name, typ: c.Type, dec: compileDecimal(c.Type)})
	}
	return cols
}

func compileDecimal(t Type) *decimalScale {
	switch t.Kind {
	case KindDecimal:
		d := &decimalScale{bigPow: new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.Scale)), nil)}
		if t.Scale <= 18 {
			d.pow = d.bigPow.Int64()
		}
		return d
	case KindArray:
		return compileDecimal(*t.Elem)
	}
	return nil
}

// appendRecord appends a Row (or Key) record of row's values; a column absent
// from row is NULL.
func appendRecord(buf []byte, cols []column, row map[string]any) ([]byte, error) {
	for i := range cols {
		c := &cols[i]
		var err error
		if buf, err = appendUnion(buf, &c.typ, c.dec, row[c.name]); err != nil {
			return buf, fmt.Errorf("column %s: %w", c.name, err)
		}
	}
	return buf, nil
}

// appendUnion appends a ["null", T] union: branch 0 for nil, else branch 1 and the value.
func appendUnion(buf []byte, t *Type, dec *decimalScale, v any) ([]byte, error) {
	if v == nil {
		return append(buf, 0), nil // zig-zag 0: the null branch
	}
	return appendValue(append(buf, 2), t, dec, v) // zig-zag 1
}

// appendValue appends a non-nil value of a column's kind; it accepts the Go
// types the Event contract names for the kind (see Kind), as the goavro
// path did.
func appendValue(buf []byte, t *Type, dec *decimalScale, v any) ([]byte, error) {
	switch t.Kind {
	case KindInt:
		switch n := v.(type) {
		case int64:
			return appendLong(buf, n), nil
		case int:
			return appendLong(buf, int64(n)), nil
		case int32:
			return appendLong(buf, int64(n)), nil
		case int16:
			return appendLong(buf, int64(n)), nil
		}
	case KindFloat:
		switch n := v.(type) {
		case float64:
			return binary.LittleEndian.AppendUint64(buf, math.Float64bits(n)), nil
		case float32:
			return binary.LittleEndian.AppendUint64(buf, math.Float64bits(float64(n))), nil
		}
	case KindDecimal:
		if r, ok := v.(*big.Rat); ok && r != nil {
			return appendDecimal(buf, r, dec), nil
		}
	case KindDate:
		if tm, ok := v.(time.Time); ok {
			days := tm.Unix() / 86400 // goavro truncates toward zero
			if days != int64(int32(days)) {
				return buf, fmt.Errorf("%w: date %s out of the range of an Avro date", ErrBadSchema, tm)
			}
			return appendLong(buf, days), nil
		}
	case KindTimestamp:
		if tm, ok := v.(time.Time); ok {
			return appendTimestampMicros(buf, tm), nil
		}
	case KindTime:
		if d, ok := v.(time.Duration); ok {
			return appendLong(buf, d.Nanoseconds()/int64(time.Microsecond)), nil
		}
	case KindBool:
		if b, ok := v.(bool); ok {
			if b {
				return append(buf, 1), nil
			}
			return append(buf, 0), nil
		}
	case KindBytes:
		if b, ok := v.([]byte); ok {
			return appendBytes(buf, b), nil
		}
	case KindArray:
		items, ok := v.([]any)
		if !ok {
			break
		}
		// One block of every item, then the empty block that ends the array.
		if len(items) > 0 {
			buf = appendLong(buf, int64(len(items)))
			for i, item := range items {
				var err error
				if buf, err = appendUnion(buf, t.Elem, dec, item); err != nil {
					return buf, fmt.Errorf("element %d: %w", i, err)
				}
			}
		}
		return append(buf, 0), nil
	default: // string, json, uuid
		if s, ok := v.(string); ok {
			return appendString(buf, s), nil
		}
	}
	return buf, fmt.Errorf("%w: %T is not a %s value", ErrBadSchema, v, t.Kind)
}

// appendDecimal appends a bytes.decimal: the unscaled value
// floor(r × 10^scale) in minimal big-endian two's complement (0 is one zero
// byte), as goavro does.
func appendDecimal(buf []byte, r *big.Rat, dec *decimalScale) []byte {
	if q, ok := unscaled64(r, dec.pow); ok {
		return appendTwosComplement64(buf, q)
	}
	i := new(big.Int).Mul(r.Num(), dec.bigPow)
	i.Div(i, r.Denom()) // Euclidean: floor, the denominator being positive
	return appendBytes(buf, twosComplement(i))
}

// unscaled64 returns r × pow when that is an integer that fits in an int64:
// always so for a value with no more fractional digits than the scale
// (its reduced denominator divides 10^scale).
func unscaled64(r *big.Rat, pow int64) (int64, bool) {
	if pow == 0 || !r.Num().IsInt64() {
		return 0, false
	}
	num := r.Num().Int64()
	mul := pow
	if !r.IsInt() {
		den := r.Denom()
		if !den.IsInt64() {
			return 0, false
		}
		d := den.Int64()
		if pow%d != 0 {
			return 0, false
		}
		mul = pow / d
	}
	hi, lo := bits.Mul64(uint64(absInt64(num)), uint64(mul))
	if hi != 0 || lo > math.MaxInt64 || num == math.MinInt64 {
		return 0, false
	}
	if num < 0 {
		return -int64(lo), true
	}
	return int64(lo), true
}

func absInt64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func appendTwosComplement64(buf []byte, q int64) []byte {
	// Bits needed: the magnitude's (of q, or of -q-1 when negative) plus a sign bit.
	m := uint64(q)
	if q < 0 {
		m = ^m
	}
	n := (bits.Len64(m) + 8) / 8
	buf = appendLong(buf, int64(n))
	for i := n - 1; i >= 0; i-- {
		buf = append(buf, byte(uint64(q)>>(8*i)))
	}
	return buf
}

var bigOne = big.NewInt(1)

// twosComplement is goavro's toSignedBytes: minimal big-endian two's complement.
func twosComplement(n *big.Int) []byte {
	switch n.Sign() {
	case 0:
		return []byte{0}
	case 1:
		b := n.Bytes()
		if b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	default:
		length := uint(n.BitLen()/8+1) * 8
		b := new(big.Int).Add(n, new(big.Int).Lsh(bigOne, length)).Bytes()
		if len(b) >= 2 && b[0] == 0xff && b[1]&0x80 != 0 {
			b = b[1:]
		}
		return b
	}
}

// appendEnvelope appends the Envelope record of an event (without the
// single-object header).
func (tc *TableCodec) appendEnvelope(buf []byte, ev *Event) ([]byte, error) {
	buf = appendString(buf, string(ev.Op))
	for _, side := range [2]struct {
		name string
		row  map[string]any
	}{{"before", ev.Before}, {"after", ev.After}} {
		if side.row == nil {
			buf = append(buf, 0)
			continue
		}
		var err error
		if buf, err = appendRecord(append(buf, 2), tc.rowCols, side.row); err != nil {
			return buf, fmt.Errorf("encode %s of %s.%s: %w", side.name, tc.Table.Schema, tc.Table.Table, err)
		}
	}
	if len(ev.Unchanged) > 0 {
		buf = appendLong(buf, int64(len(ev.Unchanged)))
		for _, s := range ev.Unchanged {
			buf = appendString(buf, s)
		}
	}
	buf = append(buf, 0)
	buf = appendLong(buf, int64(ev.Pos.LSN))
	buf = appendLong(buf, int64(ev.Pos.Seq))
	return appendTimestampMicros(buf, ev.CommitTime), nil
}
