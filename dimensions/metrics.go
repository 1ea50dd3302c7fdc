package dimensions

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Pipeline metric names (exported to Prometheus as written).
const (
	MetricEventsApplied = "starstream_pipeline_events_applied_total"
	MetricDQFailures    = "starstream_dq_failures_total"
	MetricSinkLatency   = "starstream_sink_latency_seconds"
	MetricSinkErrors    = "starstream_sink_errors_total"
)

// Metrics are the instruments every pipeline records; facts share them.
type Metrics struct {
	applied     metric.Int64Counter
	dqFailures  metric.Int64Counter
	sinkLatency metric.Float64Histogram
	sinkErrors  metric.Int64Counter
}

// NewMetrics creates the instruments on meter (a no-op meter when nil).
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("starstream")
	}
	var m Metrics
	var err error
	if m.applied, err = meter.Int64Counter(MetricEventsApplied, metric.WithDescription("source changes applied, by pipeline")); err != nil {
		return nil, err
	}
	if m.dqFailures, err = meter.Int64Counter(MetricDQFailures, metric.WithDescription("rows failing a data-quality rule, by pipeline and rule")); err != nil {
		return nil, err
	}
	if m.sinkLatency, err = meter.Float64Histogram(MetricSinkLatency, metric.WithUnit("s"),
		metric.WithDescription("warehouse write latency, by table")); err != nil {
		return nil, err
	}
	if m.sinkErrors, err = meter.Int64Counter(MetricSinkErrors, metric.WithDescription("failed warehouse writes and refused rows, by table")); err != nil {
		return nil, err
	}
	return &m, nil
}

// Applied counts applied changes.
func (m *Metrics) Applied(ctx context.Context, pipeline string, n int) {
	m.applied.Add(ctx, int64(n), metric.WithAttributes(attribute.String("pipeline", pipeline)))
}

// DQ counts rule failures.
func (m *Metrics) DQ(ctx context.Context, pipeline string, counts map[string]int64) {
	for rule, n := range counts {
		m.dqFailures.Add(ctx, n, metric.WithAttributes(attribute.String("pipeline", pipeline), attribute.String("rule", rule)))
	}
}

// Sink records one warehouse write.
func (m *Metrics) Sink(ctx context.Context, table string, took time.Duration, failed int) {
	attrs := metric.WithAttributes(attribute.String("table", table))
	m.sinkLatency.Record(ctx, took.Seconds(), attrs)
	if failed > 0 {
		m.sinkErrors.Add(ctx, int64(failed), attrs)
	}
}
