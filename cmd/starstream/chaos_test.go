//go:build chaos

package main

// Chaos rounds: capture and the pipelines run as separate starstream processes
// against the local stack while the shop generator writes; at random moments the
// test SIGKILLs and restarts capture, the pipelines, the Kafka broker and
// PostgreSQL, and the warehouse writes fail or stall now and then (faults.*).
// Afterwards the warehouse must equal the source: nothing lost, nothing twice.
//
// It kills the broker and the database, so it runs on a stack of its own, never
// on the one other tests share: `make chaos` and `make chaos-short` start one with
// deploy/local/chaos-stack.sh, which exports its data folder, ports and addresses
// (STARSTREAM_DATA_DIR, STARSTREAM_PG_PORT, ..., STARSTREAM_PG_DSN,
// STARSTREAM_KAFKA_BROKERS) and stops it afterwards. The test refuses to run
// without them:
//
//	make chaos ROUNDS=5       # or, by hand:
//	deploy/local/chaos-stack.sh run go test -tags chaos -run '^TestChaos$' -v -count=1 -timeout 60m ./cmd/starstream
//	make chaos-short          # one shorter round (-short), part of make test
//
// ROUNDS sets the number of rounds, CHAOS_SEED replays a schedule, CHAOS_BIN
// names a starstream binary to test instead of building the working tree; a
// failed round's logs and warehouse are kept under test-artifacts/.

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/cmd/starstream/internal/verify"
	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/sinks/duckdb"
	"github.com/starstream/starstream/stream"
)

// Kinds of faults the rounds inject.
const (
	faultCapture   = "kill capture"
	faultPipelines = "kill pipelines"
	faultKafka     = "kill kafka broker"
	faultPostgres  = "kill postgresql"
)

// chaosTally adds up what the rounds did and found.
type chaosTally struct {
	rounds      int
	faults      map[string]int
	sinkFaults  int            // injected warehouse failures the retry decorator absorbed
	selfExits   map[string]int // processes that exited by themselves (restarted by the test)
	deadLetters map[string]int // dead-lettered records by rule ("decode": valid changes lost)
	genErrors   int            // generator transactions that failed (database down)
	txs         int64          // generator transactions committed
	checked     int            // rows compared by verify
	lost        int            // in the source, not in the warehouse
	duplicated  int
	other       int // extra or mismatched rows
}

func (s *chaosTally) print(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos summary: %d round(s)\n", s.rounds)
	fmt.Fprintf(&b, "  faults injected:")
	for _, k := range []string{faultCapture, faultPipelines, faultKafka, faultPostgres} {
		fmt.Fprintf(&b, " %s=%d", k, s.faults[k])
	}
	fmt.Fprintf(&b, " warehouse write failures=%d (plus slow writes)\n", s.sinkFaults)
	fmt.Fprintf(&b, "  processes that exited by themselves and were restarted: %v\n", s.selfExits)
	fmt.Fprintf(&b, "  dead-lettered records by rule (decode must be 0): %v\n", s.deadLetters)
	fmt.Fprintf(&b, "  generator: %d transactions committed, %d failed\n", s.txs, s.genErrors)
	fmt.Fprintf(&b, "  rows checked=%d lost=%d duplicated=%d other differences=%d\n", s.checked, s.lost, s.duplicated, s.other)
	t.Log(b.String())
	fmt.Print(b.String())
}

func TestChaos(t *testing.T) {
	rounds := 3
	if v := os.Getenv("ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ROUNDS=%q is not a positive number", v)
		}
		rounds = n
	} else if testing.Short() {
		rounds = 1
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q is not a number", v)
		}
		seed = n
	}
	t.Logf("CHAOS_SEED=%d ROUNDS=%d short=%v", seed, rounds, testing.Short())
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	requireOwnStack(t, root)
	bin := os.Getenv("CHAOS_BIN") // a binary built elsewhere, e.g. from a clean export of a commit
	if bin == "" {
		bin = buildBinary(t)
	}
	tally := &chaosTally{faults: map[string]int{}, selfExits: map[string]int{}, deadLetters: map[string]int{}}
	defer tally.print(t)
	for r := 1; r <= rounds; r++ {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		ok := t.Run(fmt.Sprintf("round%d", r), func(t *testing.T) {
			chaosRound(t, bin, root, rng, int64(seed)+int64(r), tally)
		})
		tally.rounds++
		if !ok {
			break // the stack may be in a bad state: later rounds would only add noise
		}
	}
	if tally.lost > 0 || tally.duplicated > 0 || tally.other > 0 || tally.deadLetters["decode"] > 0 {
		t.Errorf("%d rows lost, %d duplicated, %d other differences, %d valid changes dead-lettered",
			tally.lost, tally.duplicated, tally.other, tally.deadLetters["decode"])
	}
}

