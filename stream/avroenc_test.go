package stream

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
)

// The hand-written encoder must write exactly what goavro writes. The
// reference below is the goavro path the writer used before: rows as maps of
// union maps, encoded by the compiled codec.

func goavroKey(t testing.TB, codecs *Codecs, tc *TableCodec, key map[string]any) ([]byte, error) {
	rec, err := goavroRow(tc, key, true)
	if err != nil {
		return nil, err
	}
	c, _ := codecs.Lookup(tc.KeyFP)
	return c.SingleFromNative(nil, rec)
}

func goavroValue(t testing.TB, codecs *Codecs, tc *TableCodec, ev *Event) ([]byte, error) {
	unchanged := make([]any, len(ev.Unchanged))
	for i, s := range ev.Unchanged {
		unchanged[i] = s
	}
	env := map[string]any{
		"op": string(ev.Op), "before": nil, "after": nil, "unchanged": unchanged,
		"lsn": int64(ev.Pos.LSN), "seq": int64(ev.Pos.Seq), "commit_time": ev.CommitTime.UTC(),
	}
	name := "starstream." + tc.Table.Schema + "." + tc.Table.Table + ".Row"
	for field, row := range map[string]map[string]any{"before": ev.Before, "after": ev.After} {
		if row == nil {
			continue
		}
		rec, err := goavroRow(tc, row, false)
		if err != nil {
			return nil, err
		}
		env[field] = goavro.Union(name, rec)
	}
	c, _ := codecs.Lookup(tc.ValueFP)
	return c.SingleFromNative(nil, env)
}

func goavroRow(tc *TableCodec, row map[string]any, keyOnly bool) (map[string]any, error) {
	rec := map[string]any{}
	for _, c := range tc.Table.Columns {
		if keyOnly && !c.Key {
			continue
		}
		v, err := goavroNative(c.Type, row[c.Name])
		if err != nil {
			return nil, err
		}
		if v == nil {
			rec[c.Name] = nil
			continue
		}
		rec[c.Name] = goavro.Union(unionBranch(c.Type), v)
	}
	return rec, nil
}

func goavroNative(t Type, v any) (any, error) {
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
			nv, err := goavroNative(*t.Elem, item)
			if err != nil {
				return nil, err
			}
			if nv != nil {
				nv = goavro.Union(unionBranch(*t.Elem), nv)
			}
			out[i] = nv
		}
		return out, nil
	default:
		if s, ok := v.(string); ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%T is not a %s value", v, t.Kind)
}

// allKinds is a table with a column of every kind, arrays of every kind
// (and of arrays), and a composite key of several kinds.
func allKinds() TableSchema {
	scalar := []Type{
		{Kind: KindBool}, {Kind: KindInt}, {Kind: KindFloat},
		{Kind: KindDecimal, Precision: 12, Scale: 2}, {Kind: KindDecimal, Precision: 38, Scale: 0},
		{Kind: KindDecimal, Precision: 38, Scale: 10}, {Kind: KindDecimal, Precision: 40, Scale: 25},
		{Kind: KindString}, {Kind: KindBytes}, {Kind: KindJSON}, {Kind: KindUUID},
		{Kind: KindDate}, {Kind: KindTime}, {Kind: KindTimestamp},
	}
	s := TableSchema{Schema: "shop", Table: "everything"}
	for i, typ := range scalar {
		s.Columns = append(s.Columns, Column{Name: fmt.Sprintf("c%d_%s", i, typ.Kind), Type: typ, Nullable: true,
			Key: typ.Kind == KindInt || typ.Kind == KindString || typ.Kind == KindDecimal || typ.Kind == KindTimestamp})
		elem := typ
		s.Columns = append(s.Columns, Column{Name: fmt.Sprintf("a%d_%s", i, typ.Kind),
			Type: Type{Kind: KindArray, Elem: &elem}, Nullable: true})
	}
	inner := Type{Kind: KindArray, Elem: &Type{Kind: KindDecimal, Precision: 9, Scale: 3}}
	s.Columns = append(s.Columns, Column{Name: "nested", Type: Type{Kind: KindArray, Elem: &inner}, Nullable: true})
	return s
}

