// Command compare measures starstream capture against Debezium's PostgreSQL connector (on
// Kafka Connect standalone) and against pg_recvlogical, in one run, on the same machine, the
// same PostgreSQL and Kafka, and the same rows. It is a benchmark: it prints figures and never
// passes or fails on them.
//
// One run:
//
//  1. creates schema bench_<run>, a 7-column order_items table and, for each reader, its own
//     publication and pgoutput slot (all before the first row, so all decode the same WAL),
//     and for each tool its own 3-partition topic with message.timestamp.type=LogAppendTime;
//  2. writes -rows rows in transactions of -tx rows while nothing reads (the backlog);
//  3. drain, each reader alone: pg_recvlogical to the end LSN (the physical limit); starstream
//     capture (capture.New + stream.NewWriter in a child process: Avro, acks=all); Debezium
//     3.6 on Kafka Connect (JSON without schemas, acks=all). Rows/s is rows divided by the
//     span between the first and the last record's broker append time;
//  4. live, both tools running and caught up: writes -live-rows rows at -live-rate rows/s in
//     transactions of -live-tx, and measures commit → Kafka latency per row: the record's
//     broker append time minus the commit timestamp of its transaction as the tool carries it
//     (starstream: header starstream.commit_time; Debezium: source.ts_us; both from the
//     pgoutput BEGIN/COMMIT of the same transaction);
//  5. prints a table and the ratios, writes result.json, drops slots, publications, schema
//     and topics (unless -keep).
//
// Peak RSS is VmHWM of each tool's own process (/proc/<pid>/status): the starstream child, the
// Connect JVM, pg_recvlogical. CPU is utime+stime of the same processes; walsender CPU is that
// of the PostgreSQL process serving the reader's slot.
//
// Run it from the repository with the local stack up (make up):
//
//	go run ./deploy/bench/cmd/compare [-rows 1000000] [-tx 1000] [-live-rows 100000] [-live-rate 5000]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/starstream/starstream/stream"
)

type options struct {
	dsn      string
	brokers  []string
	rows     int
	tx       int
	liveRows int
	liveTx   int
	liveRate float64
	tools    []string
	restPort int
	dbzProps []string
	timeout  time.Duration
	keep     bool
	out      string
	root     string
}

// Reader keys: also the suffix of each reader's slot and publication.
const (
	toolRecv       = "pg_recvlogical"
	toolStarstream = "starstream"
	toolDebezium   = "debezium"
)

var slotSuffix = map[string]string{toolRecv: "pgr", toolStarstream: "ss", toolDebezium: "dbz"}

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "starstream capture:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func parseFlags() (options, error) {
	var o options
	var brokers, tools, dbzProps string
	flag.StringVar(&o.dsn, "dsn", envOr("STARSTREAM_PG_DSN", "postgres://starstream:starstream@127.0.0.1:15432/starstream?sslmode=disable"), "source database (the local stack by default)")
	flag.StringVar(&brokers, "brokers", envOr("STARSTREAM_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka brokers, comma-separated")
	flag.IntVar(&o.rows, "rows", 1_000_000, "rows of the backlog every reader drains")
	flag.IntVar(&o.tx, "tx", 1000, "rows per transaction of the backlog")
	flag.IntVar(&o.liveRows, "live-rows", 100_000, "rows written while the tools run, for latency (0 skips the live phase)")
	flag.IntVar(&o.liveTx, "live-tx", 50, "rows per transaction in the live phase")
	flag.Float64Var(&o.liveRate, "live-rate", 5000, "rows per second in the live phase")
	flag.StringVar(&tools, "tools", "pg_recvlogical,starstream,debezium", "readers to run")
	flag.IntVar(&o.restPort, "rest-port", 18083, "Kafka Connect REST port (127.0.0.1)")
	flag.StringVar(&dbzProps, "debezium-props", "", "extra Debezium connector properties, comma-separated key=value (e.g. poll.interval.ms=10)")
	flag.DurationVar(&o.timeout, "timeout", 45*time.Minute, "bound on the whole run")
	flag.BoolVar(&o.keep, "keep", false, "keep the schema, slots, publications and topics")
	flag.StringVar(&o.out, "out", "", "directory for logs and result.json (default .data/bench/compare/<run>)")
	flag.Parse()
	o.brokers = strings.Split(brokers, ",")
	for _, kv := range strings.Split(dbzProps, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if !strings.Contains(kv, "=") || strings.ContainsAny(kv, "\n\r") {
			return o, fmt.Errorf("-debezium-props: %q is not key=value", kv)
		}
		o.dbzProps = append(o.dbzProps, kv)
	}
	for _, t := range strings.Split(tools, ",") {
		t = strings.TrimSpace(t)
		if _, ok := slotSuffix[t]; !ok {
			return o, fmt.Errorf("-tools: unknown reader %q (pg_recvlogical, starstream, debezium)", t)
		}
		o.tools = append(o.tools, t)
	}
	if o.rows < 1 || o.tx < 1 || o.liveRows < 0 || o.liveTx < 1 || o.liveRate <= 0 {
		return o, errors.New("-rows, -tx, -live-tx and -live-rate must be positive, -live-rows not negative")
	}
	root, err := repoRoot()
	if err != nil {
		return o, err
	}
	o.root = root
	return o, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// repoRoot is the directory of the starstream go.mod at or above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/starstream/starstream\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the starstream repository (no go.mod of github.com/starstream/starstream above)")
		}
		dir = parent
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s compare: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (o options) has(tool string) bool { return slices.Contains(o.tools, tool) }

