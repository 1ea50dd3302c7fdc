package stream

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// Pending is the acknowledgement of the records of one Enqueue: Done is
// closed once Kafka acknowledged all of them (acks=all), gave up on one, or
// left some unacknowledged for longer than the writer's AckTimeout, after
// which Err tells which.
type Pending struct {
	left    atomic.Int64
	done    chan struct{}
	release func() // returns the records' buffers once Kafka is done with them
	timer   *time.Timer

	mu     sync.Mutex
	err    error
	closed bool
	total  int
	topics map[string]int // records not acknowledged yet, by topic
}

// newPending expects acknowledgements for msgs; release runs once Kafka has
// reported on every one of them, even after the Pending expired. With a
// timeout > 0, Done closes with ErrNotAcknowledged if some are still
// outstanding by then.
func newPending(msgs []kafka.Message, timeout time.Duration, release func()) *Pending {
	p := &Pending{done: make(chan struct{}), release: release, total: len(msgs)}
	p.left.Store(int64(len(msgs)))
	if len(msgs) == 0 {
		p.finish()
		return p
	}
	p.topics = map[string]int{}
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].Topic == msgs[i].Topic {
			j++
		}
		p.topics[msgs[i].Topic] += j - i
		i = j
	}
	if timeout > 0 {
		p.timer = time.AfterFunc(timeout, func() { p.expire(timeout) })
	}
	return p
}

// Done is closed when every record was acknowledged, one failed for good, or
// the acknowledgement timeout passed.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Err returns the first error of the records' writes, or ErrNotAcknowledged;
// it is meaningful once Done is closed.
func (p *Pending) Err() error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	default:
		return nil
	}
}

// Wait blocks until Done is closed or ctx ends, and returns Err or ctx's error.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Pending) ack(topic string, n int, err error) {
	p.mu.Lock()
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %w", topic, describeDialError(err))
	}
	p.topics[topic] -= n
	p.mu.Unlock()
	if p.left.Add(-int64(n)) == 0 {
		p.finish()
	}
}

