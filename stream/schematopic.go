package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// LoadSchemas reads the schema topic from its start to its current end and adds
// every schema to codecs. Consumers call it at start and again when they meet a
// fingerprint they do not know.
func LoadSchemas(ctx context.Context, brokers []string, topic string, codecs *Codecs) (int, error) {
	if topic == "" {
		topic = DefaultSchemaTopic
	}
	admin := NewAdmin(brokers)
	first, end, err := admin.EndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("load schemas: %w", err)
	}
	loaded := 0
	for p, last := range end {
		if last <= first[p] {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxBytes: 16 << 20, MaxWait: time.Second})
		if err := r.SetOffset(first[p]); err != nil {
			r.Close()
			return loaded, fmt.Errorf("load schemas: %w", err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				return loaded, fmt.Errorf("load schemas: %w", err)
			}
			if len(m.Value) > 0 {
				if _, err := codecs.Add(string(m.Value)); err != nil {
					r.Close()
					return loaded, fmt.Errorf("load schema %s: %w", m.Key, err)
				}
				loaded++
			}
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return loaded, nil
}
