package capture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
)

// Backfills re-read a table while streaming goes on, without blocking writers, the way
// DBLog does (Andreas Andreakis, Ioannis Papapanagiotou, "DBLog: A Watermark
// Based Change-Data-Capture Framework", 2020). Each chunk of rows (keyset
// pagination in primary-key order) is read between two rows written to the
// signal table, a low and a high watermark:
//
//  1. the backfiller announces the chunk to the reader (an in-memory window)
//     and commits a low-watermark row;
//  2. it reads the chunk in a REPEATABLE READ transaction S, keeping S's
//     transaction snapshot (pg_current_snapshot); S locks the table (ACCESS
//     SHARE, before its snapshot) so that no rewrite empties it (lockTables);
//  3. it commits a high-watermark row.
//
// The reader sees both rows in the WAL, in commit order. It always keeps the
// keys changed by the last transactions on every captured table (a bounded
// history, see histMax*; a transaction logged before a job started may still
// be invisible to its first chunk), and within a window the keys changed
// after the low watermark. At the high watermark it drops from the chunk
// every key changed by a transaction logged before the high watermark that
// S could not see (PostgreSQL makes commits visible in a slightly different
// order than it logs them, later with synchronous replication: a transaction
// logged before the low watermark may still be invisible to S), then emits
// the rest as OpSnapshot events at the high watermark's position: inside its
// transaction, before its commit, so the watermark marker that follows the
// commit is written after them. A row emitted there is the key's latest
// version as of the high watermark: newer than every earlier change of the
// key, older than every later one. A dropped key gets its newer version from
// the stream itself; if that change left TOAST values out (unchanged), a
// consumer that starts with the backfill would never get them, so the key
// is read again in the next chunk (window.reread, dropped).
//
// Jobs (progress.go) are backfill requests: a "backfill" row in the signal
// table, written by `starstream backfill`. A chunk's end key is recorded once
// Kafka acknowledged the chunk. The reader records the high watermark of the
// chunk it publishes before it publishes it: after a crash, rows of that
// chunk already in Kafka are found by that position and not published again
// (prepare). Two crashes within one chunk may publish some of its rows twice,
// at newer positions, which sinks take as upserts. (An initial snapshot
// interrupted by a crash is not finished this way but before streaming, at
// its consistent point: see resumeSnapshot.)
type backfiller struct {
	c      *Capture
	active atomic.Pointer[window] // the chunk being read, at most one
	wake   chan struct{}

	// skip holds, per table, the encoded keys that the chunk being published
	// when an earlier run died had published: they are not published again.
	skip map[string]map[string]struct{}
	// again holds, per job, the keys to read again (window.reread), kept
	// when a chunk fails and its job is retried.
	again map[string][][]string
}

func newBackfiller(c *Capture) *backfiller {
	return &backfiller{c: c, wake: make(chan struct{}, 1), skip: map[string]map[string]struct{}{}, again: map[string][][]string{}}
}

func (b *backfiller) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// window is one chunk between its watermarks. The reader owns lowSeen,
// changed, pre and truncated; the backfiller fills the rest before it writes
// the high watermark, and closes ready.
type window struct {
	id    string
	job   string
	table string // schema.table

	lowSeen   bool
	changed   map[string]struct{} // keys changed after the low watermark
	overflow  bool                // more of them than changed keeps
	pre       []histTxn           // the history when the low watermark was seen
	lowSeq    uint64              // transactions remembered by then
	truncated bool
	relations []*relation // versions of the table streamed after the low watermark

	ready chan struct{}
	rel   *relation
	rows  []stream.Event
	keys  []string
	raw   [][]string // the rows' key columns as text (keyed tables)
	snap  txSnapshot

	// reread: keys of dropped rows whose change events left TOAST values
	// out, set before emitted: the next chunk reads them again.
	reread [][]string

	emitted chan int   // rows emitted at the high watermark
	failed  chan error // the chunk must be read again
	acked   chan struct{}
}

func newWindow(table string) *window {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &window{id: hex.EncodeToString(b[:]), table: table, changed: map[string]struct{}{},
		ready: make(chan struct{}), emitted: make(chan int, 1), failed: make(chan error, 1), acked: make(chan struct{})}
}

