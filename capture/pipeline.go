package capture

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/starstream/starstream/stream"
)

// Writer is what capture needs from Kafka; *stream.Writer implements it.
type Writer interface {
	Register(ctx context.Context, topic string, s stream.TableSchema) (*stream.TableCodec, error)
	Write(ctx context.Context, events []stream.Event) error
	Mark(ctx context.Context, lsn stream.LSN) error
}

var _ Writer = (*stream.Writer)(nil)

// unit is one step for the Kafka side, in source order: events (a chunk of a
// transaction, ending it when commit is set), or a control step that is taken
// only after every earlier event was acknowledged.
type unit struct {
	events []stream.Event
	commit *txnEnd // the transaction ends with this unit

	register *relation    // register a table version before later events use it
	resume   *resumeState // filter out what a previous run already published
	idle     stream.LSN   // server WAL end seen with no transaction in flight
	barrier  chan error   // closed (or sent an error) once everything before is acknowledged
	mark     stream.LSN   // watermark to publish (with barrier)
}

type txnEnd struct {
	commit stream.LSN // commit LSN: the transaction's position and watermark
	end    stream.LSN // end of the commit record: what PostgreSQL may forget
}

// pipeline moves units to Kafka in order, acknowledges LSNs once Kafka has
// acknowledged them and coalesces watermark markers.
type pipeline struct {
	w         Writer
	log       *slog.Logger
	units     chan unit
	sem       *semaphore.Weighted
	maxBatch  int
	markEvery time.Duration
	metrics   *metrics

	acked      atomic.Uint64 // highest LSN that may be confirmed to PostgreSQL
	registered map[string]stream.TableSchema
	codecs     map[string]*stream.TableCodec // table → codec of its registered version
	topics     map[string]string             // table → topic
	resume     *resumeState

	wantMark, marked stream.LSN
	lastMark         time.Time
	skipped          int
}

func newPipeline(w Writer, cfg Config, start stream.LSN, log *slog.Logger, m *metrics) *pipeline {
	p := &pipeline{
		w:          w,
		log:        log,
		units:      make(chan unit, 4096),
		sem:        semaphore.NewWeighted(int64(cfg.MaxInFlight)),
		maxBatch:   max(cfg.ChunkEvents, cfg.MaxInFlight/2),
		markEvery:  cfg.MarkInterval,
		metrics:    m,
		registered: map[string]stream.TableSchema{},
		codecs:     map[string]*stream.TableCodec{},
		topics:     map[string]string{},
		marked:     start,
		wantMark:   start,
	}
	p.acked.Store(uint64(start))
	return p
}

// send queues a unit; it blocks while too many events wait for Kafka.
func (p *pipeline) send(ctx context.Context, u unit) error {
	if n := len(u.events); n > 0 {
		if err := p.sem.Acquire(ctx, int64(n)); err != nil {
			return err
		}
	}
	select {
	case p.units <- u:
		return nil
	case <-ctx.Done():
		if n := len(u.events); n > 0 {
			p.sem.Release(int64(n))
		}
		return ctx.Err()
	}
}

// Acked returns the highest LSN whose changes Kafka acknowledged.
func (p *pipeline) Acked() stream.LSN { return stream.LSN(p.acked.Load()) }

func (p *pipeline) ack(lsn stream.LSN) {
	for {
		cur := p.acked.Load()
		if uint64(lsn) <= cur || p.acked.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}

// run consumes units until the channel is closed (graceful stop: everything
// queued is written) or ctx fails.
func (p *pipeline) run(ctx context.Context) error {
	var (
		batch   []stream.Event
		commits []txnEnd
		weight  int64
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		if p.resume != nil && len(batch) > 0 {
			n := len(batch)
			var active bool
			batch, active = p.resume.filter(batch, p.codec)
			if d := n - len(batch); d > 0 {
				p.log.Debug("skipped changes already in kafka", "count", d)
				p.skipped += d
			}
			if !active {
				p.log.Info("resumed past what the previous run published", "skipped", p.skipped)
				p.resume = nil
			}
		}
		if len(batch) > 0 {
			start := time.Now()
			if err := p.w.Write(ctx, batch); err != nil {
				return fmt.Errorf("write to kafka: %w", err)
			}
			p.metrics.written(ctx, batch, time.Since(start))
		}
		if weight > 0 {
			p.sem.Release(weight)
		}
		for _, c := range commits {
			p.ack(c.end)
			p.wantMark = max(p.wantMark, c.commit)
		}
		batch, commits, weight = batch[:0], commits[:0], 0
		return nil
	}
	mark := func(force bool) error {
		if p.wantMark <= p.marked {
			return nil
		}
		if wait := p.markEvery - time.Since(p.lastMark); !force && wait > 0 {
			timer.Reset(wait)
			return nil
		}
		if err := p.w.Mark(ctx, p.wantMark); err != nil {
			return fmt.Errorf("publish watermark: %w", err)
		}
		p.log.Debug("watermark", "watermark", p.wantMark.String())
		p.marked, p.lastMark = p.wantMark, time.Now()
		return nil
	}
	handle := func(u unit) error {
		switch {
		case u.register != nil:
			if err := flush(); err != nil {
				return err
			}
			return p.register(ctx, u.register)
		case u.resume != nil:
			if err := flush(); err != nil {
				return err
			}
			p.resume = u.resume
			p.wantMark = max(p.wantMark, u.resume.marker)
			p.marked = max(p.marked, u.resume.marker)
		case u.idle != 0:
			if err := flush(); err != nil {
				return err
			}
			p.ack(u.idle)
			// A commit could start exactly at the WAL end: the marker stays below it.
			p.wantMark = max(p.wantMark, u.idle-1)
		case u.barrier != nil:
			if err := flush(); err != nil {
				return err
			}
			p.wantMark = max(p.wantMark, u.mark)
			if err := mark(true); err != nil {
				return err
			}
			close(u.barrier)
		default:
			batch = append(batch, u.events...)
			weight += int64(len(u.events))
			if u.commit != nil {
				commits = append(commits, *u.commit)
			}
			if len(batch) >= p.maxBatch {
				return flush()
			}
		}
		return nil
	}
	for {
		select {
		case u, ok := <-p.units:
			if !ok {
				if err := flush(); err != nil {
					return err
				}
				return mark(true)
			}
			if err := handle(u); err != nil {
				return err
			}
			// Take whatever else is already queued into the same write.
		drain:
			for len(batch) < p.maxBatch {
				select {
				case u, ok := <-p.units:
					if !ok {
						if err := flush(); err != nil {
							return err
						}
						return mark(true)
					}
					if err := handle(u); err != nil {
						return err
					}
				default:
					break drain
				}
			}
			if err := flush(); err != nil {
				return err
			}
			if err := mark(false); err != nil {
				return err
			}
		case <-timer.C:
			if err := mark(true); err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

func (p *pipeline) register(ctx context.Context, rel *relation) error {
	name := rel.Schema.Schema + "." + rel.Schema.Table
	if prev, ok := p.registered[name]; ok && sameSchema(prev, rel.Schema) {
		return nil
	}
	tc, err := p.w.Register(ctx, rel.Topic, rel.Schema)
	if err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	if _, ok := p.registered[name]; ok {
		p.log.Info("table schema changed", "table", name, "topic", rel.Topic, "columns", len(rel.Schema.Columns))
	}
	p.registered[name] = rel.Schema
	p.codecs[name] = tc
	p.topics[name] = rel.Topic
	return nil
}

func (p *pipeline) codec(table string) (*stream.TableCodec, string) {
	return p.codecs[table], p.topics[table]
}
