package telemetry

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// TestCollectorReadsRealLag polls a real group's lag and finds it on /metrics.
func TestCollectorReadsRealLag(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := streamtest.Name(t, "telemetry")
	if _, err := stream.NewAdmin(brokers, nil).EnsureTopic(ctx, topic, stream.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	streamtest.DeleteTopics(t, brokers, topic)
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	old := time.Now().Add(-time.Minute)
	msgs := make([]kafka.Message, 8)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: []byte("x"), Time: old}
	}
	for {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // leaders of a new topic
	}
	group := topic + ".starstream.dim_test"
	t.Cleanup(func() {
		_, _ = client.DeleteGroups(context.Background(), &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	})
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 3}}}})
	if err != nil || res.Topics[topic][0].Error != nil {
		t.Fatalf("commit: %v %+v", err, res)
	}

	tel := newTelemetry(t, Config{})
	col, err := NewCollector(tel.Meter("test"), CollectorConfig{Brokers: brokers, Groups: []string{group}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := col.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	fams, _ := scrape(t, tel.Handler())
	var records, seconds float64 = -1, -1
	for _, m := range fams[MetricConsumerLagRecords].GetMetric() {
		records = m.GetGauge().GetValue()
	}
	for _, m := range fams[MetricConsumerLagSeconds].GetMetric() {
		seconds = m.GetGauge().GetValue()
	}
	if records != 5 {
		t.Errorf("lag records %v, want 5", records)
	}
	if seconds < 55 || seconds > 120 {
		t.Errorf("lag seconds %v, want about 60", seconds)
	}
}
