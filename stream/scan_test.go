package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// A topic another process created after this one first talked to Kafka must not
// scan as empty: the chaos rounds dead-lettered valid changes as "unknown schema
// fingerprint" because the pipelines scanned capture's new schema topic through
// kafka-go's metadata cache, which did not know it for up to 6 s.
func TestScanToEndSeesTopicCreatedElsewhere(t *testing.T) {
	t.Parallel()
	brokers := streamtest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// This process's shared transport caches the metadata of the moment.
	if _, err := (&kafka.Client{Addr: kafka.TCP(brokers...)}).Metadata(ctx, &kafka.MetadataRequest{}); err != nil {
		t.Fatal(err)
	}
	// "Another process": a client with its own transport creates the topic and
	// writes to it, so the shared cache hears nothing of it.
	topic := streamtest.Name(t, "scan")
	streamtest.DeleteTopics(t, brokers, topic)
	other := &kafka.Transport{}
	defer other.CloseIdleConnections()
	oc := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: other}
	res, err := oc.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Transport: other, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	for { // the new topic's leader may need a moment
		err := w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte("v")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	n := 0
	if err := stream.ScanToEnd(ctx, brokers, nil, topic, func(kafka.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("scanned %d records of a topic holding 1", n)
	}
}
