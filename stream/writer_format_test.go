package stream_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// TestWriterRecordFormat: what the writer puts in Kafka, byte for byte: the
// single-object encoded key and envelope (EncodeKey and EncodeValue, which
// avroenc_test.go holds to goavro's bytes), the position headers in their
// order, the partition of murmur2 of the key bytes, a truncate in every
// partition with its partition header, and markers in every partition.
func TestWriterRecordFormat(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ns := streamtest.Name(t, "f")
	topic := "cdc." + ns + ".items"
	streamtest.DeleteTopics(t, brokers, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topics: stream.TopicConfig{Partitions: 3}},
		stream.NewCodecs(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tc, err := w.Register(ctx, topic, itemsSchema(ns, "items"))
	if err != nil {
		t.Fatal(err)
	}
	commit := time.Date(2026, 11, 26, 21, 0, 0, 123456789, time.FixedZone("x", 3600))
	var evs []stream.Event
	for i := 0; i < 40; i++ {
		ev := event(ns, "items", int64(i), 1000, uint64(i))
		ev.CommitTime = commit
		evs = append(evs, ev)
	}
	evs = append(evs,
		stream.Event{Schema: ns, Table: "items", Op: stream.OpUpdate, Key: map[string]any{"id": int64(3)},
			After: map[string]any{"id": int64(3)}, Unchanged: []string{"note"}, Pos: stream.Position{LSN: 2000, Seq: 0}, CommitTime: commit.Add(time.Second)},
		stream.Event{Schema: ns, Table: "items", Op: stream.OpTruncate, Pos: stream.Position{LSN: 2000, Seq: 1}, CommitTime: commit.Add(time.Second)},
		stream.Event{Schema: ns, Table: "items", Op: stream.OpDelete, Key: map[string]any{"id": int64(4)},
			Before: map[string]any{"id": int64(4), "note": nil}, Pos: stream.Position{LSN: 3000, Seq: 0}, CommitTime: commit.Add(2 * time.Second)},
	)
	if err := w.Write(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := w.Mark(ctx, 3000); err != nil {
		t.Fatal(err)
	}

	type want struct {
		key, value []byte
		headers    []kafka.Header
	}
	wantByPartition := map[int][]want{}
	murmur := kafka.Murmur2Balancer{}
	for _, ev := range evs {
		headers := []kafka.Header{
			{Key: stream.HeaderLSN, Value: []byte(strconv.FormatUint(uint64(ev.Pos.LSN), 10))},
			{Key: stream.HeaderSeq, Value: []byte(strconv.FormatUint(ev.Pos.Seq, 10))},
			{Key: stream.HeaderCommitTime, Value: []byte(ev.CommitTime.UTC().Format(time.RFC3339Nano))},
		}
		value, err := tc.EncodeValue(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Op == stream.OpTruncate {
			for p := 0; p < 3; p++ {
				h := append(append([]kafka.Header{}, headers...), kafka.Header{Key: "starstream.partition", Value: []byte(strconv.Itoa(p))})
				wantByPartition[p] = append(wantByPartition[p], want{[]byte("__truncate"), value, h})
			}
			continue
		}
		key, err := tc.EncodeKey(&ev)
		if err != nil {
			t.Fatal(err)
		}
		p := murmur.Balance(kafka.Message{Key: key}, 0, 1, 2)
		wantByPartition[p] = append(wantByPartition[p], want{key, value, headers})
	}

	for p := 0; p < 3; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: time.Second})
		var got []kafka.Message
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			if lsn, ok := stream.MarkerLSN(m); ok {
				if lsn != 3000 {
					t.Errorf("partition %d: marker %d", p, lsn)
				}
				break
			}
			got = append(got, m)
		}
		r.Close()
		ws := wantByPartition[p]
		if len(got) != len(ws) {
			t.Fatalf("partition %d: %d records, want %d", p, len(got), len(ws))
		}
		for i, m := range got {
			if !bytes.Equal(m.Key, ws[i].key) || !bytes.Equal(m.Value, ws[i].value) {
				t.Errorf("partition %d record %d: key %x value %x, want key %x value %x", p, i, m.Key, m.Value, ws[i].key, ws[i].value)
			}
			if len(m.Headers) != len(ws[i].headers) {
				t.Fatalf("partition %d record %d: headers %v, want %v", p, i, m.Headers, ws[i].headers)
			}
			for j, h := range m.Headers {
				if h.Key != ws[i].headers[j].Key || !bytes.Equal(h.Value, ws[i].headers[j].Value) {
					t.Errorf("partition %d record %d header %d: %s=%s, want %s=%s", p, i, j, h.Key, h.Value, ws[i].headers[j].Key, ws[i].headers[j].Value)
				}
			}
		}
	}
}
