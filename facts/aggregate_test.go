package facts

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/dimensions/quality"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// aggregateOnMemory returns a fact pipeline on an in-memory DuckDB whose
// dimensions hold, from LSN 10, customers 1 and 2, products 1 and 2 and
// campaign 1 (customer 9, product 9 and campaign 9 do not exist).
func aggregateOnMemory(t *testing.T, spec Spec) (*Pipeline, *duckdb.Writer) {
	t.Helper()
	sink, err := duckdb.Open("", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	ctx := context.Background()
	for _, def := range []sinks.Table{spec.Table(), quality.QuarantineTable()} {
		if err := sink.EnsureTable(ctx, def); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewPipeline(spec, dimensions.Env{Brokers: []string{"127.0.0.1:1"}, SourceSchema: "shop", Sink: sink,
		Codecs: stream.NewCodecs(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	at := stream.Position{LSN: 10}
	members := map[string][]map[string]any{
		"dim_customer": {{"customer_id": int64(1), "city": "Lyon"}, {"customer_id": int64(2), "city": "Oslo"}},
		"dim_product":  {{"product_id": int64(1), "unit_cost": big.NewRat(4, 1)}, {"product_id": int64(2), "unit_cost": big.NewRat(7, 1)}},
		"dim_campaign": {{"campaign_id": int64(1), "name": "Spring"}},
	}
	for dim, rows := range members {
		if st := p.lookups.State(dim); st != nil {
			for _, row := range rows {
				st.Apply(dimensions.Change{Row: row, Pos: at})
			}
		}
	}
	return p, sink
}

var day1 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func pos(lsn, seq uint64) stream.Position { return stream.Position{LSN: stream.LSN(lsn), Seq: seq} }

func dec(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		panic(s)
	}
	return r
}

// captured is a change of a captured table of schema shop, committed at commit.
func captured(table string, op stream.Op, key, row map[string]any, at stream.Position, commit time.Time) stream.Record {
	ev := stream.Event{Schema: "shop", Table: table, Op: op, Key: key, After: row, Pos: at, CommitTime: commit}
	if op == stream.OpDelete {
		ev.After, ev.Before = nil, key
	}
	return stream.Record{Topic: "cdc.shop." + table, Key: key, Event: ev}
}

// saleRow is a fact_sales row as fact_sales publishes it on fact.sales.
type saleRow struct {
	item, order, customer, product int64
	campaign                       any
	qty                            int64
	net                            string
	status                         string
	ordered                        time.Time
}

func (s saleRow) at(p stream.Position) stream.Record {
	key := map[string]any{"order_item_id": s.item}
	after := map[string]any{"order_item_id": s.item, "order_id": s.order, "customer_id": s.customer, "product_id": s.product,
		"campaign_id": s.campaign, "quantity": s.qty, "net_amount": dec(s.net), "order_status": s.status, "ordered_at": s.ordered,
		"date_key": dimensions.DateKey(s.ordered), "source_lsn": int64(p.LSN), "source_seq": int64(p.Seq)}
	return stream.Record{Topic: "fact.sales", Key: key, Event: stream.Event{Schema: "fact", Table: "sales", Op: stream.OpUpdate,
		Key: key, After: after, Pos: p}}
}

func saleDeleted(item int64, p stream.Position) stream.Record {
	key := map[string]any{"order_item_id": item}
	return stream.Record{Topic: "fact.sales", Key: key, Event: stream.Event{Schema: "fact", Table: "sales", Op: stream.OpDelete,
		Key: key, Before: key, Pos: p}}
}

// run processes each batch as a final batch (one checkpoint each) and returns,
// per batch, what the pipeline published and its state records, Avro
// round-tripped as the state topic would hand them back.
func run(t *testing.T, p *Pipeline, batches ...[]stream.Record) (out, state [][]stream.Event, dead []stream.DeadLetter) {
	t.Helper()
	for _, b := range batches {
		var w stream.LSN
		for _, r := range b {
			w = max(w, r.Event.Pos.LSN)
		}
		res, err := p.Process(context.Background(), stream.Batch{Records: b, Watermark: w, Final: true})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Out)
		state = append(state, roundTrip(t, p.t.stateSchemas(), res.State))
		dead = append(dead, res.Dead...)
	}
	return out, state, dead
}

// roundTrip encodes and decodes state records as the state topic would.
func roundTrip(t *testing.T, schemas []stream.TableSchema, evs []stream.Event) []stream.Event {
	t.Helper()
	codecs := stream.NewCodecs()
	tcs := map[string]*stream.TableCodec{}
	for _, s := range schemas {
		tc, err := stream.NewTableCodec(codecs, s)
		if err != nil {
			t.Fatal(err)
		}
		tcs[s.Table] = tc
	}
	out := make([]stream.Event, 0, len(evs))
	for _, ev := range evs {
		tc := tcs[ev.Table]
		if tc == nil {
			t.Fatalf("state record %s.%s has no declared schema", ev.Schema, ev.Table)
		}
		if _, err := tc.EncodeKey(&ev); err != nil {
			t.Fatal(err)
		}
		buf, err := tc.EncodeValue(&ev)
		if err != nil {
			t.Fatal(err)
		}
		d, err := codecs.DecodeEvent(buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.Event)
	}
	return out
}

// dump renders a query's rows as "a|b|c" lines, numerics as plain decimals.
func dump(t *testing.T, sink *duckdb.Writer, q string) []string {
	t.Helper()
	_, rows, err := sink.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []string
	for _, row := range rows {
		parts := make([]string, len(row))
		for i, v := range row {
			parts[i] = render(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	return out
}

func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case *big.Rat:
		s := x.FloatString(9)
		s = strings.TrimRight(s, "0")
		return strings.TrimSuffix(s, ".")
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

func wantRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// checkRestore runs the batches once uninterrupted and compares it with runs
// stopped after batch k, for every k: a new pipeline on the same warehouse
// restores the state records of batches 1..k and continues. In the "replay"
// variant batch k+1 had been processed too but its checkpoint was not committed
// (a crash before the offset commit), so it is processed twice. Warehouse rows
// with their positions, the quarantine and the records published from batch
// k+1 on must be identical.
func checkRestore(t *testing.T, spec Spec, batches [][]stream.Record) {
	t.Helper()
	ref, refSink := aggregateOnMemory(t, spec)
	refOut, _, _ := run(t, ref, batches...)
	rowsQ := "SELECT * FROM " + spec.Name + "__rows ORDER BY ALL"
	quarantineQ := "SELECT * FROM dq_quarantine ORDER BY ALL"
	wantTable, wantQ := dump(t, refSink, rowsQ), dump(t, refSink, quarantineQ)
	for k := 1; k < len(batches); k++ {
		for _, replay := range []bool{false, true} {
			t.Run(fmt.Sprintf("stop after batch %d replay %v", k, replay), func(t *testing.T) {
				first, sink := aggregateOnMemory(t, spec)
				done := k
				if replay {
					done = k + 1
				}
				_, state, _ := run(t, first, batches[:done]...)
				again, err := NewPipeline(spec, first.env)
				if err != nil {
					t.Fatal(err)
				}
				again.lookups = first.lookups
				again.Reset()
				for _, evs := range state[:k] {
					for _, ev := range evs {
						if err := again.Restore(ev); err != nil {
							t.Fatal(err)
						}
					}
				}
				out, _, _ := run(t, again, batches[k:]...)
				wantRows(t, "warehouse rows", dump(t, sink, rowsQ), wantTable)
				wantRows(t, "quarantine", dump(t, sink, quarantineQ), wantQ)
				if got, want := fmt.Sprint(out), fmt.Sprint(refOut[k:]); got != want {
					t.Fatalf("published records differ:\n got  %s\n want %s", got, want)
				}
			})
		}
	}
}

func TestSpecsValidate(t *testing.T) {
	t.Parallel()
	for _, s := range All() {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	bad := Marketing
	bad.Upstream = []string{"dim_campaign"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `fact input "fact_sales"`) {
		t.Fatalf("a fact input missing from Upstream: %v", err)
	}
}
