package capture

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/starstream/starstream/capture/internal/pgdecode"
	"github.com/starstream/starstream/capture/internal/pgoutput"
	"github.com/starstream/starstream/stream"
)

// reader receives the replication stream, decodes it into events and hands
// them to the pipeline in chunks; a separate goroutine sends standby status.
type reader struct {
	c    *Capture
	conn *pgconn.PgConn
	db   *pgx.Conn // catalog lookups for new relation versions
	p    *pipeline
	cat  *typeCatalog
	rels map[uint32]*relation
	bf   *backfiller // nil: no backfills (signal rows are ignored)

	sendMu sync.Mutex // status updates are written from another goroutine
	kick   chan struct{}

	// current transaction
	inTxn      bool
	commitLSN  stream.LSN
	commitTime time.Time
	xid        uint32
	seq        uint64
	// afterCommit are called once Kafka acknowledged the current transaction.
	afterCommit []func()
	// keys changed by the current transaction and by the last ones, a
	// bounded history (backfill.go): hist[histHead:] are its entries,
	// histSeq counts the transactions it ever took.
	txKeys     []histKey
	txOverflow []string
	hist       []histTxn
	histHead   int
	histSeq    uint64
	histKeys   int
	chunk      []stream.Event
	change     pgoutput.Change // reused for every row change
	lastChunk  int             // events in the last transaction's last chunk
	lastIdle   stream.LSN
	warnedNaN  map[string]bool
}

func (r *reader) run(ctx context.Context, start stream.LSN) error {
	err := pglogrepl.StartReplication(ctx, r.conn, r.c.cfg.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: []string{"proto_version '1'", "publication_names '" + r.c.cfg.Publication + "'"},
	})
	if err != nil {
		return r.classify(fmt.Errorf("start replication at %s: %w", start, err))
	}
	r.c.log.Info("streaming", "lsn", start.String(), "publication", r.c.cfg.Publication)
	r.kick = make(chan struct{}, 1)
	r.warnedNaN = map[string]bool{}

	// Receive with a context that is never canceled (a per-call deadline halves
	// throughput, FINDINGS); stop by expiring the socket's read deadline.
	stop := context.AfterFunc(ctx, func() { _ = r.conn.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	statusDone := make(chan struct{})
	defer func() { <-statusDone }()
	statusCtx, stopStatus := context.WithCancel(ctx)
	defer stopStatus()
	go func() {
		defer close(statusDone)
		r.statusLoop(statusCtx)
	}()

	for {
		msg, err := r.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("receive replication message: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.copyData(ctx, msg.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return r.classify(pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

// classify marks server errors that a retry cannot fix as terminal.
func (r *reader) classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "55000": // object_not_in_prerequisite_state: invalidated slot, wal removed
			return terminal(fmt.Errorf("%w: %w; run `starstream capture reset --slot %s` (capture.Reset) to start over with a new snapshot",
				ErrSlotInvalidated, err, r.c.cfg.Slot))
		case "42704": // undefined_object: slot dropped under us
			return terminal(fmt.Errorf("%w: %w; run `starstream capture reset --slot %s` (capture.Reset) to start over with a new snapshot",
				ErrSlotLost, err, r.c.cfg.Slot))
		}
	}
	return err
}

func (r *reader) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		walEnd := stream.LSN(ka.ServerWALEnd)
		if !r.inTxn && walEnd > r.lastIdle {
			// Everything before the server's WAL end was sent and read: once
			// Kafka has it, that position can be confirmed and marked.
			r.lastIdle = walEnd
			if err := r.p.send(ctx, unit{idle: walEnd}); err != nil {
				return err
			}
		}
		if ka.ReplyRequested {
			r.nudge()
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse xlogdata: %w", err)
		}
		return r.message(ctx, xld.WALData)
	}
	return nil
}

func (r *reader) nudge() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// statusLoop confirms to the server: soon after Kafka acknowledged more (so
// a restart re-reads little), at least every StatusInterval (so the server
// knows we are alive), and at once when the server asks.
func (r *reader) statusLoop(ctx context.Context) {
	every := time.NewTicker(r.c.cfg.StatusInterval)
	defer every.Stop()
	soon := time.NewTicker(confirmEvery)
	defer soon.Stop()
	var sent stream.LSN
	for {
		select {
		case <-ctx.Done():
			return
		case <-every.C:
		case <-r.kick:
		case <-soon.C:
			if r.p.Acked() == sent {
				continue
			}
		}
		sent = r.p.Acked()
		if err := r.sendStatus(sent, false); err != nil {
			r.c.log.Debug("standby status update failed", "error", err)
		}
	}
}

// confirmEvery is how soon an acknowledged LSN is confirmed to the server.
const confirmEvery = 100 * time.Millisecond

