package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/stream"
)

// Capture streams one slot's changes into Kafka. Create it with New, then Run.
type Capture struct {
	cfg     Config
	w       Writer
	log     *slog.Logger
	metrics *metrics
}

// New validates cfg (after defaults) and returns a Capture writing through w.
func New(cfg Config, w Writer, logger *slog.Logger) (*Capture, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, errors.New("capture: nil writer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Meter)
	if err != nil {
		return nil, fmt.Errorf("capture metrics: %w", err)
	}
	return &Capture{cfg: cfg, w: w, log: logger.With("slot", cfg.Slot, "instance", cfg.Instance), metrics: m}, nil
}

// Run captures until ctx is canceled (then it drains what was already read
// into Kafka, confirms it and returns nil) or a terminal error occurs.
// Retryable errors (connection loss, Kafka unavailable) restart the session
// from the slot's confirmed position after a capped exponential backoff.
func (c *Capture) Run(ctx context.Context) error {
	watch, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watchSlot(watch)
	}()
	defer func() { stopWatch(); <-watched }()
	backoff := c.cfg.RetryMin
	for {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil && (err == nil || !IsTerminal(err)) {
			return nil
		}
		if err == nil {
			err = errors.New("session ended without error")
		}
		err = redactErr(c.cfg.DSN, err)
		if IsTerminal(err) {
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = c.cfg.RetryMin
		}
		c.log.Warn("capture session failed; retrying", "error", err, "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.cfg.RetryMax)
	}
}

// sessionParams make text output identical in the walsender and in snapshot
// reads, whatever the server's defaults: the decoders rely on these formats.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"TimeZone":           "UTC",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

func (c *Capture) applyParams(params map[string]string) {
	for k, v := range sessionParams {
		params[k] = v
	}
	params["application_name"] = "starstream-capture/" + c.cfg.Instance
}

func (c *Capture) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(c.cfg.DSN)
	if err != nil {
		return nil, terminalf("parse dsn %s: %w", RedactDSN(c.cfg.DSN), redactErr(c.cfg.DSN, err))
	}
	c.applyParams(cc.RuntimeParams)
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres (%s): %w", RedactDSN(c.cfg.DSN), redactErr(c.cfg.DSN, err))
	}
	return conn, nil
}

func (c *Capture) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(c.cfg.DSN)
	if err != nil {
		return nil, terminalf("parse dsn %s: %w", RedactDSN(c.cfg.DSN), redactErr(c.cfg.DSN, err))
	}
	c.applyParams(pc.RuntimeParams)
	pc.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open replication connection (%s): %w", RedactDSN(c.cfg.DSN), redactErr(c.cfg.DSN, err))
	}
	return conn, nil
}

// drainTimeout bounds how long a stopping capture keeps writing what it had read.
const drainTimeout = 15 * time.Second

var errDrainTimeout = errors.New("capture stopped before Kafka acknowledged everything read")

