package capture_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

// BenchmarkCapture is `make bench-capture`: the same rows read by
// pg_recvlogical (pgoutput) and by starstream capture into Kafka (acks=all,
// Avro), in one run, first as many small transactions, then as one
// transaction. It reports rows/s of both, their ratio, and capture's peak RSS.
//
// The machine is shared, and its load drifts within seconds, so
// pg_recvlogical reads the WAL twice, once before and once after capture (on
// slots of its own made before the load): its rate is the mean of the two
// durations, and the ratio compares capture with the load around it. Beside
// the wall clock it prints CPU seconds (utime+stime) of each reader and of
// the walsender serving it, which the load moves much less.
//
// STARSTREAM_BENCH_ROWS sets the row count (default 1,000,000);
// STARSTREAM_BENCH_LANES and STARSTREAM_BENCH_INFLIGHT override WriteLanes
// and MaxInFlight. The capture process writes a CPU profile to
// STARSTREAM_CHILD_CPUPROFILE and heap profiles at each new peak to
// STARSTREAM_CHILD_MEMPROFILE (see main_test.go); each shape overwrites the
// previous one's, so profile one shape at a time (-bench BenchmarkCapture/1_txn).
//
//	go test ./capture -run '^$' -bench BenchmarkCapture -benchtime 1x -timeout 30m
func BenchmarkCapture(b *testing.B) {
	rows := 1_000_000
	if v := os.Getenv("STARSTREAM_BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		rows = n
	}
	for i := 0; i < b.N; i++ {
		for _, shape := range []struct {
			name string
			txns int
		}{{"1000_txns", 1000}, {"1_txn", 1}} {
			b.Run(shape.name, func(b *testing.B) { benchOnce(b, rows, shape.txns) })
		}
	}
}

