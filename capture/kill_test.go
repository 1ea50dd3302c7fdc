package capture_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// startChild runs one capture process (this test binary in child mode).
func startChild(t testing.TB, cfg capture.Config, logPath string, env ...string) *osexec.Cmd {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := osexec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+string(js)), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	return cmd
}

// TestKillNine: capture is killed with SIGKILL at random moments (during the
// snapshot, mid-transaction, between commits) while traffic runs, and
// restarted each time. Afterwards the topics pass the ordering validator (per
// key never older after newer, nothing at or below an emitted watermark) and
// replaying them gives exactly the tables: no loss.
func TestKillNine(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	acct := pgx.Identifier{schema, "acct"}.Sanitize()
	logT := pgx.Identifier{schema, "log"}.Sanitize()
	exec(t, db, "CREATE TABLE "+acct+" (k int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "CREATE TABLE "+logT+" (k int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "INSERT INTO "+acct+" SELECT g, 0 FROM generate_series(1, 20) g")
	exec(t, db, "INSERT INTO "+logT+" SELECT g, 0 FROM generate_series(1, 5000) g") // a snapshot worth killing
	cfg := capturetest.Config(t, schema)
	cfg.ChunkEvents = 200
	cfg.MaxInFlight = 1000
	cfg.SnapshotChunkRows = 1000
	capturetest.RequireKafka(t)
	logPath := filepath.Join(t.TempDir(), "capture.log")
	t.Cleanup(func() {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "DATA RACE") {
			t.Error("a capture process reported a data race")
		}
		if t.Failed() {
			t.Logf("capture log:\n%s", b)
		} else if testing.Verbose() {
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "resumed past") || strings.Contains(line, "snapshot") || strings.Contains(line, "WARN") {
					t.Log(line)
				}
			}
		}
	})

	// Traffic: small transactions on a few hot keys, and larger ones.
	next := 5001
	trng := rand.New(rand.NewPCG(1, 2))
	stopTraffic, txns := traffic(t, func(ctx context.Context, conn *pgx.Conn) error {
		var err error
		switch trng.IntN(4) {
		case 0, 1:
			_, err = conn.Exec(ctx, "UPDATE "+acct+" SET v = v + 1 WHERE k = $1", 1+trng.IntN(20))
		case 2:
			_, err = conn.Exec(ctx, "INSERT INTO "+logT+" SELECT g, g FROM generate_series($1::int, $2::int) g", next, next+199)
			next += 200
		case 3:
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE "+acct+" SET v = v + 1"); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "DELETE FROM "+logT+" WHERE k = $1", trng.IntN(next))
				return err
			})
		}
		if err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
		return nil
	})

	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 8; i++ {
		var env []string
		if i == 0 {
			env = append(env, childDelayEnv+"=40ms") // killed in the middle of its snapshot
		}
		cmd := startChild(t, cfg, logPath, env...)
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	}
	stopTraffic()
	if t.Failed() {
		return
	}
	cmd := startChild(t, cfg, logPath)
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM) }()
	// A snapshot killed before it finished ends while streaming, at positions
	// after those of the traffic: the fence must come after it.
	capturetest.WaitSnapshot(t, db, cfg, 4*time.Minute)
	fence := capturetest.Fence(t, db)
	t.Logf("%d transactions of traffic", txns.Load())

	v := streamtest.NewValidator()
	codecs := stream.NewCodecs()
	for _, tbl := range []string{"acct", "log"} {
		q := pgx.Identifier{schema, tbl}.Sanitize()
		topic := stream.Topic("cdc", schema, tbl)
		recs := capturetest.ReadUntil(t, topic, codecs, fence, 4*time.Minute)
		validate(v, topic, recs)
		evs := capturetest.Events(recs)
		state := replay(evs)
		assertTable(t, db, q, state)
		t.Logf("%s: %d records", tbl, len(recs))
	}
	v.Check(t)
}

// validate feeds records (in partition, then offset order) to the validator.
// A truncate is sent to every partition: it is keyed by its partition, so the
// truncates of one partition are compared with each other only.
func validate(v *streamtest.Validator, topic string, recs []capturetest.Record) {
	for _, r := range recs {
		switch {
		case r.Marker != 0:
			v.Marker(topic, r.Partition, r.Marker)
		case r.Event.Op == stream.OpTruncate:
			v.Observe(topic, r.Partition, fmt.Sprintf("truncate/%d", r.Partition), r.Event.Pos)
		default:
			v.Observe(topic, r.Partition, fmt.Sprint(r.Key), r.Event.Pos)
		}
	}
}

// replay applies events in position order (duplicates are idempotent) and
// returns k → v.
func replay(evs []stream.Event) map[int64]int64 {
	sorted := capturetest.Events(recordsOf(evs))
	state := map[int64]int64{}
	for _, ev := range sorted {
		switch ev.Op {
		case stream.OpSnapshot, stream.OpInsert, stream.OpUpdate:
			state[ev.After["k"].(int64)] = ev.After["v"].(int64)
		case stream.OpDelete:
			delete(state, ev.Key["k"].(int64))
		case stream.OpTruncate:
			clear(state)
		default:
			panic(fmt.Sprint("op ", ev.Op))
		}
	}
	return state
}

func recordsOf(evs []stream.Event) []capturetest.Record {
	out := make([]capturetest.Record, len(evs))
	for i, ev := range evs {
		out[i] = capturetest.Record{Event: ev}
	}
	return out
}
