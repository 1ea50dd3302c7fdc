package capture

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
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
	barrier  chan error   // closed once everything before is acknowledged and marked
	mark     stream.LSN   // watermark to publish (with barrier)
	done     func()       // called (on the pipeline's goroutine; must not block) once everything before is acknowledged
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
	lanes     int
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
		maxBatch:   max(cfg.ChunkEvents, cfg.MaxInFlight/4),
		lanes:      cfg.WriteLanes,
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

// Kafka writes run on several lanes at once, so that encoding and waiting
// for acknowledgements overlap and use more than one core. A key always takes
// the same lane, so its changes stay in order. LSNs are acknowledged, and
// markers written, only once every lane has finished everything queued
// before them: a step completes in order, after its predecessors.
const laneDepth = 2 // jobs queued per lane

type job struct {
	id     uint64
	events batch
}

// batch is a lane's share of a flush. With one lane it is the reader's chunks
// as they came, not copied; with several, the events picked for the lane.
type batch struct {
	chunks [][]stream.Event
	n      int
}

func (b *batch) addChunk(evs []stream.Event) {
	if len(evs) > 0 {
		b.chunks = append(b.chunks, evs)
		b.n += len(evs)
	}
}

func (b *batch) addEvent(ev stream.Event) {
	if len(b.chunks) == 0 {
		b.chunks = [][]stream.Event{make([]stream.Event, 0, 256)}
	}
	last := &b.chunks[len(b.chunks)-1]
	*last = append(*last, ev)
	b.n++
}

// flat returns the events as one slice.
func (b *batch) flat() []stream.Event {
	if len(b.chunks) == 1 {
		return b.chunks[0]
	}
	out := make([]stream.Event, 0, b.n)
	for _, c := range b.chunks {
		out = append(out, c...)
	}
	return out
}

type jobDone struct {
	id  uint64
	err error
}

// step is a flushed batch (or a control waiting for its turn) in the ordered
// completion queue.
type step struct {
	id        uint64
	remaining int // lane jobs not yet acknowledged
	commits   []txnEnd
	idle      stream.LSN
	barrier   chan error
	mark      stream.LSN
	done      func()
}

