package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/cmd/starstream/internal/verify"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// Capture killed while its initial snapshot is being written, with traffic
// running, finishes the snapshot at the restart: the rows it reads then are
// labelled at the consistent point CP although they reflect the restart.
// Order items created after CP came first at CP, where their customers
// (created after CP, in a table the first run had finished) had no version,
// and kept the unknown customer (TestRestartAfterSIGKILLConverges, when its
// kill landed there). Here the kill lands there on purpose: once the snapshot
// of customers is recorded, before that of order_items.
func TestResumedSnapshotFactsKnowTheirMembers(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 5)
	dir := t.TempDir()
	warehouse := filepath.Join(dir, "warehouse.duckdb")
	config := filepath.Join(dir, "starstream.yaml")
	sections := stackSections(schema, slot, warehouse)
	sections["pipelines"]["max_batch"] = "500"
	writeConfig(t, config, yamlConfig(sections))
	logPath := filepath.Join(dir, "starstream.log")

	pool, err := pgxpool.New(ctx, capturetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	gen, stopGen := runGenerator(ctx, t, pool, shop.GeneratorConfig{Schema: schema, Rate: 150, Seed: 13})

	proc := start(t, bin, config, "run", "--capture")
	// customers finished by the first run, order_items not: customers created
	// after CP exist only from their inserts, items read at the restart are
	// labelled at CP.
	done := func(table string) bool {
		var d bool
		_ = db.QueryRow(ctx, `SELECT done FROM public.starstream_capture_state_progress
			WHERE slot_name = $1 AND job = 'snapshot' AND table_name = $2`, slot, schema+"."+table).Scan(&d)
		return d
	}
	capturetest.Eventually(t, 2*time.Minute, "the snapshot of customers recorded", func() bool { return done("customers") })
	proc.kill()
	if done("order_items") {
		t.Fatal("killed after the snapshot of order_items was recorded: the test needs a slower snapshot")
	}
	time.Sleep(2 * time.Second) // customers, orders and items created while capture is down
	t.Logf("SIGKILL during the snapshot; traffic so far %v", gen.Stats())
	proc = start(t, bin, config, "run", "--capture")
	time.Sleep(3 * time.Second)
	stopGen()
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "resuming the initial snapshot after a crash") {
		t.Fatal("the restarted capture did not resume the initial snapshot")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "resuming the initial snapshot") {
			t.Log(line[strings.Index(line, "msg="):])
		}
	}
	fence := capturetest.Fence(t, db)
	codecs := stream.NewCodecs()
	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for _, topic := range []string{schema + ".fact.sales", schema + ".dim.customer"} {
		streamtest.ReadAll(waitCtx, t, capturetest.Brokers(), topic, codecs, fence, nil)
	}
	proc.stop(t)

	wh, err := duckdb.Open(warehouse, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	compare(t, db, wh, schema) // every item once, its order's status, a known customer
	for _, key := range []string{"customer_key", "product_key", "seller_key"} {
		_, n, err := wh.Query(ctx, "SELECT count(*) FROM fact_sales WHERE "+key+" = -1")
		if err != nil {
			t.Fatal(err)
		}
		if n[0][0].(int64) != 0 {
			t.Errorf("%v fact_sales rows with the unknown %s", n[0][0], key)
		}
	}
	rep, err := verify.Run(ctx, pool, schema, wh, dimensions.All())
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Print(&out)
	t.Logf("verify:\n%s", out.String())
	if rep.Differences() > 0 {
		t.Errorf("verify found %d differences", rep.Differences())
	}
}
