package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicConfig says how topics are created.
type TopicConfig struct {
	Partitions        int    // default 3
	ReplicationFactor int    // default 1
	CleanupPolicy     string // "delete" (default) or "compact"
	RetentionMs       int64  // 0 keeps the broker default; -1 keeps forever
	MaxMessageBytes   int    // default 16 MiB, so a 10 MB row fits
}

// WithDefaults fills zero fields with defaults.
func (c TopicConfig) WithDefaults() TopicConfig {
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.CleanupPolicy == "" {
		c.CleanupPolicy = "delete"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 16 << 20
	}
	return c
}

// Validate checks the topic settings.
func (c TopicConfig) Validate() error {
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		return fmt.Errorf("topic config: partitions and replication factor must be >= 1")
	}
	if c.CleanupPolicy != "delete" && c.CleanupPolicy != "compact" && c.CleanupPolicy != "compact,delete" {
		return fmt.Errorf("topic config: cleanup policy %q is not delete, compact or compact,delete", c.CleanupPolicy)
	}
	return nil
}

// Admin creates topics and reads their layout.
type Admin struct {
	client *kafka.Client
	sec    *Security
	fresh  bool // on a transport of its own: its metadata is never a stale cache
}

// NewAdmin returns an admin client for the brokers; sec nil is plaintext.
func NewAdmin(brokers []string, sec *Security) *Admin {
	return &Admin{client: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: sec.Transport()}, sec: sec}
}

// EnsureTopic creates the topic if it does not exist yet and returns its partition count.
func (a *Admin) EnsureTopic(ctx context.Context, topic string, cfg TopicConfig) (int, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	if n, err := a.Partitions(ctx, topic); err == nil {
		return n, nil
	} else if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		return 0, err
	}
	entries := []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: cfg.CleanupPolicy},
		{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(cfg.MaxMessageBytes)},
	}
	if cfg.RetentionMs != 0 {
		entries = append(entries, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(cfg.RetentionMs, 10)})
	}
	res, err := a.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor, ConfigEntries: entries,
	}}})
	if err != nil {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	if terr := res.Errors[topic]; terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s: %w", topic, terr)
	}
	// Metadata lags creation by a moment; wait until the partitions have leaders.
	for {
		n, err := a.Partitions(ctx, topic)
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for topic %s: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Partitions returns the partition count of a topic, or kafka.UnknownTopicOrPartition.
//
// The shared transport answers from a metadata cache refreshed every few
// seconds, in which a topic another process created a moment ago is missing or
// still leaderless; such an answer is checked once with the brokers themselves.
func (a *Admin) Partitions(ctx context.Context, topic string) (int, error) {
	n, err := a.partitions(ctx, topic)
	if (isUnknownTopic(err) || errors.Is(err, kafka.LeaderNotAvailable)) && !a.fresh {
		fresh, done := freshAdmin(a.client.Addr, a.sec)
		defer done()
		return fresh.partitions(ctx, topic)
	}
	return n, err
}

// freshAdmin is an admin on a transport of its own, whose first metadata
// request goes to the brokers; done closes its connections.
func freshAdmin(addr net.Addr, sec *Security) (*Admin, func()) {
	tr := &kafka.Transport{DialTimeout: dialTimeout, ClientID: "starstream"}
	if sec != nil {
		tr.SASL, tr.TLS = sec.mechanism, sec.tls
	}
	return &Admin{client: &kafka.Client{Addr: addr, Timeout: 10 * time.Second, Transport: tr}, sec: sec, fresh: true}, tr.CloseIdleConnections
}

func (a *Admin) partitions(ctx context.Context, topic string) (int, error) {
	md, err := a.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, describeSecurityError(a.sec, describeDialError(err)))
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, t.Error
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return 0, kafka.LeaderNotAvailable
			}
		}
		if len(t.Partitions) == 0 {
			return 0, kafka.UnknownTopicOrPartition
		}
		return len(t.Partitions), nil
	}
	return 0, kafka.UnknownTopicOrPartition
}

// EndOffsets returns the first and the next-to-be-written offset of every partition.
func (a *Admin) EndOffsets(ctx context.Context, topic string) (first, end map[int]int64, err error) {
	n, err := a.Partitions(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	req := map[string][]kafka.OffsetRequest{}
	for p := 0; p < n; p++ {
		req[topic] = append(req[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := a.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	first, end = map[int]int64{}, map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, nil, fmt.Errorf("list offsets of %s[%d]: %w", topic, po.Partition, po.Error)
		}
		first[po.Partition] = po.FirstOffset
		end[po.Partition] = po.LastOffset
	}
	return first, end, nil
}

// Client exposes the underlying kafka-go client for group administration.
func (a *Admin) Client() *kafka.Client { return a.client }

func describeDialError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("kafka unreachable at %s (is the broker running? `make up` starts one): %w", op.Addr, err)
	}
	return err
}
