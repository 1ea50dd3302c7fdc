package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// ScanToEnd reads every partition of a topic from its first offset up to the end
// offsets it had when the scan started, calling fn for each message in partition
// order (markers included). A missing topic scans as empty.
//
// It asks the brokers for the topic's metadata afresh: kafka-go's shared
// transport answers metadata requests from a cache refreshed every 6 s, in which
// a topic another process created since is missing, so a schema topic created
// by capture a moment ago would scan as empty and its schemas look unknown.
func ScanToEnd(ctx context.Context, brokers []string, sec *Security, topic string, fn func(kafka.Message) error) error {
	admin, done := freshAdmin(kafka.TCP(brokers...), sec)
	defer done()
	first, end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		if isUnknownTopic(err) {
			return nil
		}
		return fmt.Errorf("scan %s: %w", topic, err)
	}
	for p := 0; p < len(end); p++ {
		last := end[p]
		if last <= first[p] {
			continue
		}
		r := sec.Reader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxBytes: 32 << 20, MaxWait: time.Second})
		if err := r.SetOffset(first[p]); err != nil {
			r.Close()
			return fmt.Errorf("scan %s[%d]: %w", topic, p, err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("scan %s[%d]: %w", topic, p, err)
			}
			if err := fn(m); err != nil {
				r.Close()
				return err
			}
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return nil
}
