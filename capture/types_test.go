package capture_test

import (
	"bytes"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

// typeCase is one column type: its SQL, literal values, and the Go values
// (and schema type) a consumer must read back, through snapshot and stream.
type typeCase struct {
	name    string
	sqlType string
	setup   string // extra DDL (CREATE TYPE …), %s is the schema
	values  []string
	want    []any
	kind    stream.Kind
	check   func(t *testing.T, typ stream.Type)
}

func rat(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

var typeCases = []typeCase{
	{name: "numeric_scale", sqlType: "numeric(12,2)", values: []string{"0", "1234567890.12", "-0.01", "NULL"},
		want: []any{rat("0"), rat("1234567890.12"), rat("-0.01"), nil}, kind: stream.KindDecimal,
		check: func(t *testing.T, typ stream.Type) {
			if typ.Precision != 12 || typ.Scale != 2 {
				t.Errorf("numeric(12,2) became precision %d scale %d", typ.Precision, typ.Scale)
			}
		}},
	{name: "numeric_wide", sqlType: "numeric(38,10)", values: []string{"1234567890123456789012345678.0123456789"},
		want: []any{rat("1234567890123456789012345678.0123456789")}, kind: stream.KindDecimal},
	{name: "numeric_free", sqlType: "numeric", values: []string{"3.14159265358979323846264338327950288", "'NaN'", "1e-20"},
		want: []any{"3.14159265358979323846264338327950288", "NaN", "0.00000000000000000001"}, kind: stream.KindString},
	{name: "int2", sqlType: "smallint", values: []string{"-32768", "32767"}, want: []any{int64(-32768), int64(32767)}, kind: stream.KindInt},
	{name: "int4", sqlType: "integer", values: []string{"-2147483648", "7"}, want: []any{int64(-2147483648), int64(7)}, kind: stream.KindInt},
	{name: "int8", sqlType: "bigint", values: []string{"-9223372036854775808", "9223372036854775807"},
		want: []any{int64(-9223372036854775808), int64(9223372036854775807)}, kind: stream.KindInt},
	{name: "float8", sqlType: "double precision", values: []string{"0.1", "-1.5e300", "'Infinity'"},
		want: []any{0.1, -1.5e300, posInf()}, kind: stream.KindFloat},
	{name: "float4", sqlType: "real", values: []string{"0.1"}, want: []any{0.1}, kind: stream.KindFloat},
	{name: "bool", sqlType: "boolean", values: []string{"true", "false", "NULL"}, want: []any{true, false, nil}, kind: stream.KindBool},
	{name: "text", sqlType: "text", values: []string{"'héllo, \"wörld\"'", "''", "E'tab\\there\\nnewline'"},
		want: []any{"héllo, \"wörld\"", "", "tab\there\nnewline"}, kind: stream.KindString},
	{name: "varchar", sqlType: "varchar(20)", values: []string{"'abc'"}, want: []any{"abc"}, kind: stream.KindString},
	{name: "uuid", sqlType: "uuid", values: []string{"'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"},
		want: []any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}, kind: stream.KindUUID},
	{name: "jsonb", sqlType: "jsonb", values: []string{`'{"b": [1, 2.5, null], "a": "x"}'`},
		want: []any{`{"a": "x", "b": [1, 2.5, null]}`}, kind: stream.KindJSON},
	{name: "json", sqlType: "json", values: []string{`'{"b":1,  "a":2}'`}, want: []any{`{"b":1,  "a":2}`}, kind: stream.KindJSON},
	{name: "bytea", sqlType: "bytea", values: []string{`'\x00ff10'`, `''`}, want: []any{[]byte{0, 0xff, 0x10}, []byte{}}, kind: stream.KindBytes},
	{name: "date", sqlType: "date", values: []string{"'2024-02-29'", "'1969-07-20'", "'infinity'"},
		want: []any{ts("2024-02-29T00:00:00Z"), ts("1969-07-20T00:00:00Z"), ts("9999-12-31T00:00:00Z")}, kind: stream.KindDate},
	{name: "time", sqlType: "time", values: []string{"'13:45:06.123456'", "'00:00:00'"},
		want: []any{13*time.Hour + 45*time.Minute + 6*time.Second + 123456*time.Microsecond, time.Duration(0)}, kind: stream.KindTime},
	{name: "timestamp", sqlType: "timestamp", values: []string{"'2024-03-10 02:30:00.000001'"},
		want: []any{ts("2024-03-10T02:30:00.000001Z")}, kind: stream.KindTimestamp},
	{name: "timestamptz", sqlType: "timestamptz", values: []string{"'2024-03-10 02:30:00.5+05:30'", "'1900-01-01 00:00:00+00'"},
		want: []any{ts("2024-03-09T21:00:00.5Z"), ts("1900-01-01T00:00:00Z")}, kind: stream.KindTimestamp},
	{name: "enum", sqlType: "%s.mood", setup: "CREATE TYPE %s.mood AS ENUM ('sad', 'happy')", values: []string{"'happy'"},
		want: []any{"happy"}, kind: stream.KindString},
	{name: "domain", sqlType: "%s.price", setup: "CREATE DOMAIN %s.price AS numeric(8,3) CHECK (VALUE >= 0)", values: []string{"12.5"},
		want: []any{rat("12.5")}, kind: stream.KindDecimal},
	{name: "int_array", sqlType: "integer[]", values: []string{"'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'"},
		want: []any{[]any{int64(1), nil, int64(3)}, []any{}, []any{int64(1), int64(2), int64(3), int64(4)}}, kind: stream.KindArray,
		check: func(t *testing.T, typ stream.Type) {
			if typ.Elem == nil || typ.Elem.Kind != stream.KindInt {
				t.Errorf("integer[] element type %+v", typ.Elem)
			}
		}},
	{name: "text_array", sqlType: "text[]", values: []string{`ARRAY['a,b', 'say "hi"', 'NULL', NULL, '', ' x ']`},
		want: []any{[]any{"a,b", `say "hi"`, "NULL", nil, "", " x "}}, kind: stream.KindArray},
	{name: "numeric_array", sqlType: "numeric(6,2)[]", values: []string{"'{1.5,-2.25}'"}, want: []any{[]any{rat("1.5"), rat("-2.25")}}, kind: stream.KindArray},
	{name: "enum_array", sqlType: "%s.mood2[]", setup: "CREATE TYPE %s.mood2 AS ENUM ('sad', 'happy')", values: []string{"'{sad,happy}'"},
		want: []any{[]any{"sad", "happy"}}, kind: stream.KindArray},
	{name: "uuid_array", sqlType: "uuid[]", values: []string{"'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'"},
		want: []any{[]any{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}}, kind: stream.KindArray},
	{name: "timestamptz_array", sqlType: "timestamptz[]", values: []string{`'{"2024-01-01 00:00:00+00"}'`},
		want: []any{[]any{ts("2024-01-01T00:00:00Z")}}, kind: stream.KindArray},
}

func posInf() float64 { var z float64; return 1 / z }

// TestTypes: each type round-trips exactly, through the snapshot and through
// streaming (insert, then the update's new value), and the Avro schema keeps
// the kind, precision and scale.
func TestTypes(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	w, codecs := capturetest.NewWriter(t)
	cfg := capturetest.Config(t, schema)
	q := pgx.Identifier{schema}.Sanitize()
	for _, tc := range typeCases {
		if tc.setup != "" {
			exec(t, db, sprintf(tc.setup, q))
		}
		tbl := pgx.Identifier{schema, tc.name}.Sanitize()
		exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, v "+strings.ReplaceAll(tc.sqlType, "%s", q)+", step int)")
		for i, v := range tc.values {
			exec(t, db, sprintf("INSERT INTO %s VALUES (%d, %s, 0)", tbl, i, v)) // snapshot
		}
	}
	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 60*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})
	for _, tc := range typeCases {
		tbl := pgx.Identifier{schema, tc.name}.Sanitize()
		for i, v := range tc.values {
			exec(t, db, sprintf("INSERT INTO %s VALUES (%d, %s, 1)", tbl, 100+i, v))        // insert
			exec(t, db, sprintf("UPDATE %s SET v = %s, step = 2 WHERE id = %d", tbl, v, i)) // update
		}
	}
	fence := capturetest.Fence(t, db)
	for _, tc := range typeCases {
		t.Run(tc.name, func(t *testing.T) {
			recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, tc.name), codecs, fence, 60*time.Second)
			var got int
			for _, ev := range capturetest.Events(recs) {
				id := ev.After["id"].(int64)
				i := int(id % 100)
				want := tc.want[i]
				if !equalValue(ev.After["v"], want) {
					t.Errorf("%s id %d: got %#v (%T), want %#v", ev.Op, id, ev.After["v"], ev.After["v"], want)
				}
				got++
			}
			if got != 3*len(tc.values) {
				t.Errorf("%d events, want %d", got, 3*len(tc.values))
				for _, r := range recs {
					if r.Marker != 0 {
						t.Logf("p%d@%d marker %s", r.Partition, r.Offset, r.Marker)
					} else {
						t.Logf("p%d@%d %s %s id=%v", r.Partition, r.Offset, r.Event.Op, r.Event.Pos, r.Event.After["id"])
					}
				}
				t.Logf("fence %s", fence)
			}
			// The registered schema keeps the type.
			for _, r := range recs {
				if r.Marker != 0 {
					continue
				}
				typ := valueType(t, codecs, r, tc.name)
				if typ.Kind != tc.kind {
					t.Errorf("kind %s, want %s", typ.Kind, tc.kind)
				}
				if tc.check != nil {
					tc.check(t, typ)
				}
				break
			}
		})
	}
	if err := run.Stop(); err != nil {
		t.Fatal(err)
	}
}

func equalValue(got, want any) bool {
	switch w := want.(type) {
	case *big.Rat:
		g, ok := got.(*big.Rat)
		return ok && g.Cmp(w) == 0
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !equalValue(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}
