package stream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

func itemsSchema(schema, table string) stream.TableSchema {
	return stream.TableSchema{Schema: schema, Table: table, Columns: []stream.Column{
		{Name: "id", Type: stream.Type{Kind: stream.KindInt}, Key: true},
		{Name: "note", Type: stream.Type{Kind: stream.KindString}, Nullable: true},
	}}
}

// itemsWriter returns a writer with the items schema registered for each topic
// (its table is the topic's last part, its schema ns), closed when the test ends.
func itemsWriter(ctx context.Context, t *testing.T, brokers []string, ns string, log *slog.Logger, topics ...string) *stream.Writer {
	t.Helper()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for _, topic := range topics {
		if _, err := w.Register(ctx, topic, itemsSchema(ns, topic[strings.LastIndex(topic, ".")+1:])); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// itemsTopic sets up a test on one topic, <kind>.<ns>.<table> with ns a fresh
// name (prefix): the topic, deleted when the test ends; a context that ends
// after timeout; a discarding logger; and a writer with the items schema.
func itemsTopic(t *testing.T, prefix, kind, table string, timeout time.Duration) (context.Context, []string, string, string, *slog.Logger, *stream.Writer) {
	t.Helper()
	brokers := streamtest.Brokers(t)
	ns := streamtest.Name(t, prefix)
	topic := kind + "." + ns + "." + table
	streamtest.DeleteTopics(t, brokers, topic)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	return ctx, brokers, ns, topic, log, itemsWriter(ctx, t, brokers, ns, log, topic)
}

func event(schema, table string, id int64, lsn stream.LSN, seq uint64) stream.Event {
	return stream.Event{Schema: schema, Table: table, Op: stream.OpInsert,
		Key:   map[string]any{"id": id},
		After: map[string]any{"id": id, "note": fmt.Sprintf("%d@%d", id, lsn)},
		Pos:   stream.Position{LSN: lsn, Seq: seq}, CommitTime: time.Unix(int64(lsn), 0)}
}

// Two topics of three partitions; transactions interleave across topics. The consumer
// must hand records over in position order, gated by an upstream watermark, and a new
// consumer of the same group resumes from committed offsets.
func TestConsumerMergesByPositionAndGates(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ns := streamtest.Name(t, "s")
	topicA, topicB := "cdc."+ns+".a", "cdc."+ns+".b"
	streamtest.DeleteTopics(t, brokers, topicA, topicB)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	w := itemsWriter(ctx, t, brokers, ns, log, topicA, topicB)
	// 20 transactions, each writing to both tables; LSN 100, 110, ...
	var want []stream.Position
	for i := 0; i < 20; i++ {
		lsn := stream.LSN(100 + 10*i)
		evs := []stream.Event{event(ns, "a", int64(i), lsn, 0), event(ns, "b", int64(i), lsn, 1), event(ns, "a", int64(100+i), lsn, 2)}
		if err := w.Write(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := w.Mark(ctx, lsn); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			want = append(want, e.Pos)
		}
	}

	gate := stream.NewBeacon(150)
	group := streamtest.Name(t, "g")
	var mu sync.Mutex
	var got []stream.Position
	var watermarks []stream.LSN
	run := func(ctx context.Context, stopAt int) {
		c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: group, Topics: []string{topicA, topicB},
			Gates: []stream.Gate{gate}, MaxBatch: 7}, stream.NewCodecs(), log)
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		err = c.Run(ctx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				if r.Err != nil {
					return r.Err
				}
				if r.Event.Pos.LSN > gate.Watermark() {
					t.Errorf("record at %s released above gate %s", r.Event.Pos, gate.Watermark())
				}
				got = append(got, r.Event.Pos)
			}
			watermarks = append(watermarks, b.Watermark)
			if b.Final && b.Watermark >= stream.LSN(stopAt) {
				stop()
			}
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	run(ctx, 150) // gate holds everything above 150
	mu.Lock()
	if n := len(got); n != 6*3 {
		t.Fatalf("released %d records before the gate moved, want 18 (LSN 100..150)", n)
	}
	mu.Unlock()
	gate.Advance(stream.MaxLSN)
	run(ctx, 290) // a new member of the same group resumes after the committed offsets
	mu.Lock()
	defer mu.Unlock()
	// At-least-once: the batch in flight when the first consumer stopped may come
	// again, in order; nothing may be missing or out of order.
	seen := map[stream.Position]bool{}
	dedup := got[:0:0]
	for i, p := range got {
		if i > 0 && p.Less(got[i-1]) && !seen[p] {
			t.Fatalf("record %d at %s after %s", i, p, got[i-1])
		}
		if !seen[p] {
			seen[p] = true
			dedup = append(dedup, p)
		}
	}
	got = dedup
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d at %s, want %s (position order)", i, got[i], want[i])
		}
	}
}

