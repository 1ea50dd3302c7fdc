package capture

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/starstream/starstream/stream"
)

// Instrument names, exported to Prometheus as written.
const (
	MetricEventsCaptured   = "starstream_capture_events_total"
	MetricWriteSeconds     = "starstream_capture_write_seconds"
	MetricConfirmedLSN     = "starstream_capture_confirmed_lsn"
	MetricSlotLagBytes     = "starstream_capture_slot_lag_bytes"
	MetricSlotLagSeconds   = "starstream_capture_slot_lag_seconds"
	MetricSlotSafeWALBytes = "starstream_capture_slot_safe_wal_size_bytes"
	MetricSlotWALStatus    = "starstream_capture_slot_wal_status"
	MetricSnapshotRows     = "starstream_capture_snapshot_rows_total"
)

// metrics holds the capture instruments; a nil *metrics records nothing.
type metrics struct {
	events   metric.Int64Counter
	writeDur metric.Float64Histogram
	snapRows metric.Int64Counter
}

func newMetrics(m metric.Meter) (*metrics, error) {
	if m == nil {
		return nil, nil
	}
	var out metrics
	var err error
	if out.events, err = m.Int64Counter(MetricEventsCaptured,
		metric.WithDescription("Change events written to Kafka, by table and operation.")); err != nil {
		return nil, err
	}
	if out.writeDur, err = m.Float64Histogram(MetricWriteSeconds, metric.WithUnit("s"),
		metric.WithDescription("Duration of one acknowledged Kafka write of a batch of events.")); err != nil {
		return nil, err
	}
	if out.snapRows, err = m.Int64Counter(MetricSnapshotRows,
		metric.WithDescription("Rows read by the initial snapshot, by table.")); err != nil {
		return nil, err
	}
	return &out, nil
}

func (m *metrics) written(ctx context.Context, batch []stream.Event, d time.Duration) {
	if m == nil {
		return
	}
	m.writeDur.Record(ctx, d.Seconds())
	type k struct {
		table string
		op    stream.Op
	}
	counts := map[k]int64{}
	for i := range batch {
		counts[k{batch[i].Schema + "." + batch[i].Table, batch[i].Op}]++
	}
	for key, n := range counts {
		m.events.Add(ctx, n, metric.WithAttributes(attribute.String("table", key.table), attribute.String("op", string(key.op))))
	}
}

func (m *metrics) snapshotRows(ctx context.Context, table string, n int64) {
	if m == nil {
		return
	}
	m.snapRows.Add(ctx, n, metric.WithAttributes(attribute.String("table", table)))
}
