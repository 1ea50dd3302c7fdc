package stream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/produce"
)

func messagesTo(topics ...string) []kafka.Message {
	var out []kafka.Message
	for _, t := range topics {
		out = append(out, kafka.Message{Topic: t})
	}
	return out
}

// A Pending whose records Kafka never reports on ends with ErrNotAcknowledged
// naming what is missing; the buffers are released only when Kafka does report.
func TestPendingExpiresNamingWhatIsMissing(t *testing.T) {
	t.Parallel()
	var released atomic.Int32
	msgs := messagesTo("a", "a", "a", "b", "b")
	p := newPending(msgs, 100*time.Millisecond, func() { released.Add(1) })
	for i := range msgs {
		msgs[i].WriterData = p
	}
	completed(msgs[:3], nil) // topic a acknowledged, b never
	start := time.Now()
	err := p.Wait(context.Background())
	if !errors.Is(err, ErrNotAcknowledged) {
		t.Fatalf("Wait = %v, want ErrNotAcknowledged", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Wait took %s with a 100ms timeout", d)
	}
	for _, want := range []string{"2 of 5 records", "b (2)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "a (") {
		t.Errorf("error %q names the acknowledged topic a", err)
	}
	if released.Load() != 0 {
		t.Fatal("buffers released while kafka-go still holds two records")
	}
	completed(msgs[3:], nil)
	if released.Load() != 1 {
		t.Fatalf("released %d times once every record was reported, want 1", released.Load())
	}
	if !errors.Is(p.Err(), ErrNotAcknowledged) {
		t.Errorf("a late acknowledgement changed the expired Pending's error to %v", p.Err())
	}
}

func TestPendingAcknowledged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		batches [][]int // indexes of msgs per kafka-go batch
		err     error
	}{
		{"one batch", [][]int{{0, 1, 2}}, nil},
		{"split across batches", [][]int{{0}, {1, 2}}, nil},
		{"one batch fails", [][]int{{0, 1}, {2}}, kafka.NotLeaderForPartition},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var released atomic.Int32
			msgs := messagesTo("x", "x", "y")
			p := newPending(msgs, time.Minute, func() { released.Add(1) })
			for i := range msgs {
				msgs[i].WriterData = p
			}
			for bi, b := range c.batches {
				var batch []kafka.Message
				for _, i := range b {
					batch = append(batch, msgs[i])
				}
				var err error
				if bi == len(c.batches)-1 {
					err = c.err
				}
				completed(batch, err)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("not done after every record was reported")
			}
			if got := p.Err(); !errors.Is(got, c.err) || (c.err == nil) != (got == nil) {
				t.Errorf("Err = %v, want %v", got, c.err)
			}
			if c.err != nil && !strings.Contains(p.Err().Error(), "y") {
				t.Errorf("error %q does not name the topic", p.Err())
			}
			if released.Load() != 1 {
				t.Errorf("released %d times, want 1", released.Load())
			}
		})
	}
}

// stallingTransport stands for a broker that takes produce requests and never
// answers: once stalled, it holds every produce request until unblocked.
type stallingTransport struct {
	kafka.RoundTripper
	stalled   atomic.Bool
	unblock   chan struct{}
	requested atomic.Int32
}

func (s *stallingTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*produce.Request); ok && s.stalled.Load() {
		s.requested.Add(1)
		<-s.unblock
	}
	return s.RoundTripper.RoundTrip(ctx, addr, req)
}

// Write, Mark and WriteRaw against a Kafka that never acknowledges fail after
// the writer's AckTimeout with an error naming the topic, instead of waiting
// as long as their context lets them.
func TestWriterFailsWhenKafkaNeverAcknowledges(t *testing.T) {
	t.Parallel()
	brokers := strings.Split(os.Getenv("STARSTREAM_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:19092"}
	}
	ns := "stall_" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "_")
	topic, dlq := "cdc."+ns+".items", "dlq."+ns
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := NewWriter(WriterConfig{Brokers: brokers, Topics: TopicConfig{Partitions: 2}, AckTimeout: 2 * time.Second},
		NewCodecs(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st := &stallingTransport{RoundTripper: w.kw.Transport, unblock: make(chan struct{})}
	w.kw.Transport = st
	t.Cleanup(func() {
		close(st.unblock)
		if err := w.Close(); err != nil {
			t.Error(err)
		}
		c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
		_, _ = c.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic, dlq}})
	})
	schema := TableSchema{Schema: ns, Table: "items", Columns: []Column{
		{Name: "id", Type: Type{Kind: KindInt}, Key: true},
		{Name: "note", Type: Type{Kind: KindString}, Nullable: true},
	}}
	if _, err := w.Register(ctx, topic, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := w.admin.EnsureTopic(ctx, dlq, w.cfg.Topics); err != nil {
		t.Fatal(err)
	}
	ev := Event{Schema: ns, Table: "items", Op: OpInsert, Key: map[string]any{"id": int64(1)},
		After: map[string]any{"id": int64(1), "note": "x"}, Pos: Position{LSN: 100}, CommitTime: time.Unix(100, 0)}
	st.stalled.Store(true)

	for _, c := range []struct {
		name  string
		write func() error
		want  []string
	}{
		{"Write", func() error { return w.Write(ctx, []Event{ev}) }, []string{topic, "1 of 1 records"}},
		{"Mark", func() error { return w.Mark(ctx, 100) }, []string{topic, "2 of 2 records"}},
		{"WriteRaw", func() error {
			return w.WriteRaw(ctx, []kafka.Message{{Topic: dlq, Key: []byte("k"), Value: []byte("v")}})
		}, []string{dlq, "1 of 1 records"}},
	} {
		start := time.Now()
		err := c.write()
		if !errors.Is(err, ErrNotAcknowledged) {
			t.Errorf("%s = %v, want ErrNotAcknowledged", c.name, err)
			continue
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("%s failed after %s, with a 2s AckTimeout", c.name, d)
		}
		for _, want := range c.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", c.name, err, want)
			}
		}
	}
	if st.requested.Load() == 0 {
		t.Error("no produce request reached the stalled transport")
	}
}
