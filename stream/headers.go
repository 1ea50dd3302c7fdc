package stream

import (
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Record headers. Positions travel in headers so tools that do not speak Avro
// can still order records; markers say so in HeaderControl so they can be skipped.
const (
	HeaderLSN        = "starstream.lsn"         // commit LSN, decimal
	HeaderSeq        = "starstream.seq"         // index in the transaction, decimal
	HeaderCommitTime = "starstream.commit_time" // RFC 3339 with nanoseconds
	HeaderControl    = "starstream.control"     // "watermark" on markers
	HeaderWatermark  = "starstream.watermark"   // the marker's LSN, decimal
	headerPartition  = "starstream.partition"   // routes a marker to its partition

	// ControlWatermark is the HeaderControl value of watermark markers.
	ControlWatermark = "watermark"
	markerKey        = "__starstream_watermark"
)

// appendCommitTime appends the HeaderCommitTime value of a commit time.
func appendCommitTime(buf []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(buf, time.RFC3339Nano)
}

func markerMessage(topic string, partition int, lsn LSN) kafka.Message {
	return kafka.Message{
		Topic: topic,
		Key:   []byte(markerKey),
		Headers: []kafka.Header{
			{Key: HeaderControl, Value: []byte(ControlWatermark)},
			{Key: HeaderWatermark, Value: strconv.AppendUint(nil, uint64(lsn), 10)},
			{Key: headerPartition, Value: strconv.AppendInt(nil, int64(partition), 10)},
		},
	}
}

func header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// HeaderPosition returns a data record's position from its headers, and false
// when they do not carry one (a record not written by starstream).
func HeaderPosition(headers []kafka.Header) (Position, bool) {
	var pos Position
	var lsn, seq bool
	for _, h := range headers {
		switch h.Key {
		case HeaderLSN:
			n, err := strconv.ParseUint(string(h.Value), 10, 64)
			pos.LSN, lsn = LSN(n), err == nil
		case HeaderSeq:
			n, err := strconv.ParseUint(string(h.Value), 10, 64)
			pos.Seq, seq = n, err == nil
		}
	}
	return pos, lsn && seq
}

// MarkerLSN returns the watermark of a marker record, and false for data records.
func MarkerLSN(m kafka.Message) (LSN, bool) {
	if c, ok := header(m, HeaderControl); !ok || c != ControlWatermark {
		return 0, false
	}
	v, _ := header(m, HeaderWatermark)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return LSN(n), true
}

// balancer routes markers to the partition they name and everything else the
// way Java clients do (murmur2 of the key), so other tools agree on partitions.
type balancer struct{ murmur kafka.Murmur2Balancer }

func (b *balancer) Balance(msg kafka.Message, partitions ...int) int {
	if v, ok := header(msg, headerPartition); ok {
		if p, err := strconv.Atoi(v); err == nil {
			return p
		}
	}
	return b.murmur.Balance(msg, partitions...)
}
