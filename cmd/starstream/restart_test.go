package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/cmd/starstream/internal/verify"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// buildBinary compiles starstream once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "starstream")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a starstream child process.
type process struct {
	cmd  *exec.Cmd
	done chan error
}

func start(t *testing.T, bin, config string, args ...string) *process {
	t.Helper()
	return startWith(t, bin, config, nil, args...)
}

// startWith is start with the environment childEnv(env...) when env is not nil.
func startWith(t *testing.T, bin, config string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--config", config}, args...)...)
	if env != nil {
		cmd.Env = childEnv(env...)
	}
	logPath := filepath.Join(filepath.Dir(config), "starstream.log")
	prior, _ := os.ReadFile(logPath)
	before := string(prior)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() { p.kill() })
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// A process still running when its test failed may be stuck: SIGQUIT makes
		// the Go runtime write every goroutine's stack to the log before exiting.
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case err := <-p.done:
				p.done <- err
			case <-time.After(10 * time.Second):
			}
		}
		b, _ := os.ReadFile(logf.Name())
		t.Logf("starstream log (tail):\n%s", tail(stacklessLog(string(b)), 40))
		if path, err := saveArtifact(t, fmt.Sprintf("%s-%d.log", args[0], cmd.Process.Pid), b); err == nil {
			t.Logf("full log with goroutine stacks: %s", path)
		}
	})
	// Wait until it runs (signal handling is set up by then), so a stop is a stop.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(logf.Name())
		if strings.Count(string(b), `msg="pipelines started"`) > strings.Count(before, `msg="pipelines started"`) {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("starstream exited at start: %v\n%s", err, tail(string(b), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("starstream did not start within 60s:\n%s", tail(string(b), 20))
		}
	}
}

// stacklessLog cuts the goroutine dump a SIGQUIT appends to a log.
func stacklessLog(s string) string {
	if i := strings.Index(s, "\nSIGQUIT: quit"); i >= 0 {
		return s[:i+1] + "(goroutine stacks cut; see the saved log)\n"
	}
	return s
}