func benchOnce(b *testing.B, rows, txns int) {
	ctx := context.Background()
	db := capturetest.Connect(b)
	capturetest.RequireKafka(b)
	schema := capturetest.NewSchema(b)
	tbl := pgx.Identifier{schema, "order_items"}.Sanitize()
	mustExec(b, db, "CREATE TABLE "+tbl+` (order_item_id bigint PRIMARY KEY, order_id bigint NOT NULL,
		product_id bigint NOT NULL, seller_id bigint NOT NULL, quantity int NOT NULL,
		unit_price numeric(12,2) NOT NULL, discount numeric(12,2) NOT NULL)`)
	cfg := capturetest.Config(b, schema)
	cfg.StatusInterval = 10 * time.Second
	cfg.MarkInterval = 200 * time.Millisecond
	if v := os.Getenv("STARSTREAM_BENCH_LANES"); v != "" {
		cfg.WriteLanes, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("STARSTREAM_BENCH_INFLIGHT"); v != "" {
		cfg.MaxInFlight, _ = strconv.Atoi(v)
	}
	logPath := filepath.Join(b.TempDir(), "capture.log")
	b.Cleanup(func() {
		if b.Failed() {
			logText, _ := os.ReadFile(logPath)
			b.Logf("capture log:\n%s", logText)
		}
	})

	// Every slot exists before the rows are written, so all read the same WAL.
	// A slot is listed (and active) while CREATE_REPLICATION_SLOT still waits
	// for other sessions' transactions: stopping capture then would lose the
	// slot, and the next run would create it after the rows, with nothing to do.
	child := startChild(b, cfg, logPath)
	capturetest.Eventually(b, 60*time.Second, "capture streaming", func() bool {
		logText, _ := os.ReadFile(logPath)
		return strings.Contains(string(logText), "msg=streaming")
	})
	_ = child.Process.Signal(syscall.SIGTERM)
	capturetest.Eventually(b, 60*time.Second, "capture stopped", func() bool {
		s, _ := capturetest.Slot(b, db, cfg.Slot)
		return !s.Active && syscall.Kill(child.Process.Pid, 0) != nil // exited and reaped
	})
	if _, ok := capturetest.Slot(b, db, cfg.Slot); !ok {
		b.Fatalf("slot %s gone after the first capture run", cfg.Slot)
	}
	recvSlots := [2]string{capturetest.Unique(b, "r"), capturetest.Unique(b, "r")}
	for _, s := range recvSlots {
		mustExec(b, db, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s)
		b.Cleanup(func() {
			c, err := pgx.Connect(context.Background(), capturetest.DSN())
			if err == nil {
				_, _ = c.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", s)
				c.Close(context.Background())
			}
		})
	}

	per := rows / txns
	loadStart := time.Now()
	for i := 0; i < txns; i++ {
		mustExec(b, db, "INSERT INTO "+tbl+` SELECT g, g / 4, g % 5000, g % 300, 1 + g % 5, (g % 10000) / 100.0, (g % 7) / 10.0
			FROM generate_series($1::bigint, $2::bigint) g`, i*per+1, (i+1)*per)
	}
	var endStr string
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&endStr); err != nil {
		b.Fatal(err)
	}
	end, _ := stream.ParseLSN(endStr)
	if s, ok := capturetest.Slot(b, db, cfg.Slot); !ok || s.ConfirmedFlush >= end {
		b.Fatalf("slot %s (present %v) already confirmed %s, at or past the end of the load %s", cfg.Slot, ok, s.ConfirmedFlush, end)
	}
	b.Logf("%d rows in %d transactions written in %s", rows, txns, time.Since(loadStart).Round(time.Millisecond))
	loadBefore := loadAvg()
	broker := brokerPID()

	brokerCPU0 := procCPU(broker)
	recvA := recvlogical(b, recvSlots[0], cfg.Publication, endStr)
	brokerCPU1 := procCPU(broker)

	// Capture, until the slot confirmed the end of the load (Kafka acknowledged all).
	logSize := fileSize(logPath)
	capStart := time.Now()
	child = startChild(b, cfg, logPath)
	sender := watchWalsender(b, cfg.Slot)
	var peak atomic.Int64
	var streamingAt atomic.Int64 // ns after capStart
	stop := make(chan struct{})
	go func() {
		for {
			if kb := vmHWM(child.Process.Pid); kb > peak.Load() {
				peak.Store(kb)
			}
			if streamingAt.Load() == 0 && logContains(logPath, logSize, "msg=streaming") {
				streamingAt.Store(int64(time.Since(capStart)))
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	capturetest.Eventually(b, 20*time.Minute, "capture to confirm the end of the load", func() bool {
		s, _ := capturetest.Slot(b, db, cfg.Slot)
		return s.ConfirmedFlush >= end
	})
	capDur := time.Since(capStart)
	capCPU := procCPU(child.Process.Pid)
	capSenderCPU := sender.stop()
	brokerCPU2 := procCPU(broker)
	if kb := vmHWM(child.Process.Pid); kb > peak.Load() {
		peak.Store(kb)
	}
	close(stop)
	_ = child.Process.Signal(syscall.SIGTERM)

	brokerCPU3 := procCPU(broker)
	recvB := recvlogical(b, recvSlots[1], cfg.Publication, endStr)
	brokerCPU4 := procCPU(broker)
	loadAfter := loadAvg()

	// A figure is only worth reporting if every row is in Kafka.
	topic := stream.Topic(cfg.TopicPrefix, schema, "order_items")
	first, last, err := stream.NewAdmin(capturetest.Brokers(), nil).EndOffsets(ctx, topic)
	if err != nil {
		b.Fatalf("end offsets of %s: %v", topic, err)
	}
	var records int64
	for p := range last {
		records += last[p] - first[p]
	}
	if records < int64(rows) {
		b.Fatalf("capture confirmed the end of the load with %d records in %s, fewer than %d rows", records, topic, rows)
	}

	recv := (recvA.dur + recvB.dur) / 2
	recvRate := float64(rows) / recv.Seconds()
	capRate := float64(rows) / capDur.Seconds()
	perM := 1e6 / float64(rows) // CPU seconds per million rows
	b.ReportMetric(recvRate, "recvlogical_rows/s")
	b.ReportMetric(capRate, "capture_rows/s")
	b.ReportMetric(capRate/recvRate, "ratio")
	b.ReportMetric(float64(peak.Load())/1024, "capture_peak_MB")
	b.ReportMetric(capCPU.Seconds()*perM, "capture_cpu_s/Mrows")
	fmt.Printf("bench-capture %s: pg_recvlogical %.0f rows/s (%s before capture, %s after), capture %.0f rows/s (%s incl. %s start), ratio %.2f, capture peak RSS %.0f MB\n",
		b.Name(), recvRate, recvA.dur.Round(time.Millisecond), recvB.dur.Round(time.Millisecond), capRate, capDur.Round(time.Millisecond),
		(time.Duration(streamingAt.Load())).Round(10*time.Millisecond), capRate/recvRate, float64(peak.Load())/1024)
	fmt.Printf("bench-capture %s: CPU s per 1M rows: capture %.1f + its walsender %.1f; pg_recvlogical %.1f/%.1f + its walsender %.1f/%.1f (before/after); load average %s → %s\n",
		b.Name(), capCPU.Seconds()*perM, capSenderCPU.Seconds()*perM, recvA.cpu.Seconds()*perM, recvB.cpu.Seconds()*perM,
		recvA.senderCPU.Seconds()*perM, recvB.senderCPU.Seconds()*perM, loadBefore, loadAfter)
	if broker != 0 {
		// The broker is shared: what it spends while pg_recvlogical runs is
		// other tests' traffic, the floor under its figure during capture.
		fmt.Printf("bench-capture %s: Kafka broker CPU s: %.1f during capture (%.1f/s), %.1f/%.1f during pg_recvlogical (%.1f/s: other clients)\n",
			b.Name(), (brokerCPU2 - brokerCPU1).Seconds(), (brokerCPU2-brokerCPU1).Seconds()/capDur.Seconds(),
			(brokerCPU1 - brokerCPU0).Seconds(), (brokerCPU4 - brokerCPU3).Seconds(),
			(brokerCPU1-brokerCPU0+brokerCPU4-brokerCPU3).Seconds()/(recvA.dur+recvB.dur).Seconds())
	}
}

type recvRun struct {
	dur, cpu, senderCPU time.Duration
}

// recvlogical reads slot to end with pg_recvlogical (pgoutput, to /dev/null).
func recvlogical(b *testing.B, slot, publication, end string) recvRun {
	b.Helper()
	start := time.Now()
	cmd := osexec.Command("pg_recvlogical", "-d", capturetest.DSN(), "--slot", slot, "--start",
		"-o", "proto_version=1", "-o", "publication_names="+publication, "-E", end, "-f", "/dev/null", "--no-loop")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("pg_recvlogical: %v", err)
	}
	sender := watchWalsender(b, slot)
	if err := cmd.Wait(); err != nil {
		b.Fatalf("pg_recvlogical: %v: %s", err, out.Bytes())
	}
	r := recvRun{dur: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	r.senderCPU = sender.stop()
	return r
}

// walsenderWatch follows the CPU time of the walsender serving a slot. The
// walsender's /proc entry goes when its client disconnects, so it keeps the
// last reading (up to 20 ms of CPU short).
type walsenderWatch struct {
	cpu  atomic.Int64
	quit chan struct{}
	done chan struct{}
}

func watchWalsender(b *testing.B, slot string) *walsenderWatch {
	b.Helper()
	db, err := pgx.Connect(context.Background(), capturetest.DSN())
	if err != nil {
		b.Fatal(err)
	}
	w := &walsenderWatch{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer db.Close(context.Background())
		pid := 0
		for {
			if pid == 0 {
				var p *int32
				if db.QueryRow(context.Background(), "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&p) == nil && p != nil {
					pid = int(*p)
				}
			}
			if pid != 0 {
				if c := procCPU(pid); c > 0 {
					w.cpu.Store(int64(c))
				}
			}
			select {
			case <-w.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch and returns the walsender's CPU time.
func (w *walsenderWatch) stop() time.Duration {
	close(w.quit)
	<-w.done
	return time.Duration(w.cpu.Load())
}

// procCPU returns utime+stime of a process (0 if gone).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command, which may hold spaces, in parentheses:
	// state is field 3, utime 14, stime 15 (in USER_HZ, 100 on Linux).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100)
}

// brokerPID returns the PID of the Kafka broker listening on the port of
// capturetest.Brokers() (a kafka.Kafka process whose properties file names
// that port), or 0 when there is not exactly one.
func brokerPID() int {
	_, port, _ := strings.Cut(capturetest.Brokers()[0], ":")
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	found := 0
	for _, d := range dirs {
		raw, err := os.ReadFile(d)
		if err != nil || !bytes.Contains(raw, []byte("kafka.Kafka\x00")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		props, err := os.ReadFile(args[len(args)-1])
		if err != nil || !bytes.Contains(props, []byte(":"+port+"\n")) && !bytes.Contains(props, []byte(":"+port+",")) {
			continue
		}
		if found != 0 {
			return 0
		}
		found, _ = strconv.Atoi(filepath.Base(filepath.Dir(d)))
	}
	return found
}

func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 1 {
		return "?"
	}
	return f[0]
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logContains reports whether the file, from offset on, contains s.
func logContains(path string, offset int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < offset {
		return false
	}
	return bytes.Contains(data[offset:], []byte(s))
}

func mustExec(b testing.TB, db *pgx.Conn, sql string, args ...any) {
	b.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}

// vmHWM returns the peak resident set size of a process in kB (0 if gone).
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