// bench holds one run's state; cleanup undoes what it created, in reverse order.
type bench struct {
	o        options
	run      string
	schema   string
	src      *source
	admin    *stream.Admin
	topics   map[string]string // tool → topic
	readers  map[string]*topicReader
	cleanups []func()
	res      result
}

func run(ctx context.Context, o options) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	runID := time.Now().UTC().Format("20060102_150405")
	b := &bench{o: o, run: runID, schema: "bench_" + runID, topics: map[string]string{}, readers: map[string]*topicReader{}}
	if b.o.out == "" {
		b.o.out = filepath.Join(o.root, ".data", "bench", "compare", runID)
	}
	if err := os.MkdirAll(b.o.out, 0o755); err != nil {
		return err
	}
	defer b.cleanup()
	if err := b.setup(ctx); err != nil {
		return err
	}
	if err := b.backlog(ctx); err != nil {
		return err
	}
	if o.has(toolRecv) {
		if err := b.drainRecvlogical(ctx); err != nil {
			return err
		}
	}
	var dbz *connectWorker
	if o.has(toolStarstream) {
		if err := b.drainStarstream(ctx); err != nil {
			return err
		}
	}
	if o.has(toolDebezium) {
		var err error
		if dbz, err = b.drainDebezium(ctx); err != nil {
			return err
		}
	}
	if o.liveRows > 0 && (o.has(toolStarstream) || o.has(toolDebezium)) {
		if err := b.live(ctx, dbz); err != nil {
			return err
		}
	} else if dbz != nil {
		if err := dbz.stop(); err != nil {
			logf("stop kafka connect: %v", err)
		}
	}
	b.res.Machine.LoadEnd = loadavg()
	b.report(os.Stdout)
	js, _ := json.MarshalIndent(b.res, "", "  ")
	if err := os.WriteFile(filepath.Join(b.o.out, "result.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	logf("result: %s", filepath.Join(b.o.out, "result.json"))
	return nil
}

func (b *bench) defer_(f func()) { b.cleanups = append(b.cleanups, f) }

func (b *bench) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

func (b *bench) slot(tool string) string { return b.schema + "_" + slotSuffix[tool] }

func (b *bench) setup(ctx context.Context) error {
	src, err := connectSource(ctx, b.o.dsn, b.schema)
	if err != nil {
		return err
	}
	b.src = src
	b.defer_(src.Close)
	b.res.Machine = describeMachine(ctx, b.o.root, src)
	b.res.Machine.DebeziumProps = b.o.dbzProps
	dropStale(ctx, src.db, logf)
	b.admin = stream.NewAdmin(b.o.brokers, nil)
	if b.o.has(toolDebezium) {
		// Resolve the jars now, so no download falls inside a measurement.
		if err := fetchConnect(ctx, b.connectScript()); err != nil {
			return err
		}
	}
	var readers []string
	for _, t := range b.o.tools {
		readers = append(readers, slotSuffix[t])
	}
	b.defer_(func() {
		if b.o.keep {
			logf("kept schema %s, its slots, publications and topics (-keep)", b.schema)
			return
		}
		if err := src.cleanup(readers); err != nil {
			logf("cleanup: %v", err)
		}
	})
	logf("run %s: schema %s, readers %s", b.run, b.schema, strings.Join(b.o.tools, ", "))
	if err := src.setup(ctx, readers); err != nil {
		return err
	}
	for _, t := range []string{toolStarstream, toolDebezium} {
		if !b.o.has(t) {
			continue
		}
		topic := stream.Topic(t, b.schema, "order_items") // <tool>.bench_<run>.order_items
		if err := createTopic(ctx, b.o.brokers, topic, 3); err != nil {
			return err
		}
		b.topics[t] = topic
		r := newTopicReader(t, topic, b.o.brokers)
		b.readers[t] = r
		b.defer_(r.Close)
	}
	b.defer_(func() {
		if b.o.keep || len(b.topics) == 0 {
			return
		}
		var ts []string
		for _, t := range b.topics {
			ts = append(ts, t)
		}
		if err := deleteTopics(b.o.brokers, ts...); err != nil {
			logf("cleanup: %v", err)
		}
	})
	return nil
}

func (b *bench) connectScript() string {
	return filepath.Join(b.o.root, "deploy", "bench", "debezium", "connect.sh")
}

func (b *bench) backlog(ctx context.Context) error {
	from, err := b.src.walLSN(ctx)
	if err != nil {
		return err
	}
	logf("writing the backlog: %d rows in transactions of %d, nothing reading", b.o.rows, b.o.tx)
	start := time.Now()
	if _, err := b.src.write(ctx, 1, int64(b.o.rows), b.o.tx, 0); err != nil {
		return err
	}
	took := time.Since(start)
	to, err := b.src.walLSN(ctx)
	if err != nil {
		return err
	}
	wal, err := b.src.walBytes(ctx, from, to)
	if err != nil {
		return err
	}
	b.res.Backlog = backlogInfo{Rows: b.o.rows, TxRows: b.o.tx, WALBytes: wal, WriteSeconds: took.Seconds(), EndLSN: to}
	logf("backlog written in %.1fs: %.0f MB of WAL up to %s", took.Seconds(), float64(wal)/1e6, to)
	return nil
}

// drainRecvlogical runs pg_recvlogical on its slot up to the backlog's end LSN, writing the
// pgoutput stream to /dev/null: the rate at which the walsender decodes these rows.
func (b *bench) drainRecvlogical(ctx context.Context) error {
	bin, err := recvlogical(ctx, b.src.db)
	if err != nil {
		return fmt.Errorf("pg_recvlogical: %w", err)
	}
	slot := b.slot(toolRecv)
	logf("drain: pg_recvlogical (%s) to %s", bin, b.res.Backlog.EndLSN)
	cmd := exec.CommandContext(ctx, bin, "-d", b.o.dsn, "--slot", slot, "--start", "--no-loop",
		"--endpos", b.res.Backlog.EndLSN, "-o", "proto_version=1", "-o", "publication_names="+slot, "-f", "/dev/null")
	out, err := os.Create(filepath.Join(b.o.out, "pg_recvlogical.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	smp := newSampler(cmd.Process.Pid, 50*time.Millisecond)
	ws := b.walsenderSampler(ctx, slot)
	err = cmd.Wait()
	took := time.Since(start)
	smp.Close()
	ws.close()
	if err != nil {
		return fmt.Errorf("pg_recvlogical: %w (see %s)", err, out.Name())
	}
	d := drainResult{Tool: toolRecv, Rows: b.o.rows, Seconds: took.Seconds(), StartToLast: took.Seconds(),
		RowsPerSec: float64(b.o.rows) / took.Seconds(), PeakRSSMiB: mib(smp.Peak()),
		CPUSeconds: smp.CPUTotal().Seconds(), WalsenderCPUSeconds: ws.cpu()}
	b.res.Drain = append(b.res.Drain, d)
	logf("drain: pg_recvlogical %.0f rows/s (%.2fs)", d.RowsPerSec, d.Seconds)
	// Its slot is done: drop it so it holds no WAL for the rest of the run.
	if err := dropReader(ctx, b.src.db, slot); err != nil {
		logf("drop slot %s: %v", slot, err)
	}
	return nil
}

// wsSampler samples the walsender of a slot once it appears.
type wsSampler struct {
	done chan struct{}
	smp  *sampler
}

func (b *bench) walsenderSampler(ctx context.Context, slot string) *wsSampler {
	w := &wsSampler{done: make(chan struct{})}
	// A connection of its own: the source connection is busy in the caller's goroutine.
	go func() {
		defer close(w.done)
		src, err := connectSource(ctx, b.o.dsn, b.schema)
		if err != nil {
			return
		}
		defer src.Close()
		pid, err := src.walsender(ctx, slot, 5*time.Minute)
		if err != nil {
			return
		}
		w.smp = newSampler(pid, 100*time.Millisecond)
	}()
	return w
}

func (w *wsSampler) wait() { <-w.done }

func (w *wsSampler) close() {
	w.wait()
	if w.smp != nil {
		w.smp.Close()
	}
}

func (w *wsSampler) cpu() float64 {
	if w.smp == nil {
		return 0
	}
	return w.smp.CPU().Seconds()
}

func (b *bench) childConfig() childConfig {
	return childConfig{DSN: b.o.dsn, Slot: b.slot(toolStarstream), Publication: b.slot(toolStarstream),
		Table: b.schema + ".order_items", TopicPrefix: toolStarstream, Brokers: b.o.brokers}
}

func (b *bench) drainStarstream(ctx context.Context) error {
	logf("drain: starstream capture (child process)")
	ch, err := startChild(b.childConfig(), filepath.Join(b.o.out, "starstream-drain.log"))
	if err != nil {
		return err
	}
	stopped := false
	b.defer_(func() {
		if !stopped {
			_ = ch.stop()
		}
	})
	smp := newSampler(ch.pid(), 50*time.Millisecond)
	ws := b.walsenderSampler(ctx, b.slot(toolStarstream))
	if err := b.waitDrain(ctx, toolStarstream, ch.alive); err != nil {
		return err
	}
	smp.Close()
	ws.close()
	stopped = true
	if err := ch.stop(); err != nil {
		logf("starstream capture stop: %v", err)
	}
	d := b.drainStats(toolStarstream, ch.started)
	d.PeakRSSMiB, d.CPUSeconds, d.WalsenderCPUSeconds = mib(smp.Peak()), smp.CPUTotal().Seconds(), ws.cpu()
	b.res.Drain = append(b.res.Drain, d)
	logf("drain: starstream %.0f rows/s (%.2fs), peak RSS %.0f MiB", d.RowsPerSec, d.Seconds, d.PeakRSSMiB)
	return nil
}

// drainDebezium starts Kafka Connect and leaves it running for the live phase.
func (b *bench) drainDebezium(ctx context.Context) (*connectWorker, error) {
	logf("drain: Debezium on Kafka Connect standalone")
	name := "bench-" + strings.ReplaceAll(b.run, "_", "-")
	slot := b.slot(toolDebezium)
	env := []string{"DBZ_SLOT=" + slot, "DBZ_PUBLICATION=" + slot, "DBZ_TABLES=" + b.schema + ".order_items",
		"DBZ_TOPIC_PREFIX=" + toolDebezium, fmt.Sprintf("DBZ_REST_PORT=%d", b.o.restPort),
		"DBZ_EXTRA=" + strings.Join(b.o.dbzProps, "\n")}
	ws := b.walsenderSampler(ctx, slot)
	w, err := startConnect(ctx, b.connectScript(), name, env)
	b.defer_(func() {
		if err := w.stop(); err != nil {
			logf("stop kafka connect: %v", err)
		}
	})
	if err != nil {
		return nil, err
	}
	smp := newSampler(w.pid, 50*time.Millisecond)
	if err := b.waitDrain(ctx, toolDebezium, w.alive); err != nil {
		return nil, err
	}
	smp.Close()
	ws.close()
	d := b.drainStats(toolDebezium, w.started)
	d.PeakRSSMiB, d.CPUSeconds, d.WalsenderCPUSeconds = mib(smp.Peak()), smp.CPUTotal().Seconds(), ws.cpu()
	b.res.Drain = append(b.res.Drain, d)
	logf("drain: debezium %.0f rows/s (%.2fs), peak RSS %.0f MiB", d.RowsPerSec, d.Seconds, d.PeakRSSMiB)
	return w, nil
}

// waitDrain waits until the tool's topic holds the whole backlog: end offsets first (no
// fetching while the tool works), then a read of the topic counting distinct rows.
func (b *bench) waitDrain(ctx context.Context, tool string, alive func() error) error {
	if err := waitRecords(ctx, b.admin, b.topics[tool], int64(b.o.rows), alive); err != nil {
		return err
	}
	return b.readers[tool].readUntil(ctx, b.o.rows)
}

func (b *bench) drainStats(tool string, started time.Time) drainResult {
	r := b.readers[tool]
	first, last := int64(1<<62), int64(0)
	for _, s := range r.samples {
		if s.id > int64(b.o.rows) {
			continue
		}
		first, last = min(first, s.appended), max(last, s.appended)
	}
	span := time.Duration(last-first) * time.Microsecond
	return drainResult{Tool: tool, Rows: len(r.samples), Duplicates: r.dups, Seconds: span.Seconds(),
		RowsPerSec:  float64(len(r.samples)) / span.Seconds(),
		StartToLast: time.UnixMicro(last).Sub(started).Seconds()}
}

// live runs both tools together while rows arrive at a steady rate.
func (b *bench) live(ctx context.Context, dbz *connectWorker) error {
	var live []string
	samplers := map[string]*sampler{}
	alive := map[string]func() error{}
	if b.o.has(toolStarstream) {
		ch, err := startChild(b.childConfig(), filepath.Join(b.o.out, "starstream-live.log"))
		if err != nil {
			return err
		}
		b.defer_(func() {
			if err := ch.stop(); err != nil {
				logf("starstream capture stop: %v", err)
			}
		})
		if _, err := b.src.walsender(ctx, b.slot(toolStarstream), time.Minute); err != nil {
			return err
		}
		samplers[toolStarstream] = newSampler(ch.pid(), 50*time.Millisecond)
		alive[toolStarstream] = ch.alive
		live = append(live, toolStarstream)
	}
	if dbz != nil {
		samplers[toolDebezium] = newSampler(dbz.pid, 50*time.Millisecond)
		alive[toolDebezium] = dbz.alive
		live = append(live, toolDebezium)
	}
	time.Sleep(2 * time.Second) // let the restarted capture settle (resume read, first keepalive)
	first, last := int64(b.o.rows)+1, int64(b.o.rows+b.o.liveRows)
	logf("live: %d rows at %.0f rows/s in transactions of %d, read by %s", b.o.liveRows, b.o.liveRate, b.o.liveTx, strings.Join(live, " and "))
	start := time.Now()
	commits, err := b.src.write(ctx, first, last, b.o.liveTx, b.o.liveRate)
	if err != nil {
		return err
	}
	wrote := time.Since(start)
	b.res.Live = liveInfo{Rows: b.o.liveRows, TxRows: b.o.liveTx, TargetRate: b.o.liveRate,
		AchievedRate: float64(b.o.liveRows) / wrote.Seconds()}
	for _, t := range live {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := b.readers[t].readUntil(rctx, b.o.rows+b.o.liveRows)
		cancel()
		if err != nil {
			return fmt.Errorf("live %s: %w (alive: %v)", t, err, alive[t]())
		}
	}
	for _, t := range live {
		smp := samplers[t]
		smp.Close()
		if err := writeSamples(filepath.Join(b.o.out, "live-"+t+".csv"), b.readers[t].samples, first); err != nil {
			logf("write samples: %v", err)
		}
		lr := latencyStats(t, b.readers[t].samples, first, commits, b.o.liveTx)
		lr.PeakRSSMiB, lr.CPUSeconds = mib(smp.Peak()), smp.CPU().Seconds()
		b.res.Live.Tools = append(b.res.Live.Tools, lr)
		logf("live: %s p50 %.1f ms, p99 %.1f ms, max %.1f ms", t, lr.P50ms, lr.P99ms, lr.MaxMs)
	}
	return nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
