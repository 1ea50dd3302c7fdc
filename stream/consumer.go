package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Brokers     []string
	Security    *Security // nil: plaintext
	Group       string    // the consumer group: offsets live in Kafka under this id
	Topics      []string  // input topics; their partitions are merged by position
	SchemaTopic string    // default DefaultSchemaTopic
	MaxBatch    int       // records per handler call, default 5000
	Gates       []Gate    // upstream watermarks (gating, DESIGN §4)
}

// Validate checks the configuration.
func (c ConsumerConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("consumer config: no kafka brokers")
	case c.Group == "":
		return errors.New("consumer config: no consumer group")
	case len(c.Topics) == 0:
		return errors.New("consumer config: no topics")
	}
	return nil
}

// Offsets are consumer offsets by topic and partition: the next offset to read.
type Offsets map[string]map[int]int64

// Batch is what a consumer hands to its handler: records in position order, all
// at or below Watermark, and poison records (Err set) to dead-letter. Once the
// handler returns nil for a batch whose Final is true, the consumer commits the
// group's offsets past the markers the batch covered; Commit names the resume
// offset of every assigned partition after that commit.
type Batch struct {
	Records   []Record
	Watermark LSN     // every input change at or below it has been handed over
	Final     bool    // the last batch of a release; offsets are committed after it
	Commit    Offsets // set on Final batches: what will be committed
}

// Handler consumes batches.
type Handler interface {
	// Assigned is called when the group assigns partitions, with the committed
	// offsets (kafka.FirstOffset where none), before anything is read; it returns
	// where to start reading, at or before the committed offsets.
	Assigned(ctx context.Context, committed Offsets) (Offsets, error)
	// Handle processes one batch; offsets are committed only after it returns nil.
	Handle(ctx context.Context, b Batch) error
}

// HandlerFunc adapts a function to a Handler that starts at the committed offsets.
type HandlerFunc func(context.Context, Batch) error

// Assigned returns the committed offsets unchanged.
func (f HandlerFunc) Assigned(_ context.Context, committed Offsets) (Offsets, error) {
	return committed, nil
}

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, b Batch) error { return f(ctx, b) }

// Consumer reads its input topics as one consumer group and hands their records
// to a handler in position order: a change at commit LSN L is released only when
// every assigned input partition has passed a watermark marker at or above L and
// every gate is at or above L. Processing order therefore depends only on
// positions, never on the relative speed of partitions, consumers or restarts.
type Consumer struct {
	cfg ConsumerConfig
	dec *decoder
	log *slog.Logger
	h   Handler
}

// NewConsumer returns a consumer; Run starts it.
func NewConsumer(cfg ConsumerConfig, codecs *Codecs, logger *slog.Logger) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	return &Consumer{cfg: cfg, dec: newDecoder(cfg.Brokers, cfg.Security, cfg.SchemaTopic, codecs), log: logger}, nil
}

// Run consumes until ctx is done or the handler fails; it returns the handler's
// error (offsets of the failed batch are not committed).
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	c.h = h
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: c.cfg.Group, Brokers: c.cfg.Brokers, Dialer: c.cfg.Security.Dialer(), Topics: c.cfg.Topics,
		StartOffset: kafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		RebalanceTimeout: 10 * time.Second, JoinGroupBackoff: time.Second, WatchPartitionChanges: true,
		GroupBalancers: []kafka.GroupBalancer{activeStandby{joined: time.Now().UnixNano()}},
	})
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", c.cfg.Group, err)
	}
	defer cg.Close()
	var failingSince time.Time
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// kafka-go keeps rejoining on its own; a coordinator that is still
			// starting is normal, one that stays away is an outage worth failing on.
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > 2*time.Minute {
				return fmt.Errorf("join group %s: %w", c.cfg.Group, describeSecurityError(c.cfg.Security, describeDialError(err)))
			}
			c.log.Warn("joining consumer group failed, retrying", "group", c.cfg.Group, "error", err)
			continue
		}
		failingSince = time.Time{}
		genCtx, cancel := context.WithCancel(ctx)
		gen.Start(func(gctx context.Context) {
			select {
			case <-gctx.Done():
			case <-genCtx.Done():
			}
			cancel()
		})
		err = c.runGeneration(genCtx, gen)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, kafka.ErrGenerationEnded):
			return err
		}
		c.log.Info("consumer group rebalanced", "group", c.cfg.Group, "generation", gen.ID)
	}
}

type partition struct {
	topic   string
	id      int
	reader  *kafka.Reader
	pending []held // data records not yet released, in offset order
	marker  LSN    // last marker read
	marked  bool   // a marker has been read since start
	marks   []mark // markers read but not yet committed
	// position is where reading resumes after the last commit: the start offset
	// (0 for "the first offset"), then the offset past the last committed marker.
	position int64
}

// held is a data record read but not yet released. Records that carry their
// position in headers (everything starstream writes) are decoded only when
// released, a batch at a time: a decoded change costs several times its Avro
// bytes, and a huge transaction is held whole until its commit's marker.
// Others are decoded when read, for their position or their poison error.
type held struct {
	m   kafka.Message
	pos Position
	rec *Record // decoded at read: the record has no position headers
}

