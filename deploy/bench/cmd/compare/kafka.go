package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/starstream/starstream/stream"
)

// createTopic creates a topic whose record timestamps are set by the broker when it appends
// them (message.timestamp.type=LogAppendTime), so both tools are timed by the same clock at
// the same point: the record is in Kafka. Both tools find the topic already there and use it.
func createTopic(ctx context.Context, brokers []string, topic string, partitions int) error {
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{
			{ConfigName: "message.timestamp.type", ConfigValue: "LogAppendTime"},
			{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(16 << 20)},
		},
	}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	admin := stream.NewAdmin(brokers, nil)
	for {
		if _, err := admin.Partitions(ctx, topic); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func deleteTopics(brokers []string, topics ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return err
	}
	var errs []error
	for t, e := range res.Errors {
		if e != nil && !errors.Is(e, kafka.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("delete %s: %w", t, e))
		}
	}
	return errors.Join(errs...)
}

// waitRecords polls the topic's end offsets (a cheap ListOffsets, no fetching) until it holds
// at least n records, so the harness reads nothing while a tool is being measured.
func waitRecords(ctx context.Context, admin *stream.Admin, topic string, n int64, alive func() error) error {
	for {
		first, end, err := admin.EndOffsets(ctx, topic)
		if err == nil {
			var sum int64
			for p, e := range end {
				sum += e - first[p]
			}
			if sum >= n {
				return nil
			}
		}
		if err := alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d records in %s: %w", n, topic, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sample is one data record: the row's id, the broker's append time and the commit timestamp
// of the row's transaction as the tool put it in the record (unix microseconds).
type sample struct {
	id       int64
	appended int64
	commit   int64
}

// topicReader reads one tool's topic from the start, keeping a sample per data record.
type topicReader struct {
	tool    string // "starstream" or "debezium"
	topic   string
	brokers []string
	codecs  *stream.Codecs

	cl         *kgo.Client
	samples    []sample
	seen       map[int64]bool
	dups       int
	markers    int
	createTime int // records whose timestamp is not the broker's (should stay 0)
}

func newTopicReader(tool, topic string, brokers []string) *topicReader {
	return &topicReader{tool: tool, topic: topic, brokers: brokers, codecs: stream.NewCodecs(), seen: map[int64]bool{}}
}

func (r *topicReader) Close() {
	if r.cl != nil {
		r.cl.Close()
	}
}

// readUntil reads until the topic has given want distinct rows.
//
// kafka-go's reader ignores the batch's timestamp type and returns the producer's CreateTime
// even on LogAppendTime topics; franz-go's kgo returns the broker's append time.
func (r *topicReader) readUntil(ctx context.Context, want int) error {
	if r.cl == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ConsumeTopics(r.topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20),
			kgo.FetchMaxPartitionBytes(16<<20), kgo.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return err
		}
		r.cl = cl
	}
	for len(r.seen) < want {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %d of %d rows read: %w", r.topic, len(r.seen), want, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = errors.Join(ferr, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		if ferr != nil {
			return ferr
		}
		var rerr error
		fs.EachRecord(func(rec *kgo.Record) {
			if rerr == nil {
				rerr = r.add(ctx, rec)
			}
		})
		if rerr != nil {
			return rerr
		}
	}
	return nil
}

func (r *topicReader) add(ctx context.Context, rec *kgo.Record) error {
	var s sample
	var err error
	switch r.tool {
	case "starstream":
		if headerValue(rec, stream.HeaderControl) != nil {
			r.markers++
			return nil
		}
		s, err = r.starstream(ctx, rec)
	default:
		if rec.Value == nil {
			return nil // tombstone (none for inserts)
		}
		s, err = debezium(rec)
	}
	if err != nil {
		return fmt.Errorf("%s offset %d/%d: %w", r.topic, rec.Partition, rec.Offset, err)
	}
	if rec.Attrs.TimestampType() != 1 {
		r.createTime++
	}
	s.appended = rec.Timestamp.UnixMicro()
	if r.seen[s.id] {
		r.dups++
		return nil
	}
	r.seen[s.id] = true
	r.samples = append(r.samples, s)
	return nil
}

func headerValue(rec *kgo.Record, key string) []byte {
	for _, h := range rec.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// starstream: the id from the Avro key, the commit timestamp from the commit-time header.
func (r *topicReader) starstream(ctx context.Context, rec *kgo.Record) (sample, error) {
	var s sample
	key, err := r.codecs.DecodeKey(rec.Key)
	if errors.Is(err, stream.ErrUnknownSchema) {
		if _, lerr := stream.LoadSchemas(ctx, r.brokers, nil, "", r.codecs); lerr != nil {
			return s, lerr
		}
		key, err = r.codecs.DecodeKey(rec.Key)
	}
	if err != nil {
		return s, err
	}
	id, ok := key["order_item_id"].(int64)
	if !ok {
		return s, fmt.Errorf("key %v has no int64 order_item_id", key)
	}
	ct, err := time.Parse(time.RFC3339Nano, string(headerValue(rec, stream.HeaderCommitTime)))
	if err != nil {
		return s, fmt.Errorf("commit time header: %w", err)
	}
	return sample{id: id, commit: ct.UnixMicro()}, nil
}

// debezium: the id from the JSON key {"order_item_id":N}, the commit timestamp from the
// envelope's source.ts_us (pgoutput's commit timestamp of the transaction).
func debezium(rec *kgo.Record) (sample, error) {
	var s sample
	id, err := jsonInt(rec.Key, []byte(`"order_item_id":`))
	if err != nil {
		return s, fmt.Errorf("key %q: %w", rec.Key, err)
	}
	i := bytes.Index(rec.Value, []byte(`"source":{`))
	if i < 0 {
		return s, fmt.Errorf("value has no source block")
	}
	ts, err := jsonInt(rec.Value[i:], []byte(`"ts_us":`))
	if err != nil {
		return s, fmt.Errorf("source.ts_us: %w", err)
	}
	return sample{id: id, commit: ts}, nil
}

// jsonInt returns the integer that follows the first occurrence of field in b.
func jsonInt(b, field []byte) (int64, error) {
	i := bytes.Index(b, field)
	if i < 0 {
		return 0, fmt.Errorf("no %s", field)
	}
	b = b[i+len(field):]
	j := 0
	for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '-') {
		j++
	}
	return strconv.ParseInt(string(b[:j]), 10, 64)
}