// sendStatus confirms lsn (write, flush and apply): Kafka acknowledged
// everything below it. The pipeline's acked LSN never moves backwards.
func (r *reader) sendStatus(lsn stream.LSN, reply bool) error {
	r.sendMu.Lock()
	defer r.sendMu.Unlock()
	if lsn == 0 {
		return nil
	}
	return pglogrepl.SendStandbyStatusUpdate(context.Background(), r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(lsn), WALFlushPosition: pglogrepl.LSN(lsn), WALApplyPosition: pglogrepl.LSN(lsn),
		ReplyRequested: reply,
	})
}

func (r *reader) message(ctx context.Context, data []byte) error {
	if pgoutput.IsChange(data) {
		if err := pgoutput.Parse(data, &r.change); err != nil {
			return fmt.Errorf("parse pgoutput message %q: %w", data[:1], err)
		}
		return r.rowChange(ctx, &r.change)
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("parse pgoutput message %q: %w", data[:1], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		r.inTxn = true
		r.commitLSN = stream.LSN(m.FinalLSN)
		r.commitTime = m.CommitTime.UTC()
		r.xid = m.Xid
		r.seq = 0
	case *pglogrepl.CommitMessage:
		chunk := r.chunk
		r.chunk = nil
		r.lastChunk = len(chunk)
		r.inTxn = false
		if err := r.p.send(ctx, unit{events: chunk, commit: &txnEnd{commit: r.commitLSN, end: stream.LSN(m.TransactionEndLSN)}}); err != nil {
			return err
		}
		for _, f := range r.afterCommit {
			if err := r.p.send(ctx, unit{done: f}); err != nil {
				return err
			}
		}
		r.afterCommit = r.afterCommit[:0]
		r.remember()
		return nil
	case *pglogrepl.RelationMessage:
		return r.relation(ctx, m)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			rel, err := r.rel(id)
			if err != nil {
				return err
			}
			if rel == nil || rel.signal {
				continue
			}
			r.trackTruncate(rel)
			if err := r.emit(ctx, rel, stream.OpTruncate, nil, nil, nil, nil); err != nil {
				return err
			}
		}
	}
	// Origin, Type and logical decoding messages carry nothing to publish.
	return nil
}

// rowChange turns an insert, update or delete into an event.
func (r *reader) rowChange(ctx context.Context, c *pgoutput.Change) error {
	rel, err := r.rel(c.RelationID)
	if err != nil || rel == nil {
		return err
	}
	if rel.signal {
		if c.Op != 'I' {
			return nil
		}
		row, _, err := r.tuple(rel, c.New, false)
		if err != nil {
			return err
		}
		return r.signal(ctx, row)
	}
	switch c.Op {
	case 'I':
		after, unchanged, err := r.tuple(rel, c.New, false)
		if err != nil {
			return err
		}
		key := rel.key(after)
		r.track(rel, false, key)
		return r.emit(ctx, rel, stream.OpInsert, key, nil, after, unchanged)
	case 'U':
		after, unchanged, err := r.tuple(rel, c.New, false)
		if err != nil {
			return err
		}
		var before map[string]any
		if c.OldKind != 0 {
			if before, _, err = r.tuple(rel, c.Old, c.OldKind == 'K'); err != nil {
				return err
			}
		}
		// With REPLICA IDENTITY FULL the old row carries the unchanged TOAST values.
		if c.OldKind == 'O' && len(unchanged) > 0 {
			kept := unchanged[:0]
			for _, col := range unchanged {
				if v, ok := before[col]; ok {
					after[col] = v
				} else {
					kept = append(kept, col)
				}
			}
			unchanged = kept
		}
		if len(unchanged) == 0 {
			unchanged = nil
		}
		key := rel.key(after)
		r.track(rel, unchanged != nil, key, rel.key(before)) // the old key too, should the update change it
		return r.emit(ctx, rel, stream.OpUpdate, key, before, after, unchanged)
	default: // 'D'
		before, _, err := r.tuple(rel, c.Old, c.OldKind == 'K')
		if err != nil {
			return err
		}
		key := rel.key(before)
		r.track(rel, false, key)
		return r.emit(ctx, rel, stream.OpDelete, key, before, nil, nil)
	}
}

func (r *reader) rel(id uint32) (*relation, error) {
	rel, ok := r.rels[id]
	if !ok {
		return nil, fmt.Errorf("change for relation %d before its relation message", id)
	}
	if rel.skip {
		return nil, nil
	}
	return rel, nil
}

func (r *reader) emit(ctx context.Context, rel *relation, op stream.Op, key, before, after map[string]any, unchanged []string) error {
	return r.push(ctx, stream.Event{
		Schema: rel.Schema.Schema, Table: rel.Schema.Table, Op: op, Key: key, Before: before, After: after,
		Unchanged: unchanged, Pos: stream.Position{LSN: r.commitLSN, Seq: r.seq}, CommitTime: r.commitTime,
	})
}

