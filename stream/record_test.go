package stream

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// The consumer decodes while reading ahead under deadlines of 50 to 500 ms. A
// schema lookup cut short by such a deadline called valid records poison: the
// chaos rounds dead-lettered snapshot rows as "unknown schema fingerprint" on
// a busy machine, although their schema had been in the schema topic for
// seconds. The lookup must run to its own end whatever the caller's deadline.
func TestDecodeLooksUpSchemaPastCallerDeadline(t *testing.T) {
	t.Parallel()
	brokers := strings.Split(os.Getenv("STARSTREAM_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:19092"} // make up; streamtest cannot be imported here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	suffix := strings.ReplaceAll(time.Now().UTC().Format("150405.000000000"), ".", "_")
	schemaTopic := "_starstream_schemas_decode_test_" + suffix
	admin := NewAdmin(brokers, nil)
	if _, err := admin.EnsureTopic(ctx, schemaTopic, TopicConfig{Partitions: 1, CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Client().DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{schemaTopic}})
	})
	tc, err := NewTableCodec(NewCodecs(), TableSchema{Schema: "s", Table: "t", Columns: []Column{
		{Name: "id", Type: Type{Kind: KindInt}, Key: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(ctx,
		kafka.Message{Topic: schemaTopic, Key: []byte(FingerprintKey(tc.KeyFP)), Value: []byte(tc.KeyJSON)},
		kafka.Message{Topic: schemaTopic, Key: []byte(FingerprintKey(tc.ValueFP)), Value: []byte(tc.ValueJSON)},
	); err != nil {
		t.Fatal(err)
	}
	ev := Event{Schema: "s", Table: "t", Op: OpInsert, Key: map[string]any{"id": int64(7)},
		After: map[string]any{"id": int64(7)}, Pos: Position{LSN: 100}, CommitTime: time.Unix(100, 0)}
	key, err := tc.AppendKey(nil, ev.Key)
	if err != nil {
		t.Fatal(err)
	}
	value, err := tc.AppendValue(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}

	// A caller whose read deadline has just passed.
	expired, cancelExpired := context.WithTimeout(ctx, time.Nanosecond)
	defer cancelExpired()
	<-expired.Done()
	d := newDecoder(brokers, nil, schemaTopic, NewCodecs()) // knows no schema yet
	rec := d.decode(expired, kafka.Message{Topic: "cdc.s.t", Key: key, Value: value})
	if rec.Err != nil {
		t.Fatalf("a valid record whose schema is in the schema topic was called poison: %v", rec.Err)
	}
	if rec.Event.Pos.LSN != 100 || rec.Key["id"] != int64(7) {
		t.Fatalf("decoded %+v, key %v", rec.Event.Pos, rec.Key)
	}
}
