package stream

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	Brokers     []string
	Security    *Security // nil: plaintext
	Topic       string
	SchemaTopic string
}

// Follower reads every partition of one topic from its first offset, outside any
// consumer group, applying each record to the caller's state; it is the Gate of
// that topic's producer: its watermark is the smallest marker over the
// partitions, reached only after every record before those markers was applied.
// Downstream pipelines use it to rebuild upstream lookup state on every start.
type Follower struct {
	cfg    FollowerConfig
	dec    *decoder
	apply  func(Record) error
	log    *slog.Logger
	beacon *Beacon

	mu      sync.Mutex
	markers map[int]LSN
	parts   int
}

var _ Gate = (*Follower)(nil)

// NewFollower returns a follower; apply is called from one goroutine per
// partition, so it must be safe for concurrent use.
func NewFollower(cfg FollowerConfig, codecs *Codecs, apply func(Record) error, logger *slog.Logger) *Follower {
	return &Follower{cfg: cfg, dec: newDecoder(cfg.Brokers, cfg.Security, cfg.SchemaTopic, codecs), apply: apply, log: logger,
		beacon: NewBeacon(0), markers: map[int]LSN{}}
}

// Watermark returns the producer's watermark as far as this follower has applied it.
func (f *Follower) Watermark() LSN { return f.beacon.Watermark() }

// Changed returns a channel closed when the watermark next moves.
func (f *Follower) Changed() <-chan struct{} { return f.beacon.Changed() }

// Run follows the topic until ctx is done or apply fails.
func (f *Follower) Run(ctx context.Context) error {
	n, err := NewAdmin(f.cfg.Brokers, f.cfg.Security).Partitions(ctx, f.cfg.Topic)
	if err != nil {
		return fmt.Errorf("follow %s: %w", f.cfg.Topic, err)
	}
	f.mu.Lock()
	f.parts = n
	f.mu.Unlock()
	g, gctx := errgroup.WithContext(ctx)
	for p := 0; p < n; p++ {
		g.Go(func() error { return f.follow(gctx, p) })
	}
	err = g.Wait()
	// Only the caller's stop is a clean end. The group's own context is
	// cancelled by the first partition that fails too: taking that for a stop
	// left the gate frozen while the pipeline gated on it waited forever (the
	// chaos rounds' broker restarts made a partition's reads fail).
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (f *Follower) follow(ctx context.Context, p int) error {
	r := f.cfg.Security.Reader(kafka.ReaderConfig{Brokers: f.cfg.Brokers, Topic: f.cfg.Topic, Partition: p,
		MinBytes: 1, MaxBytes: 32 << 20, MaxWait: time.Second})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		return err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("follow %s[%d]: %w", f.cfg.Topic, p, err)
		}
		if lsn, ok := MarkerLSN(m); ok {
			f.mark(p, lsn)
			continue
		}
		rec := f.dec.decode(ctx, m)
		if rec.Err != nil {
			// An upstream topic is written only by our pipelines; a record we cannot
			// read there means a broken deployment, not bad input.
			return fmt.Errorf("follow %s: %w", f.cfg.Topic, rec.Err)
		}
		if err := f.apply(rec); err != nil {
			return fmt.Errorf("apply %s[%d]@%d: %w", f.cfg.Topic, p, m.Offset, err)
		}
	}
}

func (f *Follower) mark(p int, lsn LSN) {
	f.mu.Lock()
	if lsn > f.markers[p] {
		f.markers[p] = lsn
	}
	low := MaxLSN
	if len(f.markers) < f.parts {
		low = 0
	}
	for _, l := range f.markers {
		low = min(low, l)
	}
	f.mu.Unlock()
	f.beacon.Advance(low)
}
