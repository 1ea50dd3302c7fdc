package stream

import (
	"math/big"
	"testing"
	"time"
)

// The order_items row of bench-capture, encoded by goavro (the writer's former
// path) and by the compiled encoder.
//
//	go test ./stream -run '^$' -bench Encode -benchmem
func BenchmarkEncode(b *testing.B) {
	s := TableSchema{Schema: "shop", Table: "order_items", Columns: []Column{
		{Name: "order_item_id", Type: Type{Kind: KindInt}, Key: true},
		{Name: "order_id", Type: Type{Kind: KindInt}},
		{Name: "product_id", Type: Type{Kind: KindInt}},
		{Name: "seller_id", Type: Type{Kind: KindInt}},
		{Name: "quantity", Type: Type{Kind: KindInt}},
		{Name: "unit_price", Type: Type{Kind: KindDecimal, Precision: 12, Scale: 2}},
		{Name: "discount", Type: Type{Kind: KindDecimal, Precision: 12, Scale: 2}},
	}}
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, s)
	if err != nil {
		b.Fatal(err)
	}
	after := map[string]any{"order_item_id": int64(123456), "order_id": int64(30864), "product_id": int64(3456),
		"seller_id": int64(156), "quantity": int64(2), "unit_price": big.NewRat(3456, 100), "discount": big.NewRat(3, 10)}
	ev := Event{Schema: "shop", Table: "order_items", Op: OpInsert, Key: map[string]any{"order_item_id": int64(123456)},
		After: after, Pos: Position{LSN: 0x2CE3AE220, Seq: 17}, CommitTime: time.Now()}
	b.Run("goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := goavroKey(b, codecs, tc, ev.Key); err != nil {
				b.Fatal(err)
			}
			if _, err := goavroValue(b, codecs, tc, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compiled", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = tc.AppendKey(buf[:0], ev.Key); err != nil {
				b.Fatal(err)
			}
			if buf, err = tc.AppendValue(buf, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