// randomValue returns a value of t's kind, chosen to hit edge cases often:
// nil, zero, extremes, negative decimals and pre-1970 times.
func randomValue(r *rand.Rand, t Type) any {
	if r.IntN(8) == 0 {
		return nil
	}
	switch t.Kind {
	case KindBool:
		return r.IntN(2) == 0
	case KindInt:
		switch r.IntN(6) {
		case 0:
			return []int64{0, -1, 1, 63, 64, -64, -65, math.MaxInt64, math.MinInt64}[r.IntN(9)]
		case 1:
			return int(r.Int64() >> r.IntN(64))
		case 2:
			return int32(r.Uint32())
		case 3:
			return int16(r.Uint32())
		default:
			return r.Int64() >> r.IntN(64) * int64(1-2*r.IntN(2))
		}
	case KindFloat:
		switch r.IntN(5) {
		case 0:
			return []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, math.SmallestNonzeroFloat64}[r.IntN(7)]
		case 1:
			return float32(r.NormFloat64())
		default:
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		}
	case KindDecimal:
		return randomDecimal(r, t.Scale)
	case KindString, KindJSON, KindUUID:
		return randomString(r)
	case KindBytes:
		if r.IntN(6) == 0 {
			return []byte{}
		}
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case KindDate:
		days := r.IntN(200000) - 100000
		d := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
		if r.IntN(4) == 0 { // not midnight, not UTC: goavro truncates the seconds toward zero
			d = d.Add(time.Duration(r.Int64N(int64(24 * time.Hour)))).In(time.FixedZone("x", 3600*(r.IntN(27)-13)))
		}
		return d
	case KindTimestamp:
		switch r.IntN(6) {
		case 0:
			return []time.Time{{}, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
				time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(-1, 1)}[r.IntN(5)]
		default:
			return time.Unix(r.Int64N(1<<36)-1<<35, r.Int64N(1e9)).In(time.FixedZone("y", 60*(r.IntN(1000)-500)))
		}
	case KindTime:
		return time.Duration(r.Int64N(int64(24*time.Hour) + 1))
	case KindArray:
		n := r.IntN(6)
		if n == 5 {
			n = r.IntN(200)
		}
		items := make([]any, n)
		for i := range items {
			items[i] = randomValue(r, *t.Elem)
		}
		return items
	}
	panic(t.Kind)
}

func randomDecimal(r *rand.Rand, scale int) *big.Rat {
	switch r.IntN(6) {
	case 0: // boundaries of the two's complement length
		n := []int64{0, 1, -1, 127, 128, -128, -129, 255, 256, -256, 32767, 32768, -32768, -32769,
			math.MaxInt64, math.MinInt64, 1 << 55, -(1 << 55)}[r.IntN(18)]
		return new(big.Rat).SetFrac(big.NewInt(n), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	case 1: // larger than an int64
		n := new(big.Int).Lsh(big.NewInt(r.Int64()), uint(r.IntN(80)))
		if r.IntN(2) == 0 {
			n.Neg(n)
		}
		return new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(r.IntN(scale+1))), nil))
	case 2: // more fractional digits than the scale: goavro floors
		return big.NewRat(r.Int64N(1e12)-5e11, r.Int64N(1e6)+1)
	case 3: // an integer
		return new(big.Rat).SetInt64(r.Int64N(1e9) - 5e8)
	default: // what PostgreSQL sends: at most scale fractional digits
		s := r.IntN(min(scale, 18) + 1)
		return new(big.Rat).SetFrac64(r.Int64N(1e15)-5e14, int64(math.Pow10(s)))
	}
}

