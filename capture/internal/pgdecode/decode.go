package pgdecode

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Decoder turns one non-NULL value in PostgreSQL text format into its Go value.
// The input may be reused by the caller after the call: decoders copy.
type Decoder func(text []byte) (any, error)

// ErrNotANumber marks a numeric NaN or ±Infinity, which a decimal cannot hold.
var ErrNotANumber = errors.New("numeric value is not a finite number")

// Infinite dates and timestamps have no time.Time; they map to the ends of the
// range Avro and BigQuery can hold.
var (
	PosInfinity = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	NegInfinity = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
)

func decodeBool(b []byte) (any, error) {
	if len(b) == 1 && (b[0] == 't' || b[0] == 'f') {
		return b[0] == 't', nil
	}
	return nil, fmt.Errorf("bad boolean %q", b)
}

func decodeInt(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func decodeFloat(b []byte) (any, error) {
	// PostgreSQL writes NaN, Infinity and -Infinity; ParseFloat reads all three.
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return f, nil
		}
		return nil, err
	}
	return f, nil
}

var pow10 = func() [19]int64 {
	var p [19]int64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

func decodeDecimal(b []byte) (any, error) {
	switch string(b) {
	case "NaN", "Infinity", "-Infinity":
		return nil, ErrNotANumber
	}
	// Fast path for up to 18 digits ("-1234.56"): an int64 mantissa over a
	// power of ten, about twice as fast as parsing into a Rat.
	if len(b) <= 19 {
		var m int64
		neg, digits, scale, dot := false, 0, 0, false
		ok := true
		for i, c := range b {
			switch {
			case c >= '0' && c <= '9':
				m = m*10 + int64(c-'0')
				digits++
				if dot {
					scale++
				}
			case c == '.' && !dot:
				dot = true
			case c == '-' && i == 0:
				neg = true
			default:
				ok = false
			}
		}
		if ok && digits > 0 && digits <= 18 {
			return ratio(m, scale, neg), nil
		}
	}
	r, ok := new(big.Rat).SetString(string(b))
	if !ok {
		return nil, fmt.Errorf("bad numeric %q", b)
	}
	return r, nil
}

// ratio returns ±m / 10^scale. SetFrac64 would reduce the fraction with a
// general GCD (most of a decimal's decoding time); the only common factors
// of m and a power of ten are twos and fives, so they are divided out here
// and the already reduced fraction set through the Rat's own numerator and
// denominator, which Num and Denom document as references.
func ratio(m int64, scale int, neg bool) *big.Rat {
	twos, fives := scale, scale
	if m == 0 {
		twos, fives = 0, 0
	}
	for twos > 0 && m&1 == 0 {
		m >>= 1
		twos--
	}
	for fives > 0 && m%5 == 0 {
		m /= 5
		fives--
	}
	if neg {
		m = -m
	}
	r := new(big.Rat).SetInt64(m)
	if twos > 0 || fives > 0 {
		d := pow5[fives] << twos
		if r.Denom().SetInt64(d); r.Denom().Int64() != d { // not a reference after all
			r.SetFrac64(m, d)
		}
	}
	return r
}

// pow5[i] is 5^i; with the twos of 10^18 shifted in it still fits an int64.
var pow5 = func() [19]int64 {
	var p [19]int64
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 5
	}
	return p
}()

func decodeString(b []byte) (any, error) { return string(b), nil }

func decodeBytea(b []byte) (any, error) {
	if len(b) < 2 || b[0] != '\\' || b[1] != 'x' {
		return nil, fmt.Errorf("bytea is not in hex format (set bytea_output=hex)")
	}
	out := make([]byte, hex.DecodedLen(len(b)-2))
	if _, err := hex.Decode(out, b[2:]); err != nil {
		return nil, fmt.Errorf("bad bytea: %w", err)
	}
	return out, nil
}

func infinity(m pgtype.InfinityModifier) (time.Time, bool) {
	switch m {
	case pgtype.Infinity:
		return PosInfinity, true
	case pgtype.NegativeInfinity:
		return NegInfinity, true
	}
	return time.Time{}, false
}

func decodeDate(b []byte) (any, error) {
	var d pgtype.Date
	if err := d.Scan(string(b)); err != nil {
		return nil, err
	}
	if t, ok := infinity(d.InfinityModifier); ok {
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
	}
	t := d.Time
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
}

func decodeTime(b []byte) (any, error) {
	var t pgtype.Time
	if err := t.Scan(string(b)); err != nil {
		return nil, err
	}
	return time.Duration(t.Microseconds) * time.Microsecond, nil
}

func decodeTimestamp(b []byte) (any, error) {
	var ts pgtype.Timestamp
	if err := ts.Scan(string(b)); err != nil {
		return nil, err
	}
	if t, ok := infinity(ts.InfinityModifier); ok {
		return t, nil
	}
	// A timestamp without time zone is read as UTC wall-clock time.
	t := ts.Time
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC), nil
}

func decodeTimestamptz(b []byte) (any, error) {
	var ts pgtype.Timestamptz
	if err := ts.Scan(string(b)); err != nil {
		return nil, err
	}
	if t, ok := infinity(ts.InfinityModifier); ok {
		return t, nil
	}
	return ts.Time.UTC(), nil
}

// arrayDecoder reads the array text form ({a,"b c",NULL}); multidimensional
// arrays are flattened in row-major order, and a lower-bound prefix
// ([0:2]={…}) is ignored.
func arrayDecoder(elem Decoder, delim byte) Decoder {
	return func(b []byte) (any, error) {
		items, err := splitArray(b, delim)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(items))
		for i, it := range items {
			if it == nil {
				continue
			}
			v, err := elem(it)
			if err != nil {
				if errors.Is(err, ErrNotANumber) {
					continue
				}
				return nil, fmt.Errorf("array element %d: %w", i, err)
			}
			out[i] = v
		}
		return out, nil
	}
}

// splitArray returns the elements of an array literal; nil stands for NULL.
func splitArray(b []byte, delim byte) ([][]byte, error) {
	if len(b) > 0 && b[0] == '[' {
		i := 0
		for i < len(b) && b[i] != '=' {
			i++
		}
		if i == len(b) {
			return nil, fmt.Errorf("bad array %q", b)
		}
		b = b[i+1:]
	}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("bad array %q", b)
	}
	var items [][]byte
	i := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '{' || c == '}' || c == delim || c == ' ':
			i++
		case c == '"':
			var buf []byte
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' && i+1 < len(b) {
					i++
				}
				buf = append(buf, b[i])
				i++
			}
			if i == len(b) {
				return nil, fmt.Errorf("bad array %q: unterminated quote", b)
			}
			i++
			if buf == nil {
				buf = []byte{}
			}
			items = append(items, buf)
		default:
			start := i
			for i < len(b) && b[i] != delim && b[i] != '}' {
				i++
			}
			tok := b[start:i]
			if string(tok) == "NULL" {
				items = append(items, nil)
			} else {
				items = append(items, append([]byte{}, tok...))
			}
		}
	}
	return items, nil
}