// A follower applies every record of a topic and its watermark reaches the last
// marker only after the records before it were applied.
func TestFollowerWatermark(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "f", "dim", "x", 60*time.Second)
	for i := 0; i < 50; i++ {
		if err := w.Write(ctx, []stream.Event{event(ns, "x", int64(i), stream.LSN(10+i), 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Mark(ctx, 59); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	applied := map[int64]bool{}
	f := stream.NewFollower(stream.FollowerConfig{Brokers: brokers, Topic: topic}, stream.NewCodecs(), func(r stream.Record) error {
		mu.Lock()
		defer mu.Unlock()
		applied[r.Key["id"].(int64)] = true
		return nil
	}, log)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	for f.Watermark() < 59 {
		select {
		case <-f.Changed():
		case err := <-done:
			t.Fatalf("follower stopped at watermark %s: %v", f.Watermark(), err)
		case <-ctx.Done():
			t.Fatalf("watermark stuck at %s", f.Watermark())
		}
	}
	mu.Lock()
	n := len(applied)
	mu.Unlock()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Fatalf("watermark reached 59 with %d of 50 records applied", n)
	}
}

// An upstream that replays writes its records and markers again, below the
// watermark already passed; a consumer reading them commits past them instead of
// waiting for a higher marker.
func TestConsumerPassesReplayedMarkers(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "r", "fact", "x", 60*time.Second)
	for round := 0; round < 2; round++ { // the second round is the upstream's replay
		for i := 0; i < 10; i++ {
			lsn := stream.LSN(100 + 10*i)
			if err := w.Write(ctx, []stream.Event{event(ns, "x", int64(i), lsn, 0)}); err != nil {
				t.Fatal(err)
			}
			if err := w.Mark(ctx, lsn); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, end, err := stream.NewAdmin(brokers, nil).EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: streamtest.Name(t, "g"), Topics: []string{topic}}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	seen := 0
	err = c.Run(runCtx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		seen += len(b.Records)
		if !b.Final {
			return nil
		}
		done := true
		for p, off := range b.Commit[topic] {
			done = done && off == end[p]
		}
		if done {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if runCtx.Err() == nil || ctx.Err() != nil {
		t.Fatal("the consumer never committed the end of the replayed topic")
	}
	if seen != 20 {
		t.Fatalf("handed over %d records, want both rounds (20)", seen)
	}
}

// A marker may follow a record above it in the same partition (capture writes
// one while a later transaction is in flight). Releasing up to the marker must
// not commit past the record: a new member of the group still receives it.
func TestConsumerResumesAtRecordAboveAReleasedMarker(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "s", "cdc", "a", 90*time.Second)
	write := func(evs ...stream.Event) {
		t.Helper()
		if err := w.Write(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	mark := func(lsn stream.LSN) {
		t.Helper()
		if err := w.Mark(ctx, lsn); err != nil {
			t.Fatal(err)
		}
	}
	write(event(ns, "a", 1, 100, 0))
	mark(100)
	write(event(ns, "a", 2, 300, 0)) // in flight when the marker below it is written
	mark(200)

	group := streamtest.Name(t, "g")
	consume := func(until stream.LSN) []stream.Position {
		t.Helper()
		c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: group, Topics: []string{topic}}, stream.NewCodecs(), log)
		if err != nil {
			t.Fatal(err)
		}
		var got []stream.Position
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		err = c.Run(ctx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
			for _, r := range b.Records {
				got = append(got, r.Event.Pos)
			}
			if b.Final && b.Watermark >= until {
				stop()
			}
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := consume(200); len(got) != 1 || got[0].LSN != 100 {
		t.Fatalf("up to the marker at 200: got %v, want the record at 100 only", got)
	}
	mark(300)
	got := consume(300)
	if len(got) == 0 || got[len(got)-1].LSN != 300 {
		t.Fatalf("after a restart: got %v, want the record at 300 (committed offsets skipped it)", got)
	}
}

// A producer that crashed and replayed puts records below a marker after records
// above it: [100, 200, 100 again, marker 150, 200 again, marker 200]. Releasing
// at 150 must hand over both copies of 100 and go on to 200; it used to stop at
// the first record above 150 and then release nothing, forever (the chaos rounds'
// pipelines wrote the same checkpoint 30,000 times and never converged).
var errSpinning = errors.New("spinning")

func TestConsumerReleasesReplayBehindHigherRecord(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "b", "cdc", "x", 60*time.Second)
	// One key, so one partition holds the whole story.
	for _, step := range []struct {
		lsn    stream.LSN
		marker bool
	}{{100, false}, {200, false}, {100, false}, {150, true}, {200, false}, {200, true}} {
		var err error
		if step.marker {
			err = w.Mark(ctx, step.lsn)
		} else {
			err = w.Write(ctx, []stream.Event{event(ns, "x", 1, step.lsn, 0)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	_, end, err := stream.NewAdmin(brokers, nil).EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: streamtest.Name(t, "g"), Topics: []string{topic}}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var got []stream.LSN
	batches := 0
	err = c.Run(runCtx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		if batches++; batches > 50 {
			return errSpinning // releases with nothing to release, forever
		}
		for _, r := range b.Records {
			if r.Err != nil {
				return r.Err
			}
			got = append(got, r.Event.Pos.LSN)
		}
		if !b.Final {
			return nil
		}
		done := true
		for p, off := range b.Commit[topic] {
			done = done && off == end[p]
		}
		if done {
			stop()
		}
		return nil
	}))
	if errors.Is(err, errSpinning) {
		t.Fatalf("more than 50 batches for 4 records (handed over %v): the consumer spins on the replayed record", got)
	}
	if err != nil {
		t.Fatal(err)
	}
	if runCtx.Err() == nil || ctx.Err() != nil {
		t.Fatalf("the consumer never committed the end of the topic (handed over %v)", got)
	}
	if want := []stream.LSN{100, 100, 200, 200}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handed over %v, want %v (both copies, in position order)", got, want)
	}
}

// A follower whose partition fails must say so: it used to return nil, as if
// stopped, leaving its gate frozen and the pipeline gated on it waiting forever
// (after a broker restart in the chaos rounds).
func TestFollowerReportsFailure(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "f", "dim", "x", 60*time.Second)
	if err := w.Write(ctx, []stream.Event{event(ns, "x", 1, 10, 0)}); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("apply failed")
	f := stream.NewFollower(stream.FollowerConfig{Brokers: brokers, Topic: topic}, stream.NewCodecs(),
		func(stream.Record) error { return broken }, log)
	if err := f.Run(ctx); !errors.Is(err, broken) {
		t.Fatalf("Run returned %v after a partition failed, want the failure", err)
	}
}

// Records are ordered by their position headers and decoded only when released.
// One whose body is not Avro, or whose Avro position disagrees with its headers,
// is poison at its header position: handed over (to be dead-lettered) when the
// watermark passes it, not before, and in position order with the rest.
func TestConsumerDecodesHeaderPositionedRecordsAtRelease(t *testing.T) {
	t.Parallel()
	ctx, brokers, ns, topic, log, w := itemsTopic(t, "s", "cdc", "a", 90*time.Second)
	if err := w.Write(ctx, []stream.Event{event(ns, "a", 1, 100, 0), event(ns, "a", 2, 300, 0)}); err != nil {
		t.Fatal(err)
	}
	var real kafka.Message // the record at 300, to copy under other headers
	if err := stream.ScanToEnd(ctx, brokers, nil, topic, func(m kafka.Message) error {
		if len(m.Value) > 0 {
			real = m
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	at := func(lsn string) []kafka.Header {
		return []kafka.Header{{Key: stream.HeaderLSN, Value: []byte(lsn)}, {Key: stream.HeaderSeq, Value: []byte("0")}}
	}
	raw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.LeastBytes{}}
	defer raw.Close()
	if err := raw.WriteMessages(ctx,
		kafka.Message{Key: real.Key, Value: []byte("not avro"), Headers: at("200")},
		kafka.Message{Key: real.Key, Value: real.Value, Headers: at("250")},
	); err != nil {
		t.Fatal(err)
	}
	if err := w.Mark(ctx, 300); err != nil {
		t.Fatal(err)
	}

	gate := stream.NewBeacon(150)
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: streamtest.Name(t, "g"), Topics: []string{topic},
		Gates: []stream.Gate{gate}}, stream.NewCodecs(), log)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	err = c.Run(runCtx, stream.HandlerFunc(func(_ context.Context, b stream.Batch) error {
		for _, r := range b.Records {
			switch {
			case r.Err != nil:
				got = append(got, fmt.Sprintf("poison@%d: %v", b.Watermark, r.Err))
			default:
				got = append(got, fmt.Sprintf("%v@%d", r.Key["id"], r.Event.Pos.LSN))
			}
		}
		if b.Final && b.Watermark == 150 {
			gate.Advance(300)
		}
		if b.Final && b.Watermark >= 300 {
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != "1@100" || got[3] != "2@300" ||
		!strings.HasPrefix(got[1], "poison@300: ") || !strings.Contains(got[1], "undecodable record") ||
		!strings.HasPrefix(got[2], "poison@300: ") || !strings.Contains(got[2], "position headers say") {
		t.Fatalf("handed over:\n%s\nwant 1@100 alone below the gate at 150, then the two poison records at their header positions (200, 250) and 2@300",
			strings.Join(got, "\n"))
	}
}