// poison reports a record known to be undecodable: released at once.
func (h *held) poison() bool { return h.rec != nil && h.rec.Err != nil }

type mark struct {
	lsn    LSN
	offset int64
}

func (c *Consumer) runGeneration(ctx context.Context, gen *kafka.Generation) error {
	var parts []*partition
	defer func() {
		for _, p := range parts {
			p.reader.Close()
		}
	}()
	committed := Offsets{}
	for topic, assigned := range gen.Assignments {
		committed[topic] = map[int]int64{}
		for _, a := range assigned {
			committed[topic][a.ID] = a.Offset
		}
	}
	start, err := c.h.Assigned(ctx, committed)
	if err != nil {
		return err
	}
	for topic, assigned := range gen.Assignments {
		for _, a := range assigned {
			r := c.cfg.Security.Reader(kafka.ReaderConfig{
				Brokers: c.cfg.Brokers, Topic: topic, Partition: a.ID,
				MinBytes: 1, MaxBytes: 32 << 20, MaxWait: time.Second,
			})
			offset, ok := start[topic][a.ID]
			if !ok {
				offset = a.Offset
			}
			if err := r.SetOffset(offset); err != nil {
				r.Close()
				return fmt.Errorf("seek %s[%d]: %w", topic, a.ID, err)
			}
			parts = append(parts, &partition{topic: topic, id: a.ID, reader: r, position: max(offset, 0)})
		}
	}
	standby, _ := c.h.(interface{ Standby(bool) })
	if len(parts) == 0 {
		c.log.Info("standing by: another member of the group is active", "group", c.cfg.Group)
		if standby != nil {
			standby.Standby(true)
			defer standby.Standby(false)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	sort.Slice(parts, func(i, j int) bool {
		if parts[i].topic != parts[j].topic {
			return parts[i].topic < parts[j].topic
		}
		return parts[i].id < parts[j].id
	})
	released := LSN(0)
	for {
		in := MaxLSN
		for _, p := range parts {
			if !p.marked {
				in = 0
				break
			}
			if p.marker < in {
				in = p.marker
			}
		}
		gate := MinWatermark(c.cfg.Gates)
		bound := min(in, gate)
		if bound > released || c.releasable(parts, bound) {
			if err := c.release(ctx, gen, parts, bound); err != nil {
				return err
			}
			released = max(released, bound)
			continue
		}
		if in <= gate {
			// Input-limited: read the laggards up to their next marker. When they
			// are idle, read ahead in the others too (bounded): an upstream that
			// replayed puts records and markers below the watermark there.
			progressed := false
			for _, p := range parts {
				if !p.marked || p.marker == in {
					ok, err := c.readFor(ctx, p, 500*time.Millisecond)
					if err != nil {
						return err
					}
					progressed = progressed || ok
				}
			}
			if !progressed {
				for _, p := range parts {
					if p.marked && p.marker > in && len(p.pending) < maxReadAhead {
						if _, err := c.readFor(ctx, p, 50*time.Millisecond); err != nil {
							return err
						}
					}
				}
			}
			continue
		}
		// Gate-limited: wait for an upstream watermark to move.
		waits := make([]<-chan struct{}, len(c.cfg.Gates))
		for i, g := range c.cfg.Gates {
			waits[i] = g.Changed()
		}
		if MinWatermark(c.cfg.Gates) != gate {
			continue
		}
		if err := waitAny(ctx, waits); err != nil {
			return err
		}
	}
}

func waitAny(ctx context.Context, chans []<-chan struct{}) error {
	done := make(chan struct{})
	defer close(done)
	fired := make(chan struct{}, len(chans))
	for _, ch := range chans {
		go func(ch <-chan struct{}) {
			select {
			case <-ch:
				fired <- struct{}{}
			case <-done:
			}
		}(ch)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-fired:
		return nil
	}
}

// releasable reports whether a release at bound would hand over or commit
// anything: poison records, records at or below it, or markers at or below it
// (those of an upstream that replayed come back below the bound already passed).
func (c *Consumer) releasable(parts []*partition, bound LSN) bool {
	for _, p := range parts {
		if len(p.marks) > 0 && p.marks[0].lsn <= bound {
			return true
		}
		for i := range p.pending {
			if h := &p.pending[i]; h.poison() || h.pos.LSN <= bound {
				return true
			}
		}
	}
	return false
}

// shrinkPending is the capacity above which a partition's pending array is
// reallocated once a release left it mostly empty.
const shrinkPending = 4096

// maxReadAhead bounds the records buffered from a partition that is ahead.
const maxReadAhead = 50_000

// readFor reads one partition up to its next marker for at most d; records read
// stay pending either way. It reports whether a marker was reached.
func (c *Consumer) readFor(ctx context.Context, p *partition, d time.Duration) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := c.readToMarker(ctx, rctx, p)
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		return false, nil
	}
	return false, err
}