// finish runs once Kafka reported on every record.
func (p *Pending) finish() {
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.release != nil {
		p.release()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
}

// expire fails the Pending whose records Kafka still has not reported on: the
// caller stops waiting and fails loudly instead of hanging. The buffers stay
// with kafka-go until it does report.
func (p *Pending) expire(timeout time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	var out []string
	for topic, n := range p.topics {
		if n > 0 {
			out = append(out, fmt.Sprintf("%s (%d)", topic, n))
		}
	}
	sort.Strings(out)
	p.err = fmt.Errorf("%w after %s: %d of %d records, to %s", ErrNotAcknowledged, timeout,
		p.left.Load(), p.total, strings.Join(out, ", "))
	p.closed = true
	close(p.done)
}

// completed is kafka-go's Completion: each record names its Pending in
// WriterData, and a batch holds runs of records of the same Pending, all of
// one topic partition.
func completed(msgs []kafka.Message, err error) {
	for i := 0; i < len(msgs); {
		p, _ := msgs[i].WriterData.(*Pending)
		j := i + 1
		for j < len(msgs) && msgs[j].WriterData == msgs[i].WriterData {
			j++
		}
		if p != nil {
			p.ack(msgs[i].Topic, j-i, err)
		}
		i = j
	}
}

// encoded holds the records of one Enqueue: their bytes (keys, values and
// header values, packed) and headers stay referenced by kafka-go until the
// records are acknowledged, then the whole is reused. The records and
// messages are scratch space, free again once kafka-go has copied the
// messages into its batches.
type encoded struct {
	data    []byte
	headers []kafka.Header
}

type scratch struct {
	recs []record
	msgs []kafka.Message
}

type span struct{ from, to int }

func (s span) of(b []byte) []byte { return b[s.from:s.to:s.to] }

// record is a message while its bytes are still being appended to: spans
// become slices only once data stops moving.
type record struct {
	topic              string
	key, value         span
	lsn, seq, time     span
	partition          span // truncates: the partition header's value
	hasPartitionHeader bool
}

// Enqueue encodes the events with their table's registered schema and hands
// them to Kafka without waiting for the acknowledgement, which the returned
// Pending reports. Calls are ordered: the records of one key reach their
// partition in the order of the Enqueue calls that carried them. On error
// nothing was enqueued.
func (w *Writer) Enqueue(ctx context.Context, events []Event) (*Pending, error) {
	if len(events) == 0 {
		return newPending(nil, 0, nil), nil
	}
	e, _ := w.bufs.Get().(*encoded)
	if e == nil {
		e = &encoded{}
	}
	sc, _ := w.scratch.Get().(*scratch)
	if sc == nil {
		sc = &scratch{}
	}
	defer w.recycleScratch(sc)
	if err := w.encode(e, sc, events); err != nil {
		w.recycle(e)
		return nil, err
	}
	p := newPending(sc.msgs, w.cfg.AckTimeout, func() { w.recycle(e) })
	for i := range sc.msgs {
		sc.msgs[i].WriterData = p
	}
	// kafka-go copies the messages into its batches: the scratch space is
	// free again when it returns, the bytes and headers only once p is done.
	if err := w.kw.WriteMessages(ctx, sc.msgs...); err != nil {
		w.recycle(e)
		return nil, fmt.Errorf("write %d events: %w", len(events), describeDialError(err))
	}
	return p, nil
}

func (w *Writer) recycleScratch(sc *scratch) {
	clear(sc.msgs) // drop references to topics, buffers and the Pending
	clear(sc.recs)
	sc.recs, sc.msgs = sc.recs[:0], sc.msgs[:0]
	w.scratch.Put(sc)
}

func (w *Writer) recycle(e *encoded) {
	clear(e.headers)
	e.data, e.headers = e.data[:0], e.headers[:0]
	w.bufs.Put(e)
}

// encode appends the events' records to e, and their messages to sc.
func (w *Writer) encode(e *encoded, sc *scratch, events []Event) error {
	var (
		last      tableName
		tc        *TableCodec
		topic     string
		parts     int
		lastLSN   LSN
		lsnSpan   span
		lastTime  time.Time
		timeSpan  span
		haveCache bool
	)
	buf := e.data
	mark := func() int { return len(buf) }
	for i := range events {
		ev := &events[i]
		if tc == nil || ev.Schema != last.schema || ev.Table != last.table {
			last = tableName{ev.Schema, ev.Table}
			w.mu.Lock()
			tc = w.tables[last]
			topic = w.topics[last]
			parts = w.partitions[topic]
			w.mu.Unlock()
			if tc == nil {
				return fmt.Errorf("write %s.%s: table not registered", ev.Schema, ev.Table)
			}
		}
		var r record
		r.topic = topic
		var err error
		r.key.from = mark()
		if ev.Op == OpTruncate {
			buf = append(buf, truncateKey...)
		} else {
			key := ev.Key
			if key == nil {
				key = ev.Row()
			}
			if buf, err = tc.AppendKey(buf, key); err != nil {
				return err
			}
		}
		r.key.to = mark()
		r.value.from = r.key.to
		if buf, err = tc.AppendValue(buf, ev); err != nil {
			return err
		}
		r.value.to = mark()
		// Header values: the LSN and commit time are those of the whole
		// transaction, so consecutive events share them.
		if !haveCache || ev.Pos.LSN != lastLSN {
			lsnSpan.from = mark()
			buf = strconv.AppendUint(buf, uint64(ev.Pos.LSN), 10)
			lsnSpan.to = mark()
			lastLSN = ev.Pos.LSN
		}
		if !haveCache || !ev.CommitTime.Equal(lastTime) {
			timeSpan.from = mark()
			buf = appendCommitTime(buf, ev.CommitTime)
			timeSpan.to = mark()
			lastTime = ev.CommitTime
		}
		haveCache = true
		r.lsn, r.time = lsnSpan, timeSpan
		r.seq.from = mark()
		buf = strconv.AppendUint(buf, ev.Pos.Seq, 10)
		r.seq.to = mark()
		if ev.Op != OpTruncate {
			sc.recs = append(sc.recs, r)
			continue
		}
		// A truncate concerns every key, so every partition gets it, in order.
		r.hasPartitionHeader = true
		for p := 0; p < parts; p++ {
			r.partition.from = mark()
			buf = strconv.AppendInt(buf, int64(p), 10)
			r.partition.to = mark()
			sc.recs = append(sc.recs, r)
		}
	}
	e.data = buf
	nh := 0
	for i := range sc.recs {
		nh += 3
		if sc.recs[i].hasPartitionHeader {
			nh++
		}
	}
	e.headers = growLen(e.headers, nh)
	sc.msgs = growLen(sc.msgs, len(sc.recs))
	h := 0
	for i := range sc.recs {
		r := &sc.recs[i]
		hs := e.headers[h : h+3 : h+3]
		hs[0] = kafka.Header{Key: HeaderLSN, Value: r.lsn.of(buf)}
		hs[1] = kafka.Header{Key: HeaderSeq, Value: r.seq.of(buf)}
		hs[2] = kafka.Header{Key: HeaderCommitTime, Value: r.time.of(buf)}
		if r.hasPartitionHeader {
			hs = e.headers[h : h+4 : h+4]
			hs[3] = kafka.Header{Key: headerPartition, Value: r.partition.of(buf)}
		}
		h += len(hs)
		sc.msgs[i] = kafka.Message{Topic: r.topic, Key: r.key.of(buf), Value: r.value.of(buf), Headers: hs}
	}
	return nil
}

var truncateKey = []byte("__truncate")

// growLen returns s resized to n elements, reallocating only when too small.
func growLen[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}
