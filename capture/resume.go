package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
)

// After a crash, PostgreSQL re-sends everything after the slot's confirmed
// position, but Kafka may already hold part of it: confirmation lags Kafka's
// acknowledgement by up to a status interval. Re-publishing those changes is
// harmless to idempotent sinks, yet it would put an older version of a key
// after a newer one, and changes below a watermark already emitted. So on
// restart capture reads the tail of each partition and drops what is
// provably there already:
//   - every change at or below the highest watermark marker found (a marker is
//     written only after Kafka acknowledged everything below it);
//   - every change whose position the partition it belongs to already holds.
// Nothing is dropped on a guess: a change that cannot be found is re-sent.
//
// A marker is not a clean cut in a partition: records above it can precede
// it (a marker waits for the coalescing interval, and write lanes finish out
// of order). Those records are at most what was in flight around the marker,
// so the scan goes back tailMargin records before the last marker, and keeps
// every position above the highest marker found.

// resumeState is what the previous run left at the end of the topics.
type resumeState struct {
	marker  stream.LSN
	horizon stream.Position // highest data position found: above it, nothing is filtered
	parts   map[string]int  // topic → partition count
	seen    map[string][]map[stream.Position]struct{}
}

// maxTailScan bounds how far back a partition is searched for its last marker.
const maxTailScan = 1 << 22

func readResume(ctx context.Context, brokers []string, sec *stream.Security, topics []string, margin int64) (*resumeState, error) {
	admin := stream.NewAdmin(brokers, sec)
	client := admin.Client()
	rs := &resumeState{parts: map[string]int{}, seen: map[string][]map[stream.Position]struct{}{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var errs []error
	for _, topic := range topics {
		first, end, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			if errors.Is(err, kafka.UnknownTopicOrPartition) {
				continue
			}
			return nil, fmt.Errorf("read end of %s: %w", topic, err)
		}
		seen := make([]map[stream.Position]struct{}, len(end))
		mu.Lock()
		rs.parts[topic] = len(end)
		rs.seen[topic] = seen
		mu.Unlock()
		for p := range end {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				t, err := readTail(ctx, client, topic, p, first[p], end[p], margin)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("read tail of %s[%d]: %w", topic, p, err))
					return
				}
				seen[p] = t.seen
				rs.marker = max(rs.marker, t.marker)
				if rs.horizon.Less(t.last) {
					rs.horizon = t.last
				}
			}()
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// At or below the highest marker, the marker rule decides.
	for _, parts := range rs.seen {
		for _, seen := range parts {
			for pos := range seen {
				if pos.LSN <= rs.marker {
					delete(seen, pos)
				}
			}
		}
	}
	return rs, nil
}

type tail struct {
	marker stream.LSN
	last   stream.Position
	seen   map[stream.Position]struct{}
}

func readTail(ctx context.Context, client *kafka.Client, topic string, p int, first, end int64, margin int64) (tail, error) {
	for k := max(4096, 2*margin); ; k *= 4 {
		start := max(first, end-k)
		t, lastMarker, err := scanPartition(ctx, client, topic, p, start, end)
		if err != nil || start == first || k >= maxTailScan || (lastMarker >= 0 && lastMarker-start >= margin) {
			return t, err
		}
	}
}

// scanPartition reads [start, end) and returns the highest marker, every data
// position, and the offset of the last marker (-1 if none).
func scanPartition(ctx context.Context, client *kafka.Client, topic string, p int, start, end int64) (tail, int64, error) {
	t := tail{seen: map[stream.Position]struct{}{}}
	lastMarker := int64(-1)
	for off := start; off < end; {
		res, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p, Offset: off,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil {
			return t, lastMarker, err
		}
		if res.Error != nil {
			return t, lastMarker, res.Error
		}
		n := 0
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return t, lastMarker, err
			}
			if rec.Offset < off || rec.Offset >= end {
				continue
			}
			n++
			off = rec.Offset + 1
			if lsn, ok := stream.MarkerLSN(kafka.Message{Headers: rec.Headers}); ok {
				t.marker = max(t.marker, lsn)
				lastMarker = rec.Offset
				continue
			}
			if pos, ok := stream.HeaderPosition(rec.Headers); ok {
				t.seen[pos] = struct{}{}
				if t.last.Less(pos) {
					t.last = pos
				}
			}
		}
		if n == 0 {
			if res.HighWatermark <= off {
				break
			}
			off++ // a gap (compaction, transaction markers): step over it
		}
	}
	return t, lastMarker, nil
}

// filter removes from batch the events the previous run already published.
// It reports false once the batch is past everything found, so the caller can
// stop filtering.
func (rs *resumeState) filter(batch []stream.Event, codec func(table string) (*stream.TableCodec, string)) ([]stream.Event, bool) {
	out := batch[:0]
	for i := range batch {
		ev := &batch[i]
		if !rs.published(ev, codec) {
			out = append(out, *ev)
		}
	}
	for i := len(out); i < len(batch); i++ {
		batch[i] = stream.Event{} // let the garbage collector have them
	}
	active := len(batch) == 0 || !rs.until().Less(batch[len(batch)-1].Pos)
	return out, active
}

// until is the last position the filter can still drop.
func (rs *resumeState) until() stream.Position {
	m := stream.Position{LSN: rs.marker, Seq: math.MaxUint64}
	if m.Less(rs.horizon) {
		return rs.horizon
	}
	return m
}

func (rs *resumeState) published(ev *stream.Event, codec func(table string) (*stream.TableCodec, string)) bool {
	if ev.Pos.LSN <= rs.marker {
		return true
	}
	if rs.horizon.Less(ev.Pos) || ev.Op == stream.OpTruncate {
		return false
	}
	tc, topic := codec(ev.Schema + "." + ev.Table)
	n := rs.parts[topic]
	if tc == nil || n == 0 {
		return false
	}
	key := ev.Key
	if key == nil {
		key = ev.Row()
	}
	k, err := tc.EncodeKey(&stream.Event{Key: key})
	if err != nil {
		return false
	}
	// The partition the writer picks: murmur2 of the encoded key, as Java clients do.
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	p := kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: k}, parts...)
	_, ok := rs.seen[topic][p][ev.Pos]
	return ok
}
