package capture_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// slotHolder returns the instance whose walsender holds the slot, or "".
func slotHolder(t *testing.T, db *pgx.Conn, slot string) string {
	t.Helper()
	var app string
	err := db.QueryRow(context.Background(), `SELECT a.application_name FROM pg_replication_slots s
		JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1`, slot).Scan(&app)
	if errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(app, "starstream-capture/")
}

// TestHATakeover: two capture processes on one slot; one leads, the other
// waits. Killing the leader with SIGKILL makes the standby take over within
// seconds, twice over, while traffic runs; the stream loses nothing and keeps
// its order.
func TestHATakeover(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "kv"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (k int PRIMARY KEY, v int NOT NULL)")
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, 0 FROM generate_series(1, 50) g")
	capturetest.RequireKafka(t)
	cfg := capturetest.Config(t, schema)
	logPath := filepath.Join(t.TempDir(), "capture.log")

	updates := 0
	stopTraffic, _ := traffic(t, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE k = $1", 1+updates%50)
		updates++
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
		return nil
	})

	procs := map[string]interface{ Signal(syscall.Signal) }{}
	start := func(name string) {
		c := cfg
		c.Instance = name
		cmd := startChild(t, c, logPath)
		procs[name] = signaler{cmd.Process.Signal}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	}
	start("a")
	start("b")
	var leader string
	capturetest.Eventually(t, 60*time.Second, "a leader holding the slot", func() bool {
		leader = slotHolder(t, db, cfg.Slot)
		return leader != ""
	})
	for round := 0; round < 2; round++ {
		time.Sleep(time.Second)
		other := map[string]string{"a": "b", "b": "a"}[leader]
		killed := time.Now()
		procs[leader].Signal(syscall.SIGKILL)
		capturetest.Eventually(t, 60*time.Second, "standby "+other+" taking over", func() bool {
			return slotHolder(t, db, cfg.Slot) == other
		})
		t.Logf("round %d: %s killed, %s streaming after %s", round, leader, other, time.Since(killed).Round(10*time.Millisecond))
		start(leader) // comes back as the standby
		leader = other
	}
	stopTraffic()
	capturetest.WaitSnapshot(t, db, cfg, 2*time.Minute)
	fence := capturetest.Fence(t, db)
	v := streamtest.NewValidator()
	topic := stream.Topic("cdc", schema, "kv")
	recs := capturetest.ReadUntil(t, topic, stream.NewCodecs(), fence, 2*time.Minute)
	validate(v, topic, recs)
	assertTable(t, db, tbl, replay(capturetest.Events(recs)))
	v.Check(t)
	if s := slotHolder(t, db, cfg.Slot); s != leader {
		t.Errorf("slot held by %q, want %q", s, leader)
	}
}

type signaler struct{ f func(os.Signal) error }

func (s signaler) Signal(sig syscall.Signal) { _ = s.f(sig) }