// saveArtifact writes b under test-artifacts/<test name>/ at the repository root.
func saveArtifact(t *testing.T, name string, b []byte) (string, error) {
	dir := filepath.Join("..", "..", "test-artifacts", strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return filepath.Abs(path)
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- nil
		if err != nil {
			t.Fatalf("starstream exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("starstream did not stop within 60s of SIGTERM")
	}
}

// Kill the running process with SIGKILL twice while traffic flows, start it again
// each time; then the warehouse matches the source: every order item once, with
// its order's current status, and no duplicate dimension versions.
func TestRestartAfterSIGKILLConverges(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx := context.Background()
	db := capturetest.Connect(t)
	schema, slot := shopSource(ctx, t, db, 3)
	dir := t.TempDir()
	warehouse := filepath.Join(dir, "warehouse.duckdb")
	config := filepath.Join(dir, "starstream.yaml")
	sections := stackSections(schema, slot, warehouse)
	sections["pipelines"]["max_batch"] = "500"
	writeConfig(t, config, yamlConfig(sections))

	pool, err := pgxpool.New(ctx, capturetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	gen, stopGen := runGenerator(ctx, t, pool, shop.GeneratorConfig{Schema: schema, Rate: 150, Seed: 11})

	proc := start(t, bin, config, "run", "--capture")
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 2; round++ {
		time.Sleep(time.Duration(3000+rng.IntN(4000)) * time.Millisecond)
		proc.kill()
		t.Logf("round %d: SIGKILL after %v", round, gen.Stats())
		proc = start(t, bin, config, "run", "--capture")
	}
	time.Sleep(3 * time.Second)
	stopGen()
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
	compare(t, db, wh, schema)
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

// shopSource creates a shop schema of the test's own in db, seeded with seed,
// and names a slot of the test's own (its publication has the same name),
// dropped at cleanup.
func shopSource(ctx context.Context, t *testing.T, db *pgx.Conn, seed int64) (schema, slot string) {
	t.Helper()
	schema = capturetest.NewSchema(t)
	if err := shop.Create(ctx, db, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: schema, Scale: 1, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	slot = capturetest.Unique(t, "s")
	t.Cleanup(func() { capturetest.DropSlot(t, capturetestConfig(schema, slot)) })
	return schema, slot
}

// runGenerator runs the shop generator on pool in the background; stop ends
// it and fails the test if it had failed before being stopped.
func runGenerator(ctx context.Context, t *testing.T, pool *pgxpool.Pool, cfg shop.GeneratorConfig) (gen *shop.Generator, stop func()) {
	t.Helper()
	gen, err := shop.NewGenerator(pool, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	genCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gen.Run(genCtx) }()
	return gen, func() {
		t.Helper()
		select {
		case err := <-done: // ended before it was stopped
			if err != nil {
				t.Fatalf("generator: %v", err)
			}
		default:
			cancel()
			<-done
		}
	}
}

func capturetestConfig(schema, slot string) (c capture.Config) {
	c.DSN, c.Slot, c.Publication, c.Schemas = capturetest.DSN(), slot, slot, []string{schema}
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// compare checks the warehouse against the source.
func compare(t *testing.T, db *pgx.Conn, wh *duckdb.Writer, schema string) {
	t.Helper()
	ctx := context.Background()
	s := pgx.Identifier{schema}.Sanitize()
	source := map[int64]string{}
	rows, err := db.Query(ctx, "SELECT i.order_item_id, o.status::text FROM "+s+".order_items i JOIN "+s+".orders o USING (order_id)")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			t.Fatal(err)
		}
		source[id] = status
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	_, facts, err := wh.Query(ctx, "SELECT order_item_id, order_status, customer_key FROM fact_sales")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	explained := false
	for _, r := range facts {
		id := r[0].(int64)
		if seen[id] {
			t.Errorf("order item %d twice in fact_sales", id)
		}
		seen[id] = true
		want, ok := source[id]
		switch {
		case !ok:
			t.Errorf("order item %d in fact_sales but not in the source", id)
		case r[1] != want:
			t.Errorf("order item %d: status %v, source %s", id, r[1], want)
		case r[2] == int64(-1):
			t.Errorf("order item %d: unknown customer", id)
			if !explained {
				explained = true
				explain(t, db, wh, s, id)
			}
		}
	}
	for id := range source {
		if !seen[id] {
			t.Errorf("order item %d missing from fact_sales", id)
		}
	}
	_, dup, err := wh.Query(ctx, `SELECT customer_id, source_lsn, source_seq, count(*) FROM dim_customer
		WHERE customer_key <> -1 GROUP BY ALL HAVING count(*) > 1`)
	if err != nil {
		t.Fatal(err)
	}
	if len(dup) > 0 {
		t.Errorf("duplicate dimension versions: %v", dup)
	}
	_, cur, err := wh.Query(ctx, `SELECT customer_id, city, loyalty_tier FROM dim_customer WHERE is_current AND customer_key <> -1`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{}
	rows, err = db.Query(ctx, "SELECT customer_id, city || '/' || loyalty_tier FROM "+s+".customers")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var v string
		_ = rows.Scan(&id, &v)
		want[id] = v
	}
	if len(cur) != len(want) {
		t.Errorf("dim_customer has %d current versions, source %d customers", len(cur), len(want))
	}
	for _, r := range cur {
		if got := fmt.Sprintf("%v/%v", r[1], r[2]); want[r[0].(int64)] != got {
			t.Errorf("customer %v: current version %s, source %s", r[0], got, want[r[0].(int64)])
		}
	}
	t.Logf("compared %d order items and %d customers", len(source), len(want))
}

// explain logs what the source and the warehouse hold about an order item.
func explain(t *testing.T, db *pgx.Conn, wh *duckdb.Writer, s string, item int64) {
	var cust int64
	var order int64
	if err := db.QueryRow(context.Background(), "SELECT o.customer_id, o.order_id FROM "+s+".order_items i JOIN "+s+".orders o USING (order_id) WHERE order_item_id = $1", item).Scan(&cust, &order); err != nil {
		t.Logf("explain: %v", err)
		return
	}
	_, f, _ := wh.Query(context.Background(), "SELECT * FROM fact_sales WHERE order_item_id = ?", item)
	_, d, _ := wh.Query(context.Background(), "SELECT customer_key, customer_id, city, valid_from, valid_to, source_lsn, source_seq FROM dim_customer WHERE customer_id = ?", cust)
	t.Logf("item %d (order %d, customer %d): fact %v; dim %v", item, order, cust, f, d)
}
