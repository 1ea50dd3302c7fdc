package capture

import (
	"context"
	"sync"
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
	// Progress of the table being read by the snapshot or a backfill (the
	// last one per table): rows read so far, rows/s, and seconds left by the
	// planner's estimate (pg_class.reltuples; -1 unknown, 0 finished).
	MetricSnapshotProgressRows = "starstream_capture_snapshot_progress_rows"
	MetricSnapshotRowsPerSec   = "starstream_capture_snapshot_rows_per_second"
	MetricSnapshotETASeconds   = "starstream_capture_snapshot_eta_seconds"
	MetricSnapshotEstimate     = "starstream_capture_snapshot_estimated_rows"
	MetricBackfillRows         = "starstream_capture_backfill_rows_total"
)

// metrics holds the capture instruments; a nil *metrics records nothing.
type metrics struct {
	events   metric.Int64Counter
	writeDur metric.Float64Histogram
	snapRows metric.Int64Counter
	backRows metric.Int64Counter

	mu       sync.Mutex
	slot     slotHealth                // latest sample, reported by observable gauges
	progress map[string]*tableProgress // table → its latest snapshot or backfill
}

// slotHealth is one reading of the slot's row in pg_replication_slots.
type slotHealth struct {
	valid      bool
	lagBytes   int64
	lagSeconds float64
	walStatus  string
	safeWAL    int64 // -1 when unlimited (max_slot_wal_keep_size = -1)
	confirmed  stream.LSN
}

// walStatusCode orders wal_status by danger, for alerting on a gauge.
func walStatusCode(s string) int64 {
	switch s {
	case "reserved":
		return 0
	case "extended":
		return 1
	case "unreserved":
		return 2
	case "lost":
		return 3
	}
	return -1
}

func newMetrics(m metric.Meter) (*metrics, error) {
	if m == nil {
		return nil, nil
	}
	var out metrics
	var err error
	if out.events, err = m.Int64Counter(MetricEventsCaptured,
		metric.WithDescription("Change events written to Kafka, by table.")); err != nil {
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
	if out.backRows, err = m.Int64Counter(MetricBackfillRows,
		metric.WithDescription("Rows read by backfills, by table.")); err != nil {
		return nil, err
	}
	if err := out.progressGauges(m); err != nil {
		return nil, err
	}
	lagB, err := m.Int64ObservableGauge(MetricSlotLagBytes, metric.WithUnit("By"),
		metric.WithDescription("WAL bytes between the server's current position and the slot's confirmed_flush_lsn."))
	if err != nil {
		return nil, err
	}
	lagS, err := m.Float64ObservableGauge(MetricSlotLagSeconds, metric.WithUnit("s"),
		metric.WithDescription("How long ago the server wrote the WAL position the slot has confirmed (0 when caught up)."))
	if err != nil {
		return nil, err
	}
	safe, err := m.Int64ObservableGauge(MetricSlotSafeWALBytes, metric.WithUnit("By"),
		metric.WithDescription("WAL that can still be written before the slot is invalidated (safe_wal_size); -1 when unlimited."))
	if err != nil {
		return nil, err
	}
	status, err := m.Int64ObservableGauge(MetricSlotWALStatus,
		metric.WithDescription("wal_status of the slot: 0 reserved, 1 extended, 2 unreserved, 3 lost."))
	if err != nil {
		return nil, err
	}
	confirmed, err := m.Int64ObservableGauge(MetricConfirmedLSN,
		metric.WithDescription("The slot's confirmed_flush_lsn, as a number."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		out.mu.Lock()
		h := out.slot
		out.mu.Unlock()
		if !h.valid {
			return nil
		}
		o.ObserveInt64(lagB, h.lagBytes)
		o.ObserveFloat64(lagS, h.lagSeconds)
		o.ObserveInt64(safe, h.safeWAL)
		o.ObserveInt64(status, walStatusCode(h.walStatus))
		o.ObserveInt64(confirmed, int64(h.confirmed))
		return nil
	}, lagB, lagS, safe, status, confirmed)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (m *metrics) written(ctx context.Context, counts []tableCount, d time.Duration) {
	if m == nil {
		return
	}
	m.writeDur.Record(ctx, d.Seconds())
	for _, c := range counts {
		m.events.Add(ctx, c.n, metric.WithAttributes(attribute.String("table", c.schema+"."+c.table)))
	}
}

// tableCount is a number of events of one table.
type tableCount struct {
	schema, table string
	n             int64
}

// count returns the events per table of a batch (nil without metrics), one
// entry per run of events of the same table: batches come in long runs.
func (m *metrics) count(batch []stream.Event) []tableCount {
	if m == nil {
		return nil
	}
	var out []tableCount
	for i := range batch {
		ev := &batch[i]
		if n := len(out); n > 0 && out[n-1].schema == ev.Schema && out[n-1].table == ev.Table {
			out[n-1].n++
			continue
		}
		out = append(out, tableCount{ev.Schema, ev.Table, 1})
	}
	return out
}

func (m *metrics) snapshotRows(ctx context.Context, table string, n int64) {
	if m == nil {
		return
	}
	m.snapRows.Add(ctx, n, metric.WithAttributes(attribute.String("table", table)))
}

func (m *metrics) backfillRows(ctx context.Context, table string, n int64) {
	if m == nil {
		return
	}
	m.backRows.Add(ctx, n, metric.WithAttributes(attribute.String("table", table)))
}

// track makes tp the table's progress reported by the gauges.
func (m *metrics) track(tp *tableProgress) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if m.progress == nil {
		m.progress = map[string]*tableProgress{}
	}
	m.progress[tp.table] = tp
	m.mu.Unlock()
}

func (m *metrics) progressGauges(meter metric.Meter) error {
	rows, err := meter.Int64ObservableGauge(MetricSnapshotProgressRows,
		metric.WithDescription("Rows read so far by the table's snapshot or backfill."))
	if err != nil {
		return err
	}
	rate, err := meter.Float64ObservableGauge(MetricSnapshotRowsPerSec,
		metric.WithDescription("Rows per second of the table's snapshot or backfill (0 once finished)."))
	if err != nil {
		return err
	}
	eta, err := meter.Float64ObservableGauge(MetricSnapshotETASeconds, metric.WithUnit("s"),
		metric.WithDescription("Seconds left in the table's snapshot or backfill by the planner's row estimate; -1 unknown, 0 finished."))
	if err != nil {
		return err
	}
	est, err := meter.Int64ObservableGauge(MetricSnapshotEstimate,
		metric.WithDescription("The planner's row estimate (pg_class.reltuples) of the table being read."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		tps := make([]*tableProgress, 0, len(m.progress))
		for _, tp := range m.progress {
			tps = append(tps, tp)
		}
		m.mu.Unlock()
		now := time.Now()
		for _, tp := range tps {
			n, r, left, done := tp.figures(now)
			if done {
				r = 0
			}
			attrs := metric.WithAttributes(attribute.String("table", tp.table))
			o.ObserveInt64(rows, n, attrs)
			o.ObserveFloat64(rate, r, attrs)
			e := left.Seconds()
			if left < 0 {
				e = -1
			}
			o.ObserveFloat64(eta, e, attrs)
			o.ObserveInt64(est, tp.estimate, attrs)
		}
		return nil
	}, rows, rate, eta, est)
	return err
}