func randomString(r *rand.Rand) string {
	alphabet := []string{"a", "Z", "0", " ", "é", "漢", "🙂", "\x00", "\"", "\\", "\n"}
	var b strings.Builder
	for n := r.IntN(40); n > 0; n-- {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func randomRow(r *rand.Rand, s TableSchema) map[string]any {
	row := map[string]any{}
	for _, c := range s.Columns {
		if r.IntN(20) == 0 {
			continue // absent: NULL (an unchanged TOAST column)
		}
		row[c.Name] = randomValue(r, c.Type)
	}
	return row
}

func TestEncoderMatchesGoavro(t *testing.T) {
	t.Parallel()
	for _, s := range []TableSchema{testSchema(), allKinds()} {
		codecs := NewCodecs()
		tc, err := NewTableCodec(codecs, s)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, uint64(len(s.Columns))))
		for i := 0; i < 3000; i++ {
			ev := Event{Schema: s.Schema, Table: s.Table, Op: []Op{OpInsert, OpUpdate, OpDelete, OpSnapshot, OpTruncate}[r.IntN(5)],
				Pos: Position{LSN: LSN(r.Uint64() >> r.IntN(64)), Seq: r.Uint64() >> r.IntN(64)}}
			if ct, ok := randomValue(r, Type{Kind: KindTimestamp}).(time.Time); ok {
				ev.CommitTime = ct
			}
			if r.IntN(3) > 0 {
				ev.After = randomRow(r, s)
			}
			if r.IntN(3) == 0 {
				ev.Before = randomRow(r, s)
			}
			for _, c := range s.Columns {
				if r.IntN(15) == 0 {
					ev.Unchanged = append(ev.Unchanged, c.Name)
				}
			}
			ev.Key = randomRow(r, s)

			want, werr := goavroValue(t, codecs, tc, &ev)
			got, gerr := tc.EncodeValue(&ev)
			if werr != nil || gerr != nil {
				t.Fatalf("%s event %d: goavro err %v, encoder err %v", s.Table, i, werr, gerr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s event %d: value differs\n got %x\nwant %x\nevent %+v", s.Table, i, got, want, ev)
			}
			wantK, werr := goavroKey(t, codecs, tc, ev.Key)
			gotK, gerr := tc.EncodeKey(&ev)
			if werr != nil || gerr != nil {
				t.Fatalf("%s key %d: goavro err %v, encoder err %v", s.Table, i, werr, gerr)
			}
			if !bytes.Equal(gotK, wantK) {
				t.Fatalf("%s key %d: differs\n got %x\nwant %x\nkey %v", s.Table, i, gotK, wantK, ev.Key)
			}
			// And goavro reads it back.
			if _, err := codecs.DecodeEvent(got); err != nil {
				t.Fatalf("%s event %d: decode: %v", s.Table, i, err)
			}
		}
	}
}

// Appending after other bytes writes the same record: the writer packs many
// records into one buffer.
func TestEncoderAppends(t *testing.T) {
	t.Parallel()
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, testSchema())
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Op: OpInsert, After: map[string]any{"product_id": int64(7), "price": big.NewRat(-12345, 100)},
		Key: map[string]any{"product_id": int64(7)}, Pos: Position{LSN: 99, Seq: 1}, CommitTime: time.Unix(1e9, 0)}
	alone, _ := tc.EncodeValue(&ev)
	buf, err := tc.AppendValue([]byte("prefix"), &ev)
	if err != nil || !bytes.Equal(buf[6:], alone) {
		t.Fatalf("append: %x vs %x (%v)", buf[6:], alone, err)
	}
}

func TestEncoderRejectsWrongTypes(t *testing.T) {
	t.Parallel()
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, allKinds())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tc.Table.Columns {
		wrong := any(struct{}{})
		ev := Event{Op: OpInsert, After: map[string]any{c.Name: wrong}}
		buf, err := tc.AppendValue([]byte("keep"), &ev)
		if err == nil || !strings.Contains(err.Error(), c.Name) || string(buf) != "keep" {
			t.Errorf("%s: err %v, buf %q", c.Name, err, buf)
		}
		if _, gerr := goavroValue(t, codecs, tc, &ev); gerr == nil {
			t.Errorf("%s: goavro accepted %T", c.Name, wrong)
		}
	}
	if _, err := tc.EncodeValue(&Event{After: map[string]any{"c3_decimal": (*big.Rat)(nil)}}); err == nil {
		t.Error("nil *big.Rat accepted")
	}
}
