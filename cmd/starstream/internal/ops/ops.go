// Package ops implements the operator's tools that work on Kafka alone: consumer
// lag per group and partition (records and seconds) and replay by resetting a
// consumer group's committed offsets. Both read and write exactly what Kafka's
// own kafka-consumer-groups reads and writes, so either tool can be used.
package ops

import (
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/starstream/starstream/stream"
)

var (
	// ErrGroupActive is returned by Replay while the group has members: the
	// broker would reject the commit, and a running pipeline would overwrite it.
	ErrGroupActive = errors.New("consumer group is active")
	// ErrNoOffsets is returned by Replay for a group that never committed.
	ErrNoOffsets = errors.New("consumer group has no committed offsets")
)

// clientTimeout bounds each request; lag and replay are interactive.
const clientTimeout = 10 * time.Second

func newClient(brokers []string, sec *stream.Security) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: clientTimeout, Transport: sec.Transport()}
}

// noOffset is what OffsetFetch reports for a partition without a commit, and
// what PartitionLag.Committed and PlanPartition.Current hold for it.
const noOffset = -1
