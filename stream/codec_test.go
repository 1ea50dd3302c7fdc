package stream

import (
	"errors"
	"math/big"
	"reflect"
	"testing"
	"time"
)

func testSchema() TableSchema {
	elem := Type{Kind: KindString}
	return TableSchema{Schema: "shop", Table: "products", Columns: []Column{
		{Name: "product_id", Type: Type{Kind: KindInt}, Key: true},
		{Name: "price", Type: Type{Kind: KindDecimal, Precision: 12, Scale: 2}, Nullable: true},
		{Name: "name", Type: Type{Kind: KindString}, Nullable: true},
		{Name: "active", Type: Type{Kind: KindBool}, Nullable: true},
		{Name: "ratio", Type: Type{Kind: KindFloat}, Nullable: true},
		{Name: "thumb", Type: Type{Kind: KindBytes}, Nullable: true},
		{Name: "session", Type: Type{Kind: KindUUID}, Nullable: true},
		{Name: "attrs", Type: Type{Kind: KindJSON}, Nullable: true},
		{Name: "day", Type: Type{Kind: KindDate}, Nullable: true},
		{Name: "at", Type: Type{Kind: KindTime}, Nullable: true},
		{Name: "ts", Type: Type{Kind: KindTimestamp}, Nullable: true},
		{Name: "tags", Type: Type{Kind: KindArray, Elem: &elem}, Nullable: true},
		{Name: "description", Type: Type{Kind: KindString}, Nullable: true},
	}}
}

func TestEventRoundTrip(t *testing.T) {
	t.Parallel()
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, testSchema())
	if err != nil {
		t.Fatal(err)
	}
	after := map[string]any{
		"product_id": int64(7), "price": big.NewRat(12345, 100), "name": "lamp", "active": true,
		"ratio": 0.25, "thumb": []byte{0, 1, 2}, "session": "0b5e3c7e-4a53-4a8e-9d2f-3f0c8f6b1a11",
		"attrs": `{"color":"red"}`, "day": time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		"at": 9*time.Hour + 30*time.Minute, "ts": time.Date(2026, 11, 26, 21, 0, 0, 123000, time.UTC),
		"tags": []any{"a", nil, "b"}, "description": nil,
	}
	ev := Event{Schema: "shop", Table: "products", Op: OpUpdate, Key: map[string]any{"product_id": int64(7)},
		After: after, Unchanged: []string{"description"}, Pos: Position{LSN: 0x16B374D848, Seq: 3},
		CommitTime: time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)}
	val, err := tc.EncodeValue(&ev)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tc.EncodeKey(&ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := codecs.DecodeEvent(val)
	if err != nil {
		t.Fatal(err)
	}
	if got.Fingerprint != tc.ValueFP {
		t.Fatalf("fingerprint %x, want %x", got.Fingerprint, tc.ValueFP)
	}
	g := got.Event
	if g.Schema != "shop" || g.Table != "products" || g.Op != OpUpdate || g.Pos != ev.Pos || !g.CommitTime.Equal(ev.CommitTime) {
		t.Fatalf("envelope mismatch: %+v", g)
	}
	if !reflect.DeepEqual(g.Unchanged, []string{"description"}) || g.Before != nil {
		t.Fatalf("unchanged %v before %v", g.Unchanged, g.Before)
	}
	for k, want := range after {
		have := g.After[k]
		switch w := want.(type) {
		case *big.Rat:
			if h, ok := have.(*big.Rat); !ok || h.Cmp(w) != 0 {
				t.Errorf("%s: got %v want %v", k, have, want)
			}
		case time.Time:
			if h, ok := have.(time.Time); !ok || !h.Equal(w) {
				t.Errorf("%s: got %v want %v", k, have, want)
			}
		default:
			if !reflect.DeepEqual(have, want) {
				t.Errorf("%s: got %#v want %#v", k, have, want)
			}
		}
	}
	k, err := codecs.DecodeKey(key)
	if err != nil || !reflect.DeepEqual(k, map[string]any{"product_id": int64(7)}) {
		t.Fatalf("key %v %v", k, err)
	}
}

func TestDecodePoison(t *testing.T) {
	t.Parallel()
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, testSchema())
	if err != nil {
		t.Fatal(err)
	}
	good, err := tc.EncodeValue(&Event{Op: OpTruncate, Pos: Position{LSN: 1}})
	if err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte{}, good...)
	unknown[2] ^= 0xff
	for name, tt := range map[string]struct {
		buf  []byte
		want error
	}{
		"not avro":  {[]byte("hello"), ErrPoison},
		"unknown":   {unknown, ErrUnknownSchema},
		"truncated": {good[:12], ErrPoison},
	} {
		if _, err := codecs.DecodeEvent(tt.buf); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", name, err, tt.want)
		}
	}
}

func TestPositionOrder(t *testing.T) {
	t.Parallel()
	a := Position{LSN: 10, Seq: 5}
	b := Position{LSN: 11, Seq: 0}
	if !a.Less(b) || b.Less(a) || a.Compare(a) != 0 {
		t.Fatal("order")
	}
	l, err := ParseLSN("16/B374D848")
	if err != nil || l.String() != "16/B374D848" {
		t.Fatalf("%v %v", l, err)
	}
	if got := (Position{LSN: 0x1ff, Seq: 10}).ChangeSequence(); got != "1ff/a" {
		t.Fatal(got)
	}
}
