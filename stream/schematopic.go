package stream

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// LoadSchemas reads the schema topic from its start to its current end and adds
// every schema to codecs. Consumers call it at start and again when they meet a
// fingerprint they do not know.
func LoadSchemas(ctx context.Context, brokers []string, sec *Security, topic string, codecs *Codecs) (int, error) {
	if topic == "" {
		topic = DefaultSchemaTopic
	}
	loaded := 0
	err := ScanToEnd(ctx, brokers, sec, topic, func(m kafka.Message) error {
		if len(m.Value) == 0 {
			return nil
		}
		loaded++
		if fp, err := strconv.ParseUint(string(m.Key), 16, 64); err == nil {
			codecs.AddRaw(fp, string(m.Value))
			return nil
		}
		if _, err := codecs.Add(string(m.Value)); err != nil {
			return fmt.Errorf("load schema %s: %w", m.Key, err)
		}
		return nil
	})
	if err != nil {
		return loaded, fmt.Errorf("load schemas: %w", err)
	}
	return loaded, nil
}

func isUnknownTopic(err error) bool {
	return errors.Is(err, kafka.UnknownTopicOrPartition)
}
