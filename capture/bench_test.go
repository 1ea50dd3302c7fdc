package capture_test

import (
	"bufio"
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
// STARSTREAM_BENCH_ROWS sets the row count (default 1,000,000);
// STARSTREAM_BENCH_LANES and STARSTREAM_BENCH_INFLIGHT override WriteLanes
// and MaxInFlight. The capture process writes a CPU profile to
// STARSTREAM_CHILD_CPUPROFILE and heap profiles at each new peak to
// STARSTREAM_CHILD_MEMPROFILE (see main_test.go). The machine is shared:
// compare ratios of one run, and run twice.
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

	// Both slots exist before the rows are written, so both read the same WAL.
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
	recvSlot := capturetest.Unique(b, "r")
	mustExec(b, db, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", recvSlot)
	b.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), capturetest.DSN())
		if err == nil {
			_, _ = c.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", recvSlot)
			c.Close(context.Background())
		}
	})

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

	// pg_recvlogical, to the end of the load.
	recvStart := time.Now()
	cmd := osexec.Command("pg_recvlogical", "-d", capturetest.DSN(), "--slot", recvSlot, "--start",
		"-o", "proto_version=1", "-o", "publication_names="+cfg.Publication, "-E", endStr, "-f", "/dev/null", "--no-loop")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pg_recvlogical: %v: %s", err, out)
	}
	recv := time.Since(recvStart)

	// Capture, until the slot confirmed the end of the load (Kafka acknowledged all).
	capStart := time.Now()
	child = startChild(b, cfg, logPath)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			if kb := vmHWM(child.Process.Pid); kb > peak.Load() {
				peak.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	capturetest.Eventually(b, 20*time.Minute, "capture to confirm the end of the load", func() bool {
		s, _ := capturetest.Slot(b, db, cfg.Slot)
		return s.ConfirmedFlush >= end
	})
	capDur := time.Since(capStart)
	if kb := vmHWM(child.Process.Pid); kb > peak.Load() {
		peak.Store(kb)
	}
	close(stop)
	_ = child.Process.Signal(syscall.SIGTERM)
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

	recvRate := float64(rows) / recv.Seconds()
	capRate := float64(rows) / capDur.Seconds()
	b.ReportMetric(recvRate, "recvlogical_rows/s")
	b.ReportMetric(capRate, "capture_rows/s")
	b.ReportMetric(capRate/recvRate, "ratio")
	b.ReportMetric(float64(peak.Load())/1024, "capture_peak_MB")
	fmt.Printf("bench-capture %s: pg_recvlogical %.0f rows/s (%s), capture %.0f rows/s (%s, incl. start), ratio %.2f, capture peak RSS %.0f MB\n",
		b.Name(), recvRate, recv.Round(time.Millisecond), capRate, capDur.Round(time.Millisecond), capRate/recvRate, float64(peak.Load())/1024)
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