// run consumes units until the channel is closed (graceful stop: everything
// queued is written) or ctx fails.
func (p *pipeline) run(ctx context.Context) error {
	laneCtx, cancelLanes := context.WithCancel(ctx)
	lanes := make([]chan job, p.lanes)
	done := make(chan jobDone, p.lanes*(laneDepth+1))
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan job, laneDepth)
		wg.Add(1)
		if enq, ok := p.w.(enqueuer); ok {
			go func() {
				defer wg.Done()
				p.enqueueLane(laneCtx, enq, lanes[i], done)
			}()
			continue
		}
		go func() {
			defer wg.Done()
			for j := range lanes[i] {
				start := time.Now()
				evs := j.events.flat()
				err := p.w.Write(laneCtx, evs)
				if err == nil {
					p.metrics.written(laneCtx, p.metrics.count(evs), time.Since(start))
				} else {
					err = fmt.Errorf("write to kafka: %w", err)
				}
				p.sem.Release(int64(len(evs)))
				done <- jobDone{j.id, err}
			}
		}()
	}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		cancelLanes()
		wg.Wait()
	}()

	var (
		cur     = make([]batch, p.lanes)
		curN    int
		commits []txnEnd
		queue   []*step
		steps   = map[uint64]*step{}
		nextID  uint64
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
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
	// complete takes the steps at the head of the queue whose jobs all finished.
	complete := func() error {
		for len(queue) > 0 && queue[0].remaining == 0 {
			st := queue[0]
			queue = queue[1:]
			delete(steps, st.id)
			for _, c := range st.commits {
				p.ack(c.end)
				p.wantMark = max(p.wantMark, c.commit)
			}
			if st.idle != 0 {
				p.ack(st.idle)
				// A commit could start exactly at the WAL end: the marker stays below it.
				p.wantMark = max(p.wantMark, st.idle-1)
			}
			if st.barrier != nil {
				p.wantMark = max(p.wantMark, st.mark)
				if err := mark(true); err != nil {
					return err
				}
				close(st.barrier)
			}
			if st.done != nil {
				st.done()
			}
		}
		return nil
	}
	enqueue := func(st *step) error {
		nextID++
		st.id = nextID
		queue = append(queue, st)
		steps[st.id] = st
		return complete()
	}
	onDone := func(d jobDone) error {
		if d.err != nil {
			return d.err
		}
		if st := steps[d.id]; st != nil {
			st.remaining--
		}
		return complete()
	}
	flush := func() error {
		if curN == 0 && len(commits) == 0 {
			return nil
		}
		st := &step{commits: commits}
		nextID++
		st.id = nextID
		steps[st.id] = st
		queue = append(queue, st)
		for _, evs := range cur {
			if evs.n > 0 {
				st.remaining++
			}
		}
		for l, evs := range cur {
			if evs.n == 0 {
				continue
			}
			// Keep taking completions while a lane is full: lanes block on done.
			for sent := false; !sent; {
				select {
				case lanes[l] <- job{st.id, evs}:
					sent = true
				case d := <-done:
					if err := onDone(d); err != nil {
						return err
					}
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			cur[l] = batch{}
		}
		curN, commits = 0, nil
		return complete()
	}
	// drain waits until everything queued is acknowledged.
	drain := func() error {
		if err := flush(); err != nil {
			return err
		}
		for len(queue) > 0 {
			select {
			case d := <-done:
				if err := onDone(d); err != nil {
					return err
				}
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	}
	add := func(evs []stream.Event) error {
		if p.resume != nil && len(evs) > 0 {
			n := len(evs)
			var active bool
			evs, active = p.resume.filter(evs, p.codec)
			if d := n - len(evs); d > 0 {
				p.sem.Release(int64(d))
				p.skipped += d
			}
			if !active {
				p.log.Info("resumed past what the previous run published", "skipped", p.skipped)
				p.resume = nil
			}
		}
		from := 0 // evs[from:i] not yet added (one lane: added as a chunk)
		for i := range evs {
			ev := &evs[i]
			if ev.Op == stream.OpTruncate {
				if p.lanes == 1 {
					cur[0].addChunk(evs[from:i])
					curN += i - from
				}
				from = i + 1
				// The writer sends a truncate to every partition: every lane
				// must be past what came before it.
				if err := drain(); err != nil {
					return err
				}
				if err := p.w.Write(ctx, []stream.Event{*ev}); err != nil {
					return fmt.Errorf("write truncate to kafka: %w", err)
				}
				p.sem.Release(1)
				continue
			}
			if p.lanes > 1 {
				cur[laneOf(ev, p.lanes)].addEvent(*ev)
				curN++
			}
		}
		if p.lanes == 1 {
			cur[0].addChunk(evs[from:])
			curN += len(evs) - from
		}
		return nil
	}
	handle := func(u unit) error {
		switch {
		case u.register != nil:
			if err := drain(); err != nil {
				return err
			}
			return p.register(ctx, u.register)
		case u.resume != nil:
			if err := drain(); err != nil {
				return err
			}
			p.resume = u.resume
			p.wantMark = max(p.wantMark, u.resume.marker)
			p.marked = max(p.marked, u.resume.marker)
		case u.idle != 0:
			if err := flush(); err != nil {
				return err
			}
			return enqueue(&step{idle: u.idle})
		case u.barrier != nil:
			if err := flush(); err != nil {
				return err
			}
			return enqueue(&step{barrier: u.barrier, mark: u.mark})
		case u.done != nil:
			if err := flush(); err != nil {
				return err
			}
			return enqueue(&step{done: u.done})
		default:
			if err := add(u.events); err != nil {
				return err
			}
			if u.commit != nil {
				commits = append(commits, *u.commit)
			}
			if curN >= p.maxBatch {
				return flush()
			}
		}
		return nil
	}
	for {
		select {
		case u, ok := <-p.units:
			if !ok {
				if err := drain(); err != nil {
					return err
				}
				return mark(true)
			}
			if err := handle(u); err != nil {
				return err
			}
			// Take whatever else is already queued into the same flush.
		more:
			for curN < p.maxBatch {
				select {
				case u, ok := <-p.units:
					if !ok {
						if err := drain(); err != nil {
							return err
						}
						return mark(true)
					}
					if err := handle(u); err != nil {
						return err
					}
				default:
					break more
				}
			}
			if err := flush(); err != nil {
				return err
			}
		case d := <-done:
			if err := onDone(d); err != nil {
				return err
			}
		case <-timer.C:
			if err := mark(true); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if err := mark(false); err != nil {
			return err
		}
	}
}

// enqueuer is implemented by writers that hand events to Kafka without
// waiting for the acknowledgement (*stream.Writer). A lane then encodes its
// next batch while Kafka acknowledges the previous ones, instead of leaving
// the CPU idle during every round trip: encoding is most of capture's work.
type enqueuer interface {
	Enqueue(ctx context.Context, events []stream.Event) (*stream.Pending, error)
}

var _ enqueuer = (*stream.Writer)(nil)

// enqueueLane runs a lane on an enqueuer: jobs are enqueued in order (so a
// key's changes stay in order) and reported done, in the same order, as Kafka
// acknowledges them. The events are dropped once encoded; the semaphore still
// counts them until they are acknowledged, which bounds memory.
func (p *pipeline) enqueueLane(ctx context.Context, enq enqueuer, jobs <-chan job, done chan<- jobDone) {
	type sent struct {
		id     uint64
		n      int64
		pends  []*stream.Pending
		start  time.Time
		counts []tableCount
	}
	report := func(d jobDone) {
		select {
		case done <- d:
		case <-ctx.Done(): // the run loop is gone
		}
	}
	// After a failure nothing more is enqueued: later changes of a key must
	// not reach Kafka before the failed ones, which the next session re-sends.
	var failed atomic.Bool
	inflight := make(chan sent, 64)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for s := range inflight {
			var err error
			for _, pend := range s.pends {
				select {
				case <-pend.Done():
					if perr := pend.Err(); perr != nil && err == nil {
						err = fmt.Errorf("write to kafka: %w", perr)
					}
				case <-ctx.Done():
					err = context.Cause(ctx)
				}
				if ctx.Err() != nil {
					break
				}
			}
			if err == nil {
				p.metrics.written(ctx, s.counts, time.Since(s.start))
			} else {
				failed.Store(true)
			}
			p.sem.Release(s.n)
			report(jobDone{s.id, err})
		}
	}()
	defer func() { close(inflight); <-waited }()
	for j := range jobs {
		s := sent{id: j.id, n: int64(j.events.n), start: time.Now()}
		if p.metrics != nil {
			for _, c := range j.events.chunks {
				s.counts = append(s.counts, p.metrics.count(c)...)
			}
		}
		var err error
		if failed.Load() {
			err = errEarlierWriteFailed
		}
		for _, c := range j.events.chunks {
			if err != nil {
				break
			}
			var pend *stream.Pending
			if pend, err = enq.Enqueue(ctx, c); err != nil {
				failed.Store(true)
				err = fmt.Errorf("write to kafka: %w", err)
				break
			}
			s.pends = append(s.pends, pend)
		}
		if err != nil {
			p.sem.Release(s.n)
			report(jobDone{j.id, err})
			continue
		}
		select {
		case inflight <- s:
		case <-ctx.Done():
			p.sem.Release(s.n)
		}
	}
}

// laneOf picks a key's lane: the same key values always give the same lane.
func laneOf(ev *stream.Event, lanes int) int {
	if lanes == 1 {
		return 0
	}
	var sum uint64
	for k, v := range ev.Key { // order-independent: a sum of per-column hashes
		h := fnv.New64a()
		h.Write([]byte(k))
		switch x := v.(type) {
		case int64:
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(x))
			h.Write(b[:])
		case string:
			h.Write([]byte(x))
		case []byte:
			h.Write(x)
		case nil:
		default:
			fmt.Fprint(h, x)
		}
		sum += h.Sum64()
	}
	return int(sum % uint64(lanes))
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