// session is one connection lifetime: prepare slot and publication, snapshot
// if the slot is new, then stream until ctx ends or something fails.
func (c *Capture) session(ctx context.Context) (err error) {
	leadCtx, stopLead := context.WithCancel(ctx)
	defer stopLead()
	lock, lost, err := c.lead(leadCtx)
	if err != nil {
		return err
	}
	// Stop the lock watcher before closing its connection.
	defer lock.Close(context.WithoutCancel(ctx))
	defer stopLead()

	db, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if err := c.ensureStateTable(ctx, db); err != nil {
		return err
	}
	if err := c.ensurePublication(ctx, db); err != nil {
		return err
	}
	if err := c.ensureSignalPublished(ctx, db); err != nil {
		return err
	}
	st, err := c.inspectSlot(ctx, db)
	if err != nil {
		return err
	}
	if err := c.checkSlot(st, db.Config().Database); err != nil {
		return err
	}
	rconn, err := c.connectReplication(ctx)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))

	// work is canceled only by failure; ctx by the caller's stop. Producers stop
	// on either; the pipeline keeps writing after a stop until it has drained.
	work, fail := context.WithCancelCause(context.WithoutCancel(ctx))
	defer fail(nil)
	prod, stopProd := context.WithCancelCause(ctx)
	defer stopProd(nil)
	context.AfterFunc(work, func() { stopProd(context.Cause(work)) })
	// Without the lock another process may lead by now: stop writing at once,
	// without draining.
	go func() {
		select {
		case err := <-lost:
			fail(err)
		case <-leadCtx.Done():
		}
	}()
	context.AfterFunc(ctx, func() {
		t := time.AfterFunc(drainTimeout, func() { fail(errDrainTimeout) })
		context.AfterFunc(work, func() { t.Stop() })
	})

	var start stream.LSN
	snapshot := !st.exists || (st.recorded && !st.snapshotDone)
	var resumeSnapshot stream.LSN // consistent point of an interrupted snapshot that resumes
	if snapshot && st.exists {
		prog, err := c.loadProgress(ctx, db, snapshotJob)
		if err != nil {
			return err
		}
		if len(prog) > 0 && prog[0].snapshotLSN != 0 {
			// Rows may be in Kafka: resume after the last recorded chunks
			// instead of starting over (backfill.go).
			snapshot, resumeSnapshot = false, prog[0].snapshotLSN
		}
	}
	var created pglogreplSlot
	switch {
	case snapshot:
		if created, err = c.createSlot(ctx, db, rconn, st); err != nil {
			return err
		}
		start = created.consistentPoint
	case resumeSnapshot != 0:
		start = resumeSnapshot // the pipeline starts there; streaming from the slot's position
	default:
		if !st.recorded {
			c.log.Warn("adopting a slot this capture did not create: streaming from its position without a snapshot",
				"lsn", st.confirmed.String())
			if err := c.recordState(ctx, db, st.confirmed, true); err != nil {
				return err
			}
		}
		start = st.confirmed
	}

	p := newPipeline(c.w, c.cfg, start, c.log, c.metrics)
	var pg errgroup.Group
	pg.Go(func() error {
		err := p.run(work)
		if err != nil {
			fail(err)
		}
		return err
	})
	finish := func(prodErr error) error {
		close(p.units)
		werr := pg.Wait()
		if prodErr != nil && !errors.Is(prodErr, context.Canceled) {
			return prodErr
		}
		if werr != nil {
			return werr
		}
		return prodErr
	}

	if snapshot || resumeSnapshot != 0 {
		rec := newRecorder(c, db)
		var err error
		if snapshot {
			err = c.snapshot(prod, created, p, rec)
		} else {
			start = resumeSnapshot
			err = c.resumeSnapshot(prod, db, p, rec)
		}
		if err == nil {
			err = c.await(prod, p)
		}
		// Whatever Kafka acknowledged is recorded, also when stopping.
		if err != nil {
			return errors.Join(finish(fmt.Errorf("initial snapshot: %w", err)), rec.close())
		}
		if err := rec.close(); err != nil {
			return finish(err)
		}
		if err := c.recordState(prod, db, start, true); err != nil {
			return finish(err)
		}
		c.log.Info("initial snapshot written", "lsn", start.String())
		if resumeSnapshot != 0 {
			start = max(start, st.confirmed)
		}
	}
	topics, err := c.registerAll(prod, db, p)
	if err != nil {
		return finish(err)
	}
	if !snapshot && len(c.cfg.Brokers) > 0 {
		rs, err := readResume(prod, c.cfg.Brokers, c.cfg.KafkaSecurity, topics, 2*c.cfg.inFlightMargin())
		if err != nil {
			return finish(fmt.Errorf("read where the previous run stopped: %w", err))
		}
		if err := p.send(prod, unit{resume: rs}); err != nil {
			return finish(err)
		}
		c.log.Info("previous run's end read from kafka", "watermark", rs.marker.String(), "last_position", rs.horizon.String())
	}
	bf := newBackfiller(c)
	if err := bf.prepare(prod, db); err != nil {
		return finish(err)
	}
	bfCtx, stopBF := context.WithCancel(prod)
	var bg errgroup.Group
	bg.Go(func() error {
		err := bf.run(bfCtx)
		if err != nil {
			fail(err)
		}
		return err
	})
	rd := &reader{c: c, conn: rconn, db: db, p: p, bf: bf, cat: &typeCatalog{db: db}, rels: map[uint32]*relation{}}
	err = rd.run(prod, start)
	stopBF()
	_ = bg.Wait()
	err = finish(err)
	// Whatever happened, tell the server what Kafka has (never more).
	rd.sendStatus(p.Acked(), false)
	return err
}

// registerAll registers every published table, so each topic gets watermark
// markers from the start even if its table is idle.
func (c *Capture) registerAll(ctx context.Context, db *pgx.Conn, p *pipeline) ([]string, error) {
	tables, err := publicationTables(ctx, db, c.cfg.Publication)
	if err != nil {
		return nil, err
	}
	var topics []string
	cat := &typeCatalog{db: db}
	for _, t := range tables {
		if c.isInternal(t[0], t[1]) {
			continue
		}
		meta, cols, err := loadTableMeta(ctx, db, t[0], t[1])
		if err != nil {
			return nil, err
		}
		rel, err := buildRelation(ctx, cat, meta, meta.oid, t[0], t[1], c.cfg.TopicPrefix, cols, nil)
		if err != nil {
			return nil, err
		}
		if err := p.send(ctx, unit{register: rel}); err != nil {
			return nil, err
		}
		topics = append(topics, rel.Topic)
	}
	return topics, nil
}