// txSnapshot is a transaction snapshot (pg_current_snapshot): xmin:xmax:xip.
type txSnapshot struct {
	xmin, xmax uint64
	xip        map[uint64]struct{}
}

func parseTxSnapshot(s string) (txSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return txSnapshot{}, fmt.Errorf("snapshot %q: not xmin:xmax:xip", s)
	}
	var ts txSnapshot
	var err error
	if ts.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return ts, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if ts.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return ts, fmt.Errorf("snapshot %q: %w", s, err)
	}
	ts.xip = map[uint64]struct{}{}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return ts, fmt.Errorf("snapshot %q: %w", s, err)
			}
			ts.xip[n] = struct{}{}
		}
	}
	return ts, nil
}

// visible reports whether the snapshot sees the changes of a committed
// transaction, given its 32-bit id from pgoutput (extended by xmax's epoch).
func (s txSnapshot) visible(xid uint32) bool {
	x := s.xmax&^0xffffffff | uint64(xid)
	if x > s.xmax+1<<31 && x >= 1<<32 {
		x -= 1 << 32
	}
	if x >= s.xmax {
		return false
	}
	_, running := s.xip[x]
	return !running
}

// keyString is a comparable form of a key's decoded values. It runs for
// every change captured (track), so the common key types skip fmt.
func keyString(k map[string]any) string {
	var buf [64]byte // on the stack: one allocation, the string
	b := buf[:0]
	if len(k) == 1 {
		for n, v := range k {
			return string(appendKeyPart(b, n, v))
		}
	}
	names := make([]string, 0, len(k))
	for n := range k {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b = appendKeyPart(b, n, k[n])
	}
	return string(b)
}

// appendKeyPart appends "name=type:value\x00".
func appendKeyPart(b []byte, n string, v any) []byte {
	b = append(append(b, n...), '=')
	switch v := v.(type) {
	case int64:
		b = strconv.AppendInt(append(b, "int64:"...), v, 10)
	case int32:
		b = strconv.AppendInt(append(b, "int32:"...), int64(v), 10)
	case string:
		b = append(append(b, "string:"...), v...)
	default:
		b = fmt.Appendf(b, "%T:%v", v, v)
	}
	return append(b, 0)
}