// chaosPlan is the faults of a round, in random order.
func chaosPlan(rng *rand.Rand) []string {
	plan := []string{faultCapture, faultPipelines, faultKafka, faultPostgres}
	if !testing.Short() {
		plan = append(plan, faultCapture, faultPipelines)
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan
}

func chaosRound(t *testing.T, bin, root string, rng *rand.Rand, seed int64, tally *chaosTally) {
	ctx := context.Background()
	ensureStack(t, root) // a previous round or test may have left it down
	schema := capturetest.NewSchema(t)
	setup := capturetest.Connect(t)
	if err := shop.Create(ctx, setup, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := shop.Seed(ctx, setup, shop.SeedConfig{Schema: schema, Scale: 1, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx) // it would not survive the database's restart
	dir := t.TempDir()
	keepOnFailure(t, root, dir)
	slot := capturetest.Unique(t, "s")
	ns := schema + "."
	faults := "faults:\n  sink_fail_rate: 0.05\n  sink_slow_rate: 0.05\n  sink_slow_ms: 300\n"
	// Each process its own directory (and log); one warehouse.
	configs := map[string]string{}
	for _, name := range []string{"capture", "pipelines"} {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		configs[name] = stackConfigAt(t, filepath.Join(d, "starstream.yaml"), filepath.Join(dir, "warehouse.duckdb"), schema, slot, faults)
	}
	dropTopicsAtCleanup(t, schema, ns) // cleanups run last first: after ensureStack below
	t.Cleanup(func() {
		ensureStack(t, root)
		capturetest.DropSlot(t, capturetestConfig(schema, slot))
	})

	capture := supervise(t, bin, configs["capture"], "capture", "capture")
	pipelines := supervise(t, bin, configs["pipelines"], "pipelines", "run")
	defer func() {
		tally.sinkFaults += countInLog(pipelines.logPath, "injected fault")
		for _, c := range []*supervised{capture, pipelines} {
			c.mu.Lock()
			if c.selfExits > 0 {
				tally.selfExits[c.name] += c.selfExits
			}
			c.mu.Unlock()
		}
	}()

	// Traffic, through any outage: a failed transaction is counted and the
	// generator started again (its cached id ranges may be stale after one).
	pool, err := pgxpool.New(ctx, capturetest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	genCtx, stopGen := context.WithCancel(ctx)
	var genWG sync.WaitGroup
	var genMu sync.Mutex
	var genErrors int
	var txs int64 // committed by finished generators
	var current *shop.Generator
	var lastGenErr error
	committed := func() int64 { // callers hold genMu
		n := txs
		if current != nil {
			for _, c := range current.Stats() {
				n += c
			}
		}
		return n
	}
	genWG.Add(1)
	go func() {
		defer genWG.Done()
		for i := int64(0); genCtx.Err() == nil; i++ {
			gen, err := shop.NewGenerator(pool, shop.GeneratorConfig{Schema: schema, Rate: 100, Seed: seed*1000 + i}, slog.New(slog.DiscardHandler))
			if err != nil {
				panic(err)
			}
			genMu.Lock()
			current = gen
			genMu.Unlock()
			err = gen.Run(genCtx)
			genMu.Lock()
			txs, current = committed(), nil
			if err != nil && genCtx.Err() == nil {
				genErrors++
				lastGenErr = err
			}
			genMu.Unlock()
			if err != nil {
				select {
				case <-genCtx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}()

	// Faults at random moments 3-10s apart; the first one may hit the initial
	// snapshot (it takes a second or two at scale 1).
	began := time.Now()
	for i, f := range chaosPlan(rng) {
		gap := time.Duration(3000+rng.IntN(7000)) * time.Millisecond
		if i == 0 {
			gap = time.Duration(500+rng.IntN(9500)) * time.Millisecond
		}
		time.Sleep(gap)
		at := time.Since(began).Round(100 * time.Millisecond)
		switch f {
		case faultCapture:
			capture.kill(t, time.Duration(rng.IntN(2000))*time.Millisecond)
		case faultPipelines:
			pipelines.kill(t, time.Duration(rng.IntN(2000))*time.Millisecond)
		case faultKafka, faultPostgres:
			service := map[string]string{faultKafka: "kafka", faultPostgres: "postgres"}[f]
			down := time.Duration(1000+rng.IntN(4000)) * time.Millisecond
			restarted := crashService(t, root, service, down)
			t.Logf("%v: %s: down %v, answering again after %v", at, f, down, restarted.Round(100*time.Millisecond))
		}
		tally.faults[f]++
		genMu.Lock()
		t.Logf("%v: %s (generator: %d transactions, %d failed)", at, f, committed(), genErrors)
		genMu.Unlock()
	}
	time.Sleep(3 * time.Second)
	stopGen()
	genWG.Wait()
	t.Logf("traffic stopped after %v: %d transactions committed, %d failed (last: %v)", time.Since(began).Round(time.Second), txs, genErrors, lastGenErr)
	tally.txs += txs
	tally.genErrors += genErrors

	// Converge: every output topic passes a marker beyond the last commit.
	ensureStack(t, root)
	db := capturetest.Connect(t)
	fence := capturetest.Fence(t, db)
	converge := time.Now()
	outputs := []string{ns + "dim.customer", ns + "dim.product", ns + "dim.seller", ns + "dim.campaign", ns + "fact.sales"}
	if err := waitMarkers(outputs, fence, 5*time.Minute); err != nil {
		// Where did it stop? Markers of every topic of the round, then the
		// goroutines of both processes (SIGQUIT) into their logs.
		t.Errorf("no convergence %v after the traffic stopped: %v", time.Since(converge).Round(time.Second), err)
		t.Logf("fence %s; last marker of each partition:\n%s", fence, roundMarkers(schema, ns))
		capture.quit(t)
		pipelines.quit(t)
		t.FailNow()
	}
	t.Logf("converged %v after the traffic stopped", time.Since(converge).Round(100*time.Millisecond))
	capture.stop(t)
	pipelines.stop(t)

	// Nothing the generator writes is poison: a record dead-lettered as
	// undecodable is a change lost to the warehouse.
	dead := deadLetters(t, ns)
	for rule, n := range dead {
		tally.deadLetters[rule] += n
	}
	if dead["decode"] > 0 {
		t.Errorf("%d valid changes were dead-lettered as undecodable (by rule: %v)", dead["decode"], dead)
	}

	wh, err := duckdb.Open(filepath.Join(dir, "warehouse.duckdb"), slog.New(slog.DiscardHandler))
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
	for _, c := range rep.Checks {
		tally.checked += c.Rows
		tally.lost += c.Missing
		tally.duplicated += c.Duplicated
		tally.other += c.Extra + c.Mismatched
	}
	if rep.Differences() > 0 {
		t.Errorf("verify found %d differences", rep.Differences())
	}
}

// supervised is a starstream process the test keeps running, as an orchestrator
// would: restarted when killed by the test or when it exits by itself.
type supervised struct {
	name, bin, config, logPath string
	args                       []string

	mu        sync.Mutex
	cmd       *exec.Cmd
	killed    bool // the current process was SIGKILLed by the test
	delay     time.Duration
	stopping  bool
	starts    int
	selfExits int
	final     chan error
}

func supervise(t *testing.T, bin, config, name string, args ...string) *supervised {
	t.Helper()
	s := &supervised{name: name, bin: bin, config: config, args: args, final: make(chan error, 1),
		logPath: filepath.Join(filepath.Dir(config), "starstream.log")}
	started := make(chan struct{})
	go s.loop(t, started)
	<-started
	t.Cleanup(func() {
		s.mu.Lock()
		s.stopping = true
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		s.mu.Unlock()
		select {
		case <-s.final:
		case <-time.After(30 * time.Second):
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("%s log (tail):\n%s", s.name, tail(string(b), 40))
		}
	})
	return s
}

func (s *supervised) loop(t *testing.T, started chan struct{}) {
	for {
		logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			s.final <- err
			close(started)
			return
		}
		cmd := exec.Command(s.bin, append([]string{"--config", s.config}, s.args...)...)
		cmd.Env = childEnv()
		cmd.Stdout, cmd.Stderr = logf, logf
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			logf.Close()
			s.final <- nil
			return
		}
		err = cmd.Start()
		s.cmd = cmd
		s.starts++
		s.mu.Unlock()
		if s.starts == 1 {
			close(started)
		}
		if err != nil {
			logf.Close()
			s.final <- err
			return
		}
		err = cmd.Wait()
		logf.Close()
		s.mu.Lock()
		stopping, killed, delay := s.stopping, s.killed, s.delay
		s.killed = false
		if !stopping && !killed {
			s.selfExits++
		}
		s.mu.Unlock()
		if stopping {
			s.final <- err
			return
		}
		if !killed {
			b, _ := os.ReadFile(s.logPath)
			t.Logf("%s exited by itself (%v); restarting in 1s. Last lines:\n%s", s.name, err, tail(strings.TrimSpace(string(b)), 3))
			delay = time.Second
		}
		time.Sleep(delay)
	}
}

// kill SIGKILLs the running process; the supervisor starts it again after delay.
func (s *supervised) kill(t *testing.T, delay time.Duration) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed, s.delay = true, delay
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.killed = false // it had exited by itself: restarting already
		t.Logf("SIGKILL %s: %v", s.name, err)
	}
}

// stop sends SIGTERM and requires a clean exit within a minute.
func (s *supervised) stop(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.stopping = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	s.mu.Unlock()
	select {
	case err := <-s.final:
		s.final <- nil
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", s.name, err)
		}
	case <-time.After(time.Minute):
		t.Errorf("%s did not stop within a minute of SIGTERM", s.name)
	}
}

// deadLetters counts the records of a namespace's dead-letter topics by rule.
func deadLetters(t *testing.T, ns string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(capturetest.Brokers()...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tp := range md.Topics {
		if !strings.HasPrefix(tp.Name, ns+"dlq.") {
			continue
		}
		if err := stream.ScanToEnd(ctx, capturetest.Brokers(), nil, tp.Name, func(m kafka.Message) error {
			rule, reason := "?", ""
			for _, h := range m.Headers {
				switch h.Key {
				case "starstream.dlq.rule":
					rule = string(h.Value)
				case "starstream.dlq.reason":
					reason = string(h.Value)
				}
			}
			if out[rule] == 0 {
				t.Logf("first dead letter of rule %s in %s: %s", rule, tp.Name, reason)
			}
			out[rule]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// keepOnFailure copies the round's logs and warehouse to
// <repo>/test-artifacts/chaos-<time>-<round>/ when the round fails.
func keepOnFailure(t *testing.T, root, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dst := filepath.Join(root, "test-artifacts", "chaos-"+time.Now().UTC().Format("20060102T150405")+"-"+filepath.Base(t.Name()))
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
		})
		t.Logf("logs and warehouse of the failed round kept in %s (%v)", dst, err)
	})
}

// quit sends SIGQUIT, which makes a Go program print every goroutine's stack
// (into its log) and exit; the supervisor does not restart it.
func (s *supervised) quit(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.stopping = true
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	s.mu.Unlock()
	select {
	case <-s.final:
		s.final <- nil
	case <-time.After(30 * time.Second):
	}
}

// waitMarkers waits until every partition of every topic has a marker >= lsn.
func waitMarkers(topics []string, lsn stream.LSN, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, topic := range topics {
		for {
			marks, err := lastMarkers(ctx, topic)
			behind := []string{}
			for p, m := range marks {
				if m < lsn {
					behind = append(behind, fmt.Sprintf("[%d] at %s", p, m))
				}
			}
			if err == nil && len(marks) > 0 && len(behind) == 0 {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: partitions %v below %s (%v)", topic, behind, lsn, err)
			}
			time.Sleep(time.Second)
		}
	}
	return nil
}

// roundMarkers renders the last markers of every topic of a round.
func roundMarkers(schema, ns string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(capturetest.Brokers()...)}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return err.Error()
	}
	var topics []string
	for _, tp := range md.Topics {
		if strings.HasPrefix(tp.Name, "cdc."+schema+".") || strings.HasPrefix(tp.Name, ns) {
			topics = append(topics, tp.Name)
		}
	}
	sort.Strings(topics)
	var b strings.Builder
	for _, topic := range topics {
		marks, err := lastMarkers(ctx, topic)
		parts := make([]string, 0, len(marks))
		for p := 0; p < len(marks); p++ {
			parts = append(parts, marks[p].String())
		}
		fmt.Fprintf(&b, "  %-60s %s %v\n", topic, strings.Join(parts, " "), errOrEmpty(err))
	}
	return b.String()
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// crashService SIGKILLs a service of the local stack (the PID `make up`
// recorded), leaves it down for a while, and brings it back with up.sh, which
// waits until it answers; it returns how long the restart took.
func crashService(t *testing.T, root, service string, down time.Duration) time.Duration {
	t.Helper()
	if out, err := exec.Command(filepath.Join(root, "deploy/local/chaos.sh"), "kill", service).CombinedOutput(); err != nil {
		t.Fatalf("chaos.sh kill %s: %v\n%s", service, err, out)
	}
	time.Sleep(down)
	began := time.Now()
	if out, err := exec.Command(filepath.Join(root, "deploy/local/up.sh")).CombinedOutput(); err != nil {
		t.Fatalf("up.sh after killing %s: %v\n%s", service, err, out)
	}
	return time.Since(began)
}

// ensureStack brings the local stack up if a service is down.
func ensureStack(t *testing.T, root string) {
	t.Helper()
	for _, s := range []string{"postgres", "kafka"} {
		if exec.Command(filepath.Join(root, "deploy/local/chaos.sh"), "pid", s).Run() != nil {
			if out, err := exec.Command(filepath.Join(root, "deploy/local/up.sh")).CombinedOutput(); err != nil {
				t.Fatalf("up.sh: %v\n%s", err, out)
			}
			return
		}
	}
}

// requireOwnStack stops the test unless the stack it will crash is a stack of
// its own (chaos-stack.sh), which the addresses the test uses point at: killing
// the shared stack would fail every other test running on this machine.
func requireOwnStack(t *testing.T, root string) {
	t.Helper()
	data, pgPort, kafkaPort := os.Getenv("STARSTREAM_DATA_DIR"), os.Getenv("STARSTREAM_PG_PORT"), os.Getenv("STARSTREAM_KAFKA_PORT")
	if data == "" || pgPort == "" || kafkaPort == "" || filepath.Clean(data) == filepath.Join(root, ".data") || pgPort == "15432" || kafkaPort == "19092" {
		t.Fatalf("the chaos rounds kill PostgreSQL and Kafka: run them on a stack of their own (make chaos, make chaos-short, or deploy/local/chaos-stack.sh run go test ...), not on the shared one (STARSTREAM_DATA_DIR=%q, ports %q/%q)", data, pgPort, kafkaPort)
	}
	u, err := url.Parse(capturetest.DSN())
	if err != nil {
		t.Fatal("STARSTREAM_PG_DSN is not a URL") // the error would print the password
	}
	if u.Port() != pgPort {
		t.Fatalf("STARSTREAM_PG_DSN names port %q, not the chaos stack's %s", u.Port(), pgPort)
	}
	if b := capturetest.Brokers(); len(b) != 1 || b[0] != "127.0.0.1:"+kafkaPort {
		t.Fatalf("STARSTREAM_KAFKA_BROKERS is %v, not the chaos stack's 127.0.0.1:%s", b, kafkaPort)
	}
}

func countInLog(path, what string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), what)
}

// The 1,000,000-row version of TestBadInputHugeChanges (about 2.5 minutes on a
// 2-core machine: too long for `make test`, which runs 100,000 rows). The
// pipelines process runs with the memory limit of its Kubernetes Deployment
// (deploy/k8s/pipeline-fact-sales.yaml: 2Gi, passed on as STARSTREAM_MEMORY_LIMIT,
// of which the runtime aims at 90%): a transaction whose changes did not fit
// would make its garbage collector run without end, and the rows would not
// arrive within the test's wait.
func TestBadInputMillionRowTransaction(t *testing.T) {
	t.Setenv("STARSTREAM_MEMORY_LIMIT", "2147483648")
	hugeChanges(t, 1_000_000, 10<<20)
}
