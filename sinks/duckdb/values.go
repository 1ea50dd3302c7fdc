package duckdb

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/starstream/starstream/sinks"
)

// numericScale and numericLimit bound NUMERIC as DECIMAL(38,9): at most 29
// digits before the point, 9 after.
const numericScale = 9

var (
	numericFactor = new(big.Int).Exp(big.NewInt(10), big.NewInt(numericScale), nil)
	numericLimit  = new(big.Int).Exp(big.NewInt(10), big.NewInt(38), nil)
)

// convert checks value v of column c and returns what the staging Appender takes
// for it, or a reason to refuse the row. Typed nils (*big.Rat, []byte) are NULL.
func convert(c column, v any) (driver.Value, string) {
	switch c.typ {
	case sinks.String:
		if s, ok := v.(string); ok {
			if !utf8.ValidString(s) {
				return nil, fmt.Sprintf("column %s: string is not valid UTF-8", c.name)
			}
			return s, ""
		}
	case sinks.Int64:
		if n, ok := v.(int64); ok {
			return n, ""
		}
	case sinks.Float64:
		if f, ok := v.(float64); ok {
			return f, ""
		}
	case sinks.Bool:
		if b, ok := v.(bool); ok {
			return b, ""
		}
	case sinks.Numeric:
		if r, ok := v.(*big.Rat); ok {
			if r == nil {
				return nil, ""
			}
			if n, ok := scaleNumericInt64(r); ok {
				return n, "" // the common case, without big.Int arithmetic
			}
			scaled, ok := scaleNumeric(r)
			if !ok {
				return nil, fmt.Sprintf("column %s: NUMERIC %s exceeds 29 digits before the point", c.name, r.FloatString(numericScale))
			}
			return scaled, ""
		}
	case sinks.Timestamp:
		if ts, ok := v.(time.Time); ok {
			if y := ts.UTC().Year(); y < 1 || y > 9999 {
				return nil, fmt.Sprintf("column %s: TIMESTAMP %v outside years 1 to 9999", c.name, ts)
			}
			return ts, ""
		}
	case sinks.Date:
		if d, ok := v.(time.Time); ok {
			// The calendar date the value names, in its own location: the driver
			// would otherwise take the UTC day of the instant.
			y, m, day := d.Date()
			if y < 1 || y > 9999 {
				return nil, fmt.Sprintf("column %s: DATE %v outside years 1 to 9999", c.name, d)
			}
			return time.Date(y, m, day, 0, 0, 0, 0, time.UTC), ""
		}
	case sinks.JSON:
		if s, ok := v.(string); ok {
			if !utf8.ValidString(s) || !json.Valid([]byte(s)) {
				return nil, fmt.Sprintf("column %s: not valid JSON text", c.name)
			}
			// Staged as VARCHAR: the Appender would json.Marshal a value bound for a
			// JSON column, turning the text into a JSON string literal.
			return s, ""
		}
	case sinks.Bytes:
		if b, ok := v.([]byte); ok {
			if b == nil {
				return nil, ""
			}
			return b, ""
		}
	}
	return nil, fmt.Sprintf("column %s: Go type %T does not fit %s", c.name, v, c.typ)
}

// scaleNumeric returns r·10⁹ rounded half away from zero (as BigQuery rounds
// NUMERIC), the unscaled form of DECIMAL(38,9), and whether it fits 38 digits.
func scaleNumeric(r *big.Rat) (*big.Int, bool) {
	num := new(big.Int).Mul(r.Num(), numericFactor)
	q, rem := new(big.Int).QuoRem(num, r.Denom(), new(big.Int))
	if rem.Sign() != 0 {
		twice := new(big.Int).Abs(rem)
		twice.Lsh(twice, 1)
		if twice.Cmp(r.Denom()) >= 0 {
			if num.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			} else {
				q.Add(q, big.NewInt(1))
			}
		}
	}
	return q, new(big.Int).Abs(q).Cmp(numericLimit) < 0
}

// scaleNumericInt64 is scaleNumeric for values whose scaled form fits an int64
// exactly (denominator dividing 10⁹): most prices and amounts.
func scaleNumericInt64(r *big.Rat) (int64, bool) {
	if !r.Num().IsInt64() || !r.Denom().IsInt64() {
		return 0, false
	}
	num, den := r.Num().Int64(), r.Denom().Int64()
	const factor = 1_000_000_000
	if factor%den != 0 {
		return 0, false
	}
	mul := factor / den
	const limit = 1 << 62 / factor // stay well inside int64 (|num·mul| < 2⁶²)
	if num > limit || num < -limit {
		return 0, false
	}
	return num * mul, true
}