// run executes the slot's unfinished jobs, then waits for requests, until ctx ends.
func (b *backfiller) run(ctx context.Context) error {
	conn, err := b.c.connect(ctx)
	for err != nil {
		if ctx.Err() != nil {
			return nil
		}
		b.c.log.Warn("backfill: connect failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
		conn, err = b.c.connect(ctx)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	backoff := time.Second
	for ctx.Err() == nil {
		if err := b.runOnce(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if conn.IsClosed() {
				return fmt.Errorf("backfill: %w", err) // the session restarts
			}
			b.c.log.Warn("backfill failed; retrying", "error", err, "backoff", backoff.String())
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		backoff = time.Second
		select {
		case <-ctx.Done():
		case <-b.wake:
		}
	}
	return nil
}

// runOnce runs every unfinished job of the slot, oldest first.
func (b *backfiller) runOnce(ctx context.Context, conn *pgx.Conn) error {
	jobs, err := b.c.loadProgress(ctx, conn, "")
	if err != nil {
		return err
	}
	// Watermark rows of chunks a crashed or failed run left: no window
	// waits for them any more (one job runs at a time, here).
	if _, err := conn.Exec(ctx, `DELETE FROM `+b.c.signalIdent()+` WHERE slot_name = $1 AND kind IN ('low', 'high')`,
		b.c.cfg.Slot); err != nil {
		return fmt.Errorf("clean signal table: %w", err)
	}
	for _, j := range jobs {
		if j.done || j.job == snapshotJob { // the initial snapshot is finished before streaming
			continue
		}
		if err := b.runJob(ctx, conn, j); err != nil {
			return err
		}
	}
	return nil
}

// runJob reads one table of a job chunk by chunk, from its recorded end key.
func (b *backfiller) runJob(ctx context.Context, conn *pgx.Conn, job progressRow) error {
	c := b.c
	schema, table, _ := strings.Cut(job.table, ".")
	tables, err := publicationTables(ctx, conn, c.cfg.Publication)
	if err != nil {
		return err
	}
	published := false
	for _, t := range tables {
		published = published || (t[0] == schema && t[1] == table && !c.isInternal(schema, table))
	}
	if !published {
		c.log.Warn("backfill of a table that is not captured: nothing to do", "table", job.table, "job", job.job)
		job.done, job.err = true, fmt.Sprintf("table %s is not in publication %s", job.table, c.cfg.Publication)
		return c.saveProgress(ctx, conn, job)
	}
	jt := &jobTable{skip: b.skip[job.table]}
	if err := jt.use(ctx, conn, schema, table, c.cfg.TopicPrefix); err != nil {
		return err
	}
	tp := &tableProgress{table: job.table, job: job.job, estimate: estimateRows(ctx, conn, schema, table), prior: job.rowsDone}
	tp.begin()
	c.metrics.track(tp)
	c.log.Info("backfill started", "table", job.table, "job", job.job, "rows_done", job.rowsDone, "resumed", job.lastKey != nil)
	lastLog := time.Now()
	again := b.again[job.job] // keys dropped from the last chunk, read again
	keysOnly, rounds := false, 0
	for {
		w := newWindow(job.table)
		w.job = job.job
		last, n, done, err := b.chunk(ctx, conn, jt, w, job.lastKey, again, keysOnly)
		if err != nil {
			b.active.CompareAndSwap(w, nil)
			// The reader may have seen the low watermark: its rows go.
			if _, derr := conn.Exec(ctx, `DELETE FROM `+c.signalIdent()+` WHERE slot_name = $1 AND chunk = $2`, c.cfg.Slot, w.id); derr != nil {
				c.log.Warn("clean signal table", "table", job.table, "error", derr)
			}
			return fmt.Errorf("backfill chunk of %s (read again later): %w", job.table, err)
		}
		select {
		case <-w.emitted:
			again = w.reread
			b.again[job.job] = again
		case err := <-w.failed:
			c.log.Info("backfill chunk must be read again", "table", job.table, "reason", err)
			if _, err := conn.Exec(ctx, `DELETE FROM `+c.signalIdent()+` WHERE slot_name = $1 AND chunk = $2`, c.cfg.Slot, w.id); err != nil {
				return fmt.Errorf("clean signal table: %w", err)
			}
			// The table may have changed: read it as it is now.
			if err := jt.use(ctx, conn, schema, table, c.cfg.TopicPrefix); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-w.acked:
		case <-ctx.Done():
			return ctx.Err()
		}
		job.rowsDone += int64(n)
		if last != nil {
			job.lastKey = last
		}
		// Past the table's last chunk, windows read only the keys dropped
		// from the one before, a few rounds at most: a key changed in every
		// window keeps its change events alone.
		done = done || keysOnly
		if done && len(again) > 0 {
			if rounds++; rounds > maxRereadRounds {
				c.log.Warn("backfill: keys changed in every window were not read again; their change events left TOAST values out",
					"table", job.table, "job", job.job, "keys", len(again))
				again = nil
			}
			keysOnly = true
		}
		job.done = done && len(again) == 0
		if err := c.saveProgress(ctx, conn, job); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, `DELETE FROM `+c.signalIdent()+` WHERE slot_name = $1 AND chunk = $2`, c.cfg.Slot, w.id); err != nil {
			return fmt.Errorf("clean signal table: %w", err)
		}
		tp.add(int64(n))
		c.metrics.backfillRows(ctx, job.table, int64(n))
		if job.done {
			tp.finish()
			rows, rate, _, _ := tp.figures(time.Now())
			c.log.Info("backfill of table done", "table", job.table, "job", job.job, "rows", rows, "rows_per_s", int(rate))
			delete(b.skip, job.table)
			delete(b.again, job.job)
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			c.log.Info("snapshot progress", tp.logArgs(lastLog)...)
		}
	}
}

// jobTable is the table a backfill job reads, as it is now.
type jobTable struct {
	cr *chunkReader
	// skip: encoded keys an interrupted run already published (prepare);
	// codec encodes keys to look them up.
	skip  map[string]struct{}
	codec *stream.TableCodec
}

// use reads the table's columns from the catalog (newChunkReader).
func (jt *jobTable) use(ctx context.Context, db querier, schema, table, prefix string) error {
	cr, err := newChunkReader(ctx, db, &typeCatalog{db: db}, schema, table, prefix)
	if err != nil {
		return err
	}
	return jt.set(cr)
}

func (jt *jobTable) set(cr *chunkReader) error {
	if jt.cr == cr {
		return nil
	}
	jt.cr = cr
	if len(jt.skip) > 0 {
		codec, err := stream.NewTableCodec(stream.NewCodecs(), cr.rel.Schema)
		if err != nil {
			return err
		}
		jt.codec = codec
	}
	return nil
}

// chunk reads one chunk between a low and a high watermark and returns its
// end key, the rows read and whether the table is done. It also reads the
// rows of the keys again (dropped from an earlier chunk, see window.reread);
// keysOnly reads only those.
func (b *backfiller) chunk(ctx context.Context, conn *pgx.Conn, jt *jobTable, w *window, after []string,
	again [][]string, keysOnly bool) ([]string, int, bool, error) {
	c := b.c
	b.active.Store(w)
	insert := `INSERT INTO ` + c.signalIdent() + ` (slot_name, kind, table_name, chunk) VALUES ($1, $2, $3, $4)`
	if _, err := conn.Exec(ctx, insert, c.cfg.Slot, "low", w.table, w.id); err != nil {
		return nil, 0, false, fmt.Errorf("write low watermark: %w", err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	// The lock before the snapshot (lockTables): a chunk read while a
	// rewrite commits would see no rows and end the job early. It is held
	// only while the chunk is read, not across the high watermark.
	if err := lockTables(ctx, tx, c.cfg.LockTimeout, [2]string{jt.cr.schema, jt.cr.table}); err != nil {
		return nil, 0, false, err
	}
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return nil, 0, false, fmt.Errorf("read chunk snapshot: %w", err)
	}
	if w.snap, err = parseTxSnapshot(snap); err != nil {
		return nil, 0, false, err
	}
	// A schema change may have committed while the lock was awaited.
	cr, err := jt.cr.refresh(ctx, tx, c.cfg.TopicPrefix)
	if err != nil {
		return nil, 0, false, err
	}
	if cr != jt.cr {
		again = nil // keys of another table version; rare enough to let go
	}
	if err := jt.set(cr); err != nil {
		return nil, 0, false, err
	}
	skip, codec := jt.skip, jt.codec
	var kb []byte
	add := func(raw [][]byte, checkSkip bool) error {
		row, err := cr.decode(raw)
		if err != nil {
			return err
		}
		key := cr.rel.key(row)
		if checkSkip && codec != nil {
			if kb, err = codec.AppendKey(kb[:0], key); err != nil {
				return err
			}
			if _, ok := skip[string(keyBody(kb))]; ok {
				return nil // published by the interrupted snapshot
			}
		}
		w.rows = append(w.rows, stream.Event{Schema: cr.schema, Table: cr.table, Op: stream.OpSnapshot, Key: key, After: row})
		w.keys = append(w.keys, keyString(key))
		var rk []string
		if cr.keyed() {
			rk = cr.rawKey(raw)
		}
		w.raw = append(w.raw, rk)
		return nil
	}
	var last []string
	n, done := 0, true
	if !keysOnly {
		if last, n, done, err = cr.read(ctx, tx, after, c.cfg.SnapshotChunkRows, func(raw [][]byte) error { return add(raw, true) }); err != nil {
			return nil, 0, false, err
		}
	}
	// Keys dropped from earlier chunks come before this chunk's range: no
	// row is read twice.
	if len(again) > 0 && cr.keyed() {
		if err := cr.readKeys(ctx, tx, again, func(raw [][]byte) error { return add(raw, false) }); err != nil {
			return nil, 0, false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, 0, false, err
	}
	w.rel = cr.rel
	close(w.ready)
	if _, err := conn.Exec(ctx, insert, c.cfg.Slot, "high", w.table, w.id); err != nil {
		return nil, 0, false, fmt.Errorf("write high watermark: %w", err)
	}
	return last, n, done, nil
}

// histTxn is a committed transaction that changed keys of captured tables.
type histTxn struct {
	xid  uint32
	lsn  stream.LSN
	keys []histKey
	// overflow lists the tables of which the transaction changed more keys
	// than the history keeps (histMaxTxnKeys): a chunk of one of them that
	// cannot see the transaction is read again.
	overflow []string
}

// histKey is a key a transaction changed.
type histKey struct {
	table string // schema.table
	key   string // keyString
	// unchanged: the change left TOAST values out (stream.Event.Unchanged),
	// so it cannot stand for the row where downstream has no earlier one.
	unchanged bool
}

// The history covers the last transactions on every captured table, whether
// or not a backfill runs: a transaction that a chunk's snapshot cannot see
// although it was logged before the low watermark committed within a moment
// of it (longer with synchronous replication: visible only once a standby
// confirmed it), which may be before the job started, and far inside these
// bounds. A single transaction keeps at most histMaxTxnKeys keys, so that a
// transaction of a million rows does not hold a million keys.
const (
	histMaxTxns    = 4096
	histMaxKeys    = 200_000
	histMaxTxnKeys = 20_000
	histMaxWAL     = 256 << 20
)

// track notes the keys a change touches: in the history, and in the window
// of a chunk of the change's table.
func (r *reader) track(rel *relation, unchanged bool, keys ...map[string]any) {
	if r.bf == nil {
		return
	}
	w := r.bf.active.Load()
	if w != nil && (!w.lowSeen || w.table != rel.name) {
		w = nil
	}
	prev := ""
	for _, k := range keys {
		if k == nil {
			continue
		}
		ks := keyString(k)
		if ks == prev {
			continue // an update that kept its key
		}
		prev = ks
		if w != nil {
			if len(w.changed) < histMaxKeys {
				w.changed[ks] = struct{}{}
			} else {
				w.overflow = true
			}
		}
		if len(r.txKeys) < histMaxTxnKeys {
			r.txKeys = append(r.txKeys, histKey{table: rel.name, key: ks, unchanged: unchanged})
		} else if !slices.Contains(r.txOverflow, rel.name) {
			r.txOverflow = append(r.txOverflow, rel.name)
		}
	}
}

// remember adds the committed transaction's keys to the history and drops
// the oldest entries beyond its bounds.
func (r *reader) remember() {
	if len(r.txKeys) == 0 && len(r.txOverflow) == 0 {
		return
	}
	r.hist = append(r.hist, histTxn{xid: r.xid, lsn: r.commitLSN, keys: r.txKeys, overflow: r.txOverflow})
	r.histSeq++
	r.histKeys += len(r.txKeys)
	r.txKeys, r.txOverflow = nil, nil
	for r.histHead < len(r.hist)-1 && (len(r.hist)-r.histHead > histMaxTxns || r.histKeys > histMaxKeys ||
		r.commitLSN-r.hist[r.histHead].lsn > histMaxWAL) {
		r.histKeys -= len(r.hist[r.histHead].keys)
		r.histHead++
	}
	if r.histHead > len(r.hist)/2 && r.histHead > 64 {
		// A new array: windows may hold slices of the old one (window.pre).
		r.hist, r.histHead = append(make([]histTxn, 0, 2*(len(r.hist)-r.histHead)), r.hist[r.histHead:]...), 0
	}
}

// history returns the history's entries, oldest first, and the number of
// transactions remembered before the first of them.
func (r *reader) history() ([]histTxn, uint64) {
	h := r.hist[r.histHead:len(r.hist):len(r.hist)] // entries are never modified
	return h, r.histSeq - uint64(len(h))
}

// trackRelation notes the versions of the chunk's table streamed after the
// low watermark: the chunk must have been read with the same one.
func (r *reader) trackRelation(rel *relation) {
	if r.bf == nil {
		return
	}
	if w := r.bf.active.Load(); w != nil && w.lowSeen && w.table == rel.Schema.Schema+"."+rel.Schema.Table {
		w.relations = append(w.relations, rel)
	}
}

// trackTruncate voids the chunk being read if its table is truncated.
func (r *reader) trackTruncate(rel *relation) {
	if r.bf == nil {
		return
	}
	if w := r.bf.active.Load(); w != nil && w.table == rel.Schema.Schema+"."+rel.Schema.Table {
		w.truncated = true
	}
}

// signal handles a row inserted into the signal table.
func (r *reader) signal(ctx context.Context, row map[string]any) error {
	if slot, _ := row["slot_name"].(string); slot != r.c.cfg.Slot || r.bf == nil {
		return nil
	}
	kind, _ := row["kind"].(string)
	chunk, _ := row["chunk"].(string)
	table, _ := row["table_name"].(string)
	w := r.bf.active.Load()
	switch kind {
	case "backfill":
		id, _ := row["id"].(int64)
		job := "backfill-" + strconv.FormatInt(id, 10)
		_, err := r.db.Exec(ctx, `INSERT INTO `+r.c.progressIdent()+` (slot_name, job, table_name) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, r.c.cfg.Slot, job, table)
		if err != nil {
			return fmt.Errorf("record backfill request %s of %s: %w", job, table, err)
		}
		r.c.log.Info("backfill requested", "table", table, "job", job)
		r.bf.kick()
	case "low":
		if w != nil && w.id == chunk {
			w.lowSeen = true
			w.pre, _ = r.history()
			w.lowSeq = r.histSeq
		}
	case "high":
		if w != nil && w.id == chunk && w.lowSeen {
			return r.high(ctx, w)
		}
	}
	return nil
}

var errChunkTruncated = errors.New("table truncated while the chunk was read")

// maxRereadRounds bounds the windows after a table's last chunk that only
// read again keys dropped from the one before.
const maxRereadRounds = 5

// dropped returns the keys of the chunk that must not be published at the
// high watermark: those changed by a transaction that the chunk's snapshot
// could not see and that was logged before the high watermark — before the
// low one (the history when it was seen, w.pre) or in the window. A key
// changed in the window by a transaction the snapshot saw is published: the
// chunk's row already holds that change, complete (also its TOAST values,
// which the change event may have left out), and every later change comes
// after it. Should the history have lost transactions of the window (its
// bounds), every key changed in the window is dropped.
//
// reread holds the dropped keys whose change left TOAST values out: a
// consumer that never saw an earlier row of the key (it starts with the
// backfill) would lack them, so they are read again in the next chunk.
func (r *reader) dropped(w *window) (drop, reread map[string]struct{}, err error) {
	hist, first := r.history()
	drop, reread = map[string]struct{}{}, map[string]struct{}{}
	if first > w.lowSeq {
		if w.overflow {
			return nil, nil, fmt.Errorf("more than %d keys of %s changed while the chunk was read", histMaxKeys, w.table)
		}
		drop, hist = w.changed, nil
	} else {
		hist = hist[w.lowSeq-first:]
	}
	for _, txns := range [][]histTxn{w.pre, hist} {
		for _, h := range txns {
			if w.snap.visible(h.xid) {
				continue
			}
			if slices.Contains(h.overflow, w.table) {
				return nil, nil, fmt.Errorf("a transaction the chunk could not see changed more than %d keys of %s", histMaxTxnKeys, w.table)
			}
			for _, k := range h.keys {
				if k.table == w.table {
					drop[k.key] = struct{}{}
					if k.unchanged {
						reread[k.key] = struct{}{}
					}
				}
			}
		}
	}
	return drop, reread, nil
}

// high emits the chunk's surviving rows at the high watermark's position,
// inside its transaction.
func (r *reader) high(ctx context.Context, w *window) error {
	select {
	case <-w.ready:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	r.bf.active.CompareAndSwap(w, nil)
	if w.truncated {
		w.failed <- errChunkTruncated
		return nil
	}
	for _, rel := range w.relations {
		if !sameSchema(rel.Schema, w.rel.Schema) {
			w.failed <- fmt.Errorf("table %s changed while the chunk was read", w.table)
			return nil
		}
	}
	drop, reread, err := r.dropped(w)
	if err != nil {
		w.failed <- err
		return nil
	}
	if cur := r.rels[w.rel.ID]; cur == nil || !sameSchema(cur.Schema, w.rel.Schema) {
		// The version the chunk was read with is the table's latest: no
		// other was streamed since the low watermark, and a change made
		// before the chunk's select without a row change since has not been
		// streamed at all. Register it (a no-op when Kafka has it already).
		if len(r.chunk) > 0 {
			chunk := r.chunk
			r.chunk = make([]stream.Event, 0, r.c.cfg.ChunkEvents)
			if err := r.p.send(ctx, unit{events: chunk}); err != nil {
				return err
			}
		}
		if err := r.p.send(ctx, unit{register: w.rel}); err != nil {
			return err
		}
		r.rels[w.rel.ID] = w.rel
	}
	// Should capture die before the chunk is recorded, the next run finds
	// what it published by this position (prepare).
	if _, err := r.db.Exec(ctx, `UPDATE `+r.c.progressIdent()+` SET pending_lsn = $4::pg_lsn
		WHERE slot_name = $1 AND job = $2 AND table_name = $3`, r.c.cfg.Slot, w.job, w.table, r.commitLSN.String()); err != nil {
		return fmt.Errorf("record the chunk of %s being published: %w", w.table, err)
	}
	n := 0
	for i := range w.rows {
		if _, ok := drop[w.keys[i]]; ok {
			if _, again := reread[w.keys[i]]; again && w.raw[i] != nil {
				w.reread = append(w.reread, w.raw[i])
			}
			continue
		}
		ev := w.rows[i]
		ev.Pos = stream.Position{LSN: r.commitLSN, Seq: r.seq}
		ev.CommitTime = r.commitTime
		if err := r.push(ctx, ev); err != nil {
			return err
		}
		n++
	}
	r.c.log.Debug("backfill chunk emitted", "table", w.table, "rows", n, "dropped", len(w.rows)-n, "read_again", len(w.reread),
		"lsn", r.commitLSN.String())
	w.rows, w.keys, w.raw = nil, nil, nil
	w.emitted <- n
	r.afterCommit = append(r.afterCommit, func() { close(w.acked) })
	return nil
}

// prepare readies the backfill jobs left by an earlier run, before
// streaming starts: rows of the chunk a job was publishing when that run
// died (at its high watermark's position) are found in Kafka, so that they
// are not published twice.
func (b *backfiller) prepare(ctx context.Context, db querier) error {
	c := b.c
	jobs, err := c.loadProgress(ctx, db, "")
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.done || j.job == snapshotJob || j.pending == 0 {
			continue
		}
		if len(c.cfg.Brokers) == 0 {
			c.log.Warn("no brokers configured: rows of a backfill chunk an earlier run published but did not record may be published twice",
				"table", j.table, "job", j.job)
			continue
		}
		schema, table, _ := strings.Cut(j.table, ".")
		keys := b.skip[j.table]
		if keys == nil {
			keys = map[string]struct{}{}
			b.skip[j.table] = keys
		}
		found, err := scanChunkKeys(ctx, c.cfg.Brokers, c.cfg.KafkaSecurity, stream.Topic(c.cfg.TopicPrefix, schema, table), j.pending,
			c.cfg.inFlightMargin(), keys)
		if err != nil {
			return fmt.Errorf("read what the last chunk of %s published: %w", j.table, err)
		}
		c.log.Info("resuming a backfill", "table", j.table, "job", j.job, "rows_done", j.rowsDone,
			"published_by_unrecorded_chunk", found)
	}
	return nil
}

// keyBody strips the header of an encoded key (Avro single-object encoding,
// or the Confluent wire format when a schema registry is configured): keys
// compare by their Avro binary, whichever way they were framed.
func keyBody(b []byte) []byte {
	switch {
	case len(b) >= 5 && b[0] == 0:
		return b[5:]
	case len(b) >= 10 && b[0] == 0xC3 && b[1] == 0x01:
		return b[10:]
	}
	return b
}

// scanSnapshotKeys returns the keys of the snapshot records (at lsn) with a
// sequence above after. Records of a table are sent in sequence order and at
// most margin of them wait for Kafka at once, so every such record follows,
// in its partition, any record at or below after-margin: the scan goes back
// from the end until it meets one.
func scanSnapshotKeys(ctx context.Context, brokers []string, sec *stream.Security, topic string, lsn stream.LSN, after uint64, margin int64,
	keys map[string]struct{}) (int, error) {
	admin := stream.NewAdmin(brokers, sec)
	first, end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return 0, nil
		}
		return 0, err
	}
	stop := uint64(0)
	if after > uint64(margin) {
		stop = after - uint64(margin)
	}
	n := len(keys)
	for p := range end {
		for k := int64(4096); ; k *= 4 {
			start := max(first[p], end[p]-k)
			found, err := scanKeys(ctx, admin.Client(), topic, p, start, end[p], lsn, after, stop, keys)
			if err != nil {
				return 0, err
			}
			if found || start == first[p] {
				break
			}
		}
	}
	return len(keys) - n, nil
}

// scanChunkKeys adds to keys the keys of the records at a chunk's high
// watermark lsn. They were enqueued after every record below lsn, and at
// most margin records wait for Kafka at once: a record below lsn that
// follows one of them in a partition was in flight when it was enqueued, so
// none of them precedes margin+1 records below lsn. The scan goes back from
// the end until it has seen that many.
func scanChunkKeys(ctx context.Context, brokers []string, sec *stream.Security, topic string, lsn stream.LSN, margin int64,
	keys map[string]struct{}) (int, error) {
	admin := stream.NewAdmin(brokers, sec)
	first, end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return 0, nil
		}
		return 0, err
	}
	n := len(keys)
	for p := range end {
		for k := int64(4096); ; k *= 4 {
			start := max(first[p], end[p]-k)
			var below int64
			err := scanRecords(ctx, admin.Client(), topic, p, start, end[p], func(_ int64, pos stream.Position, key []byte) error {
				switch {
				case pos.LSN == lsn:
					keys[string(keyBody(key))] = struct{}{}
				case pos.LSN < lsn:
					below++
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
			if below > margin || start == first[p] {
				break
			}
		}
	}
	return len(keys) - n, nil
}

// scanKeys adds to keys the keys of records in [start, end) at lsn with a
// sequence above after; found reports a record at lsn at or below stop.
func scanKeys(ctx context.Context, client *kafka.Client, topic string, p int, start, end int64, lsn stream.LSN,
	after, stop uint64, keys map[string]struct{}) (bool, error) {
	found := false
	err := scanRecords(ctx, client, topic, p, start, end, func(_ int64, pos stream.Position, key []byte) error {
		if pos.LSN != lsn {
			return nil
		}
		if pos.Seq <= stop {
			found = true
		}
		if pos.Seq > after {
			keys[string(keyBody(key))] = struct{}{}
		}
		return nil
	})
	return found, err
}

// scanRecords calls fn with the offset, position and key of every data
// record of partition p in [start, end); markers have no position.
func scanRecords(ctx context.Context, client *kafka.Client, topic string, p int, start, end int64,
	fn func(off int64, pos stream.Position, key []byte) error) error {
	for off := start; off < end; {
		res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p, Offset: off,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		if res.Error != nil {
			return res.Error
		}
		n := 0
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			if rec.Offset < off || rec.Offset >= end {
				continue
			}
			n++
			off = rec.Offset + 1
			pos, ok := stream.HeaderPosition(rec.Headers)
			if !ok || rec.Key == nil {
				continue
			}
			key, err := io.ReadAll(rec.Key)
			if err != nil {
				return err
			}
			if err := fn(rec.Offset, pos, key); err != nil {
				return err
			}
		}
		if n == 0 {
			if res.HighWatermark <= off {
				break
			}
			off++
		}
	}
	return nil
}