// push adds an event at the current position of the transaction.
func (r *reader) push(ctx context.Context, ev stream.Event) error {
	if r.chunk == nil {
		// Sized like the last transaction's: transactions tend to look alike,
		// and growing a slice of events copies them over and over.
		r.chunk = make([]stream.Event, 0, min(max(r.lastChunk, 8), r.c.cfg.ChunkEvents))
	}
	r.chunk = append(r.chunk, ev)
	r.seq++
	if len(r.chunk) >= r.c.cfg.ChunkEvents {
		// A large transaction goes out in chunks; its LSN is confirmed at commit only.
		chunk := r.chunk
		r.chunk = make([]stream.Event, 0, r.c.cfg.ChunkEvents)
		return r.p.send(ctx, unit{events: chunk})
	}
	return nil
}

// relation handles a (new version of a) table description: events before it
// are queued first, so the Kafka side registers it exactly between them.
func (r *reader) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	signal := r.c.isSignalTable(m.Namespace, m.RelationName)
	if r.c.isInternal(m.Namespace, m.RelationName) && !signal {
		r.rels[m.RelationID] = &relation{ID: m.RelationID, skip: true}
		return nil
	}
	meta, _, err := loadTableMeta(ctx, r.db, m.Namespace, m.RelationName)
	if err != nil {
		// Dropped or renamed since: keep going with what the message says.
		meta = tableMeta{notNull: map[string]bool{}}
	}
	cols := make([]sourceColumn, len(m.Columns))
	var flagged []string
	for i, col := range m.Columns {
		cols[i] = sourceColumn{Name: col.Name, OID: col.DataType, Typmod: col.TypeModifier}
		if col.Flags&1 != 0 {
			flagged = append(flagged, col.Name)
		}
	}
	switch m.ReplicaIdentity {
	case 'd', 'f', 'i', 'n':
		meta.ident = m.ReplicaIdentity
	}
	rel, err := buildRelation(ctx, r.cat, meta, m.RelationID, m.Namespace, m.RelationName, r.c.cfg.TopicPrefix, cols, flagged)
	if err != nil {
		return err
	}
	r.rels[m.RelationID] = rel
	r.trackRelation(rel)
	if signal {
		rel.signal = true // read by the reader, never published
		return nil
	}
	if len(r.chunk) > 0 {
		chunk := r.chunk
		r.chunk = make([]stream.Event, 0, r.c.cfg.ChunkEvents)
		if err := r.p.send(ctx, unit{events: chunk}); err != nil {
			return err
		}
	}
	return r.p.send(ctx, unit{register: rel})
}

// tuple decodes pgoutput tuple data; keyOnly keeps only the key columns
// (a 'K' old tuple sends the others as NULL). Unchanged TOAST values are left
// out of the row and listed.
func (r *reader) tuple(rel *relation, cols []pgoutput.Column, keyOnly bool) (map[string]any, []string, error) {
	if len(cols) != len(rel.Decode) {
		return nil, nil, fmt.Errorf("%s.%s: tuple has %d columns, relation %d", rel.Schema.Schema, rel.Schema.Table,
			len(cols), len(rel.Decode))
	}
	row := make(map[string]any, len(cols))
	var unchanged []string
	for i, col := range cols {
		name := rel.Schema.Columns[i].Name
		if keyOnly && !rel.isKey[i] {
			continue
		}
		switch col.Kind {
		case pgoutput.Null:
			row[name] = nil
		case pgoutput.Unchanged:
			unchanged = append(unchanged, name)
		case pgoutput.Text:
			v, err := rel.Decode[i](col.Data)
			if err != nil {
				if !errors.Is(err, pgdecode.ErrNotANumber) {
					return nil, nil, fmt.Errorf("%s.%s column %s: %w", rel.Schema.Schema, rel.Schema.Table, name, err)
				}
				if k := rel.Schema.Table + "." + name; !r.warnedNaN[k] {
					r.warnedNaN[k] = true
					r.c.log.Warn("numeric NaN or Infinity in a decimal column is published as NULL", "table", rel.Schema.Schema+"."+rel.Schema.Table, "column", name)
				}
			}
			row[name] = v
		default:
			return nil, nil, fmt.Errorf("%s.%s column %s: unexpected tuple data type %q", rel.Schema.Schema, rel.Schema.Table, name, col.Kind)
		}
	}
	return row, unchanged, nil
}

// key returns the key columns of a row.
func (rel *relation) key(row map[string]any) map[string]any {
	if row == nil {
		return nil
	}
	k := make(map[string]any, 1)
	for i, c := range rel.Schema.Columns {
		if rel.isKey[i] {
			k[c.Name] = row[c.Name]
		}
	}
	return k
}