// ratFromDecimal turns a DECIMAL read back (unscaled value and scale) into a *big.Rat.
func ratFromDecimal(unscaled *big.Int, scale uint8) *big.Rat {
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	return new(big.Rat).SetFrac(unscaled, den)
}

// isNull reports whether v is NULL: nil, or a typed nil a Row may carry.
func isNull(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case *big.Rat:
		return x == nil
	case []byte:
		return x == nil
	}
	return false
}

// stageRows validates rows against the table and converts the accepted ones into
// one flat slice of Appender values, tb.stageWidth() per row, keeping only the
// newest version of each key (ties: the later row): the merge then needs no
// window over the staging table, which cost it a third of its time. Deletes
// keep only their key: the rest of a tombstone is never read.
func (tb *table) stageRows(rows []sinks.Row) (vals []driver.Value, n int, rowErrs []sinks.RowError) {
	width := tb.stageWidth()
	vals = make([]driver.Value, 0, len(rows)*width)
	type version struct {
		at  int // offset in vals
		pos sinks.Position
	}
	newest := make(map[any]version, len(rows))
	var lastLSN uint64
	var boxedLSN driver.Value = uint64(0)
	var keyBuf []byte
	for i, r := range rows {
		start := len(vals)
		var reason string
		vals, reason = tb.appendRow(vals, r)
		if reason != "" {
			rowErrs = append(rowErrs, sinks.RowError{Index: i, Reason: reason})
			vals = vals[:start]
			continue
		}
		// Rows of one transaction share an LSN: box it once, not per row.
		if r.Pos.LSN != lastLSN {
			lastLSN, boxedLSN = r.Pos.LSN, r.Pos.LSN
		}
		vals = append(vals, boxedLSN, r.Pos.Seq, r.Op == sinks.Delete)

		var k any
		k, keyBuf = tb.keyOf(vals[start:], keyBuf)
		if old, dup := newest[k]; dup {
			if !r.Pos.Less(old.pos) {
				copy(vals[old.at:old.at+width], vals[start:])
				newest[k] = version{old.at, r.Pos}
			}
			vals = vals[:start]
			continue
		}
		newest[k] = version{start, r.Pos}
		n++
	}
	return vals, n, rowErrs
}

// keyOf returns a comparable form of a staged row's key: the value itself for a
// one-column key, an encoding of all parts otherwise (buf is reused scratch).
func (tb *table) keyOf(row []driver.Value, buf []byte) (any, []byte) {
	if len(tb.keyIdx) == 1 {
		switch v := row[tb.keyIdx[0]].(type) {
		case int64, string, bool, float64:
			return v, buf
		}
	}
	buf = buf[:0]
	for _, i := range tb.keyIdx {
		switch v := row[i].(type) {
		case int64:
			buf = strconv.AppendInt(append(buf, 'i'), v, 10)
		case string:
			buf = append(strconv.AppendInt(append(buf, 's'), int64(len(v)), 10), ':')
			buf = append(buf, v...)
		case []byte:
			buf = append(strconv.AppendInt(append(buf, 'b'), int64(len(v)), 10), ':')
			buf = append(buf, v...)
		case bool:
			buf = strconv.AppendBool(append(buf, 'B'), v)
		case float64:
			buf = strconv.AppendFloat(append(buf, 'f'), v, 'g', -1, 64)
		case time.Time:
			buf = strconv.AppendInt(append(buf, 't'), v.UnixMicro(), 10)
		case *big.Int:
			buf = v.Append(append(buf, 'n'), 10)
		default:
			buf = fmt.Appendf(append(buf, '?'), "%v", v)
		}
		buf = append(buf, 0)
	}
	return string(buf), buf
}

// appendRow appends the user column values of r, or returns why r is refused.
func (tb *table) appendRow(vals []driver.Value, r sinks.Row) ([]driver.Value, string) {
	if r.Op != sinks.Upsert && r.Op != sinks.Delete {
		return vals, fmt.Sprintf("unknown op %d", r.Op)
	}
	found := 0
	for _, c := range tb.cols {
		v, ok := r.Values[c.name]
		if ok {
			found++
		}
		if r.Op == sinks.Delete && !c.key {
			vals = append(vals, nil)
			continue
		}
		if isNull(v) {
			if !c.nullable {
				return vals, "NULL in NOT NULL column " + c.name
			}
			vals = append(vals, nil)
			continue
		}
		dv, reason := convert(c, v)
		if reason != "" {
			return vals, reason
		}
		vals = append(vals, dv)
	}
	// A Delete may carry a whole before-image: only its key matters.
	if found != len(r.Values) && r.Op == sinks.Upsert {
		for name := range r.Values {
			if _, ok := tb.byName[name]; !ok {
				return vals, "unknown column " + name
			}
		}
	}
	return vals, ""
}
