package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// starTables are compared row by row, surrogate keys included.
var comparedTables = []string{"dim_customer", "dim_product", "dim_seller", "dim_campaign", "fact_sales", "dq_quarantine"}

// snapshot reads every compared table, sorted, as text.
func snapshot(t *testing.T, path string) map[string][]string {
	t.Helper()
	wh, err := duckdb.Open(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	out := map[string][]string{}
	for _, table := range comparedTables {
		_, rows, err := wh.Query(context.Background(), "SELECT * FROM "+table)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		for _, r := range rows {
			out[table] = append(out[table], fmt.Sprint(r...))
		}
		sort.Strings(out[table])
	}
	return out
}

func sameRows(t *testing.T, what string, a, b map[string][]string) {
	t.Helper()
	for _, table := range comparedTables {
		if !reflect.DeepEqual(a[table], b[table]) {
			t.Errorf("%s: %s differs: %d rows before, %d after", what, table, len(a[table]), len(b[table]))
			for i := 0; i < len(a[table]) && i < len(b[table]); i++ {
				if a[table][i] != b[table][i] {
					t.Errorf("first difference:\n before %s\n after  %s", a[table][i], b[table][i])
					break
				}
			}
		}
	}
}

// groups lists the consumer groups of a namespace.
func groups(ns string) []string {
	var out []string
	for _, n := range registry() {
		if n.name != "dim_date" {
			out = append(out, ns+"starstream."+n.name)
		}
	}
	return out
}

// resetWithKafkaTool resets every group to the earliest offsets with Kafka's own
// kafka-consumer-groups, as an operator would.
func resetWithKafkaTool(t *testing.T, ns string) {
	t.Helper()
	tool, _ := filepath.Abs("../../deploy/local/kafka/bin/kafka-consumer-groups")
	for _, g := range groups(ns) {
		out, err := exec.Command(tool, "--bootstrap-server", capturetest.Brokers()[0], "--group", g,
			"--reset-offsets", "--to-earliest", "--all-topics", "--execute").CombinedOutput()
		if err != nil {
			t.Fatalf("kafka-consumer-groups --reset-offsets %s: %v\n%s", g, err, out)
		}
	}
}

// waitCaughtUp waits until every group has committed the end of its inputs.
func waitCaughtUp(t *testing.T, ns string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(capturetest.Brokers()...)}
	admin := stream.NewAdmin(capturetest.Brokers(), nil)
	for _, g := range groups(ns) {
		for {
			res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g})
			if err != nil {
				t.Fatal(err)
			}
			behind := 0
			var where []string
			for topic, parts := range res.Topics {
				_, end, err := admin.EndOffsets(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range parts {
					if p.CommittedOffset < end[p.Partition] {
						behind++
						where = append(where, fmt.Sprintf("%s[%d] %d<%d", topic, p.Partition, p.CommittedOffset, end[p.Partition]))
					}
				}
			}
			if behind == 0 && len(res.Topics) > 0 {
				break
			}
			if time.Now().Add(5 * time.Second).After(deadline) {
				t.Fatalf("group %s did not catch up: %v", g, where)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// Replaying every pipeline from the earliest offsets with Kafka's own tool
// re-derives identical rows; an emptied warehouse plus the same replay rebuilds it
// identically, surrogate keys included.
func TestReplayAndRebuildAreIdentical(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 8)
	dir := t.TempDir()
	warehouse := filepath.Join(dir, "warehouse.duckdb")
	ns := schema + "."
	config := stackConfig(t, dir, schema, slot, "")

	// 1. Capture and run while traffic flows, then catch up.
	pool, err := pgxpool.New(ctx, capturetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	gen, err := shop.NewGenerator(pool, shop.GeneratorConfig{Schema: schema, Rate: 100, Seed: 4}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	proc := start(t, bin, config, "run", "--capture")
	genCtx, stop := context.WithTimeout(ctx, 8*time.Second)
	_ = gen.Run(genCtx)
	stop()
	fence := capturetest.Fence(t, db)
	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	streamtest.ReadAll(waitCtx, t, capturetest.Brokers(), ns+"fact.sales", stream.NewCodecs(), fence, nil)
	proc.stop(t)
	// Capture is stopped from here on: the input topics no longer grow.
	proc = start(t, bin, config, "run")
	waitCaughtUp(t, ns)
	proc.stop(t)
	before := snapshot(t, warehouse)
	if len(before["fact_sales"]) < 100 {
		t.Fatalf("only %d fact rows: too little to compare", len(before["fact_sales"]))
	}

	// 2. Replay everything with Kafka's own tool.
	resetWithKafkaTool(t, ns)
	proc = start(t, bin, config, "run")
	waitCaughtUp(t, ns)
	proc.stop(t)
	sameRows(t, "replay", before, snapshot(t, warehouse))

	// 3. Rebuild an emptied warehouse.
	for _, f := range []string{warehouse, warehouse + ".wal"} {
		_ = os.Remove(f)
	}
	resetWithKafkaTool(t, ns)
	proc = start(t, bin, config, "run")
	waitCaughtUp(t, ns)
	proc.stop(t)
	sameRows(t, "rebuild", before, snapshot(t, warehouse))
}
