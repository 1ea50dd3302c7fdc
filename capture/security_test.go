package capture_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// TestLeastPrivilegeCaptureOverTLSAndSASL runs capture as starstream_capture
// (LOGIN REPLICATION, no superuser) over TLS with the server certificate
// verified, into Kafka over SASL_SSL. The role cannot create the publication:
// capture says so, naming the statement for the admin, and works once the
// admin created it.
func TestLeastPrivilegeCaptureOverTLSAndSASL(t *testing.T) {
	t.Parallel()
	admin := capturetest.Connect(t)
	dsn := capturetest.CaptureDSN(t)
	brokers := streamtest.SASLBrokers(t)
	sec := streamtest.Security(t)
	ctx := context.Background()

	role, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer role.Close(ctx)
	var super, repl, ssl bool
	if err := role.QueryRow(ctx, `SELECT r.rolsuper, r.rolreplication, s.ssl FROM pg_roles r, pg_stat_ssl s
		WHERE r.rolname = current_user AND s.pid = pg_backend_pid()`).Scan(&super, &repl, &ssl); err != nil {
		t.Fatal(err)
	}
	if super || !repl || !ssl {
		t.Fatalf("role %s: superuser %v, replication %v, connection encrypted %v; want false, true, true",
			capturetest.CaptureRole, super, repl, ssl)
	}

	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "items"}.Sanitize()
	exec(t, admin, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, name text NOT NULL)")
	for i := 1; i <= 20; i++ {
		exec(t, admin, "INSERT INTO "+tbl+" VALUES ($1, $2)", i, fmt.Sprintf("item %d", i))
	}
	// What a production admin grants: read access to the captured tables only.
	exec(t, admin, "GRANT USAGE ON SCHEMA "+pgx.Identifier{schema}.Sanitize()+" TO "+capturetest.CaptureRole)
	exec(t, admin, "GRANT SELECT ON "+tbl+" TO "+capturetest.CaptureRole)

	cfg := capturetest.Config(t, schema)
	cfg.DSN, cfg.Brokers, cfg.KafkaSecurity = dsn, brokers, sec
	codecs := stream.NewCodecs()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Security: sec, Topics: stream.TopicConfig{Partitions: 3}},
		codecs, capturetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Without a publication, capture stops at once with what the admin must run.
	c, err := capture.New(cfg, w, capturetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = c.Run(rctx)
	cancel()
	if !errors.Is(err, capture.ErrPrivilege) || !capture.IsTerminal(err) {
		t.Fatalf("run without a publication: %v; want a terminal ErrPrivilege", err)
	}
	if !strings.Contains(err.Error(), "CREATE PUBLICATION") {
		t.Errorf("error does not name the statement for the admin: %v", err)
	}
	if strings.Contains(err.Error(), capturetest.CapturePassword) || !strings.Contains(err.Error(), capturetest.CaptureRole) {
		t.Errorf("error shows the password or does not name the role: %v", err)
	}
	t.Logf("as expected: %v", err)

	if !strings.Contains(err.Error(), "TABLE "+`"public"."starstream_signal"`) {
		t.Errorf("the statement for the admin leaves out the signal table: %v", err)
	}
	exec(t, admin, "CREATE PUBLICATION "+pgx.Identifier{cfg.Publication}.Sanitize()+" FOR TABLES IN SCHEMA "+
		pgx.Identifier{schema}.Sanitize()+", TABLE public.starstream_signal")
	run := capturetest.Start(t, cfg, w)
	capturetest.Eventually(t, 60*time.Second, "slot created", func() bool {
		_, ok := capturetest.Slot(t, admin, cfg.Slot)
		return ok
	})
	for i := 21; i <= 30; i++ {
		exec(t, admin, "INSERT INTO "+tbl+" VALUES ($1, $2)", i, fmt.Sprintf("item %d", i))
	}
	exec(t, admin, "UPDATE "+tbl+" SET name = 'renamed' WHERE id = 3")
	// A backfill as the role: its chunks lock the table (ACCESS SHARE, which
	// SELECT allows), as the snapshot workers did.
	job, err := capture.RequestBackfill(ctx, cfg, schema+".items")
	if err != nil {
		t.Fatal(err)
	}
	var st capture.BackfillStatus
	capturetest.Eventually(t, 60*time.Second, "backfill "+job+" done", func() bool {
		if st, err = capture.Backfill(ctx, cfg, job); err != nil {
			t.Fatal(err)
		}
		return st.Done
	})
	if st.Rows != 30 || st.Error != "" {
		t.Errorf("backfill as %s: %+v; want 30 rows", capturetest.CaptureRole, st)
	}
	fence := capturetest.Fence(t, admin)
	recs := capturetest.ReadUntil(t, stream.Topic("cdc", schema, "items"), codecs, fence, 90*time.Second)

	// Both of capture's connections (queries and the walsender) are the
	// least-privilege role over TLS.
	var conns, encrypted int
	if err := admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a
		JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1 AND a.application_name LIKE 'starstream-capture/%'`,
		capturetest.CaptureRole).Scan(&conns, &encrypted); err != nil {
		t.Fatal(err)
	}
	if err := run.Stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if conns < 2 || encrypted != conns {
		t.Errorf("capture connections as %s: %d, encrypted %d; want at least 2, all encrypted", capturetest.CaptureRole, conns, encrypted)
	}
	state := map[int64]string{}
	for _, ev := range capturetest.Events(recs) {
		state[ev.After["id"].(int64)] = ev.After["name"].(string)
	}
	if len(state) != 30 || state[3] != "renamed" || state[30] != "item 30" {
		t.Errorf("captured %d rows (id 3 %q, id 30 %q); want 30 with id 3 renamed", len(state), state[3], state[30])
	}
}