// readToMarker reads one partition until the next watermark marker, fetching
// under rctx (the read's time slice). Records without position headers are
// decoded under ctx: looking up an unknown schema (a scan of the schema topic,
// a registry request) may outlast the slice, and a lookup cut short by it
// would dead-letter a good record.
func (c *Consumer) readToMarker(ctx, rctx context.Context, p *partition) error {
	for {
		m, err := p.reader.FetchMessage(rctx)
		if err != nil {
			return fmt.Errorf("read %s[%d]: %w", p.topic, p.id, err)
		}
		if lsn, ok := MarkerLSN(m); ok {
			// A marker below the one already seen comes from a producer that
			// replayed: what precedes it is below the partition's watermark too,
			// so it is a commit point at that watermark.
			p.marker = max(p.marker, lsn)
			p.marked = true
			p.marks = append(p.marks, mark{lsn: p.marker, offset: m.Offset})
			return nil
		}
		if pos, ok := HeaderPosition(m.Headers); ok {
			p.pending = append(p.pending, held{m: m, pos: pos})
			continue
		}
		r := c.dec.decode(ctx, m)
		p.pending = append(p.pending, held{m: m, pos: r.Event.Pos, rec: &r})
	}
}

// decodeHeld decodes a record being released. One whose Avro position is not
// the one its headers gave is poison: it was ordered by the headers.
func (c *Consumer) decodeHeld(ctx context.Context, h *held) Record {
	if h.rec != nil {
		return *h.rec
	}
	r := c.dec.decode(ctx, h.m)
	if r.Err == nil && r.Event.Pos != h.pos {
		r.Err = fmt.Errorf("%s[%d]@%d: %w: position headers say %v, the record %v", r.Topic, r.Partition, r.Offset, ErrPoison, h.pos, r.Event.Pos)
	}
	return r
}

// release hands every pending record at or below bound (and every poison record)
// to the handler in position order, then commits offsets past the markers covered.
func (c *Consumer) release(ctx context.Context, gen *kafka.Generation, parts []*partition, bound LSN) error {
	n := 0
	for _, p := range parts {
		for i := range p.pending {
			if h := &p.pending[i]; h.poison() || h.pos.LSN <= bound {
				n++
			}
		}
	}
	// Sized once: a huge transaction (1M records) would otherwise grow it by
	// doubling, holding up to three copies of its records at the peak.
	out := make([]held, 0, n)
	for _, p := range parts {
		// Every record at or below bound goes, not only a leading run of them: a
		// producer that replayed puts records below bound after records above it
		// (already in the partition from before its crash), and leaving those
		// behind would make releasable true forever with nothing to release.
		keep := p.pending[:0]
		for _, h := range p.pending {
			if h.poison() || h.pos.LSN <= bound {
				out = append(out, h)
			} else {
				keep = append(keep, h)
			}
		}
		clear(p.pending[len(keep):]) // drop the released records' buffers
		p.pending = keep
		if cap(keep) > shrinkPending && len(keep) < cap(keep)/4 {
			// The array a huge transaction grew stays otherwise, for good.
			p.pending = append([]held(nil), keep...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pos.Less(out[j].pos) })
	// offsets are what this release commits (partitions that passed a marker);
	// positions are every assigned partition's resume point, for the checkpoint:
	// a checkpoint must name all of them, or it would match any committed offsets.
	offsets, positions := Offsets{}, Offsets{}
	for _, p := range parts {
		keep := p.marks[:0]
		for _, mk := range p.marks {
			if mk.lsn <= bound {
				// A marker may follow a record above it (written while a later
				// transaction was in flight); that record is still pending, so
				// reading must resume at it, not past the marker. What is re-read
				// between it and the marker was applied and is ignored by position.
				p.position = mk.offset + 1
				if len(p.pending) > 0 {
					p.position = min(p.position, p.pending[0].m.Offset)
				}
				if offsets[p.topic] == nil {
					offsets[p.topic] = map[int]int64{}
				}
				offsets[p.topic][p.id] = p.position
			} else {
				keep = append(keep, mk)
			}
		}
		p.marks = keep
		if positions[p.topic] == nil {
			positions[p.topic] = map[int]int64{}
		}
		positions[p.topic][p.id] = p.position
	}
	for start := 0; ; start += c.cfg.MaxBatch {
		end := min(start+c.cfg.MaxBatch, len(out))
		recs := make([]Record, 0, end-start)
		for i := range out[start:end] {
			recs = append(recs, c.decodeHeld(ctx, &out[start+i]))
		}
		if err := ctx.Err(); err != nil {
			// A schema lookup cut short by a rebalance or a stop left records
			// undecoded: they are not poison, and nothing of them is handed over.
			return err
		}
		b := Batch{Records: recs, Watermark: bound, Final: end == len(out)}
		if b.Final {
			b.Commit = positions
		} else if next := out[end].pos.LSN; next > 0 {
			// Only transactions wholly handed over are below the watermark.
			b.Watermark = next - 1
		}
		if err := c.h.Handle(ctx, b); err != nil {
			return err
		}
		// Handled records go now, not after the whole release: of a huge
		// transaction, only what the handler keeps stays in memory.
		clear(out[start:end])
		if b.Final {
			break
		}
	}
	if err := gen.CommitOffsets(offsets); err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", c.cfg.Group, err)
	}
	return nil
}
