package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/starstream/starstream/cmd/starstream/internal/ops"
	"github.com/starstream/starstream/stream"
)

// PipelineStat is what the Collector needs of one running pipeline.
type PipelineStat struct {
	Name      string
	Watermark uint64 // LSN; 0 before the first watermark
	// WatermarkTime is the time up to which the pipeline is complete: every
	// source change committed before it is applied (see WALClock). Zero when unknown.
	WatermarkTime time.Time
	Processed     int64
	DeadLetter    int64
	LastError     string
}

// CollectorConfig configures a Collector.
type CollectorConfig struct {
	Brokers  []string
	Security *stream.Security // Kafka SASL/TLS; nil is plaintext
	// Groups are the consumer groups whose lag this process reports, usually
	// those of the pipelines it runs; none disables lag polling.
	Groups []string
	// Interval between lag polls; default 15s.
	Interval time.Duration
	// Pipelines returns the pipelines' progress at collection time; nil when
	// this process runs none.
	Pipelines func() []PipelineStat
}

// Collector records consumer lag (polled from Kafka every Interval) and the
// pipelines' watermarks (read at each collection) as observable gauges.
type Collector struct {
	cfg  CollectorConfig
	log  *slog.Logger
	lag  func(ctx context.Context, brokers, groups []string) ([]ops.PartitionLag, error)
	now  func() time.Time
	errs metric.Int64Counter

	mu       sync.Mutex
	lags     []ops.PartitionLag
	polledAt time.Time
	lastErr  error
}

// NewCollector registers the Collector's instruments on meter.
func NewCollector(meter metric.Meter, cfg CollectorConfig, logger *slog.Logger) (*Collector, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if len(cfg.Groups) > 0 && len(cfg.Brokers) == 0 {
		return nil, errors.New("telemetry collector: groups without kafka brokers")
	}
	lag := func(ctx context.Context, brokers, groups []string) ([]ops.PartitionLag, error) {
		return ops.Lag(ctx, brokers, cfg.Security, groups)
	}
	c := &Collector{cfg: cfg, log: logger, lag: lag, now: time.Now}
	lagRecords, err := meter.Int64ObservableGauge(MetricConsumerLagRecords,
		metric.WithDescription("Records between the group's committed offset and the log end, by group, topic and partition."))
	if err != nil {
		return nil, err
	}
	lagSeconds, err := meter.Float64ObservableGauge(MetricConsumerLagSeconds, metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest record the group has not consumed, by group, topic and partition; 0 when caught up."))
	if err != nil {
		return nil, err
	}
	// A float gauge: LSNs are unsigned, and dim_date's +∞ (the largest LSN) would
	// turn negative as an int64. Prometheus values are floats anyway.
	wmLSN, err := meter.Float64ObservableGauge(MetricWatermarkLSN,
		metric.WithDescription("The pipeline's watermark: every source change at or below this LSN is applied."))
	if err != nil {
		return nil, err
	}
	wmAge, err := meter.Float64ObservableGauge(MetricWatermarkAge, metric.WithUnit("s"),
		metric.WithDescription("Seconds since the source was last known to be at or below the pipeline's watermark."))
	if err != nil {
		return nil, err
	}
	dead, err := meter.Int64ObservableCounter(MetricDeadLetters,
		metric.WithDescription("Records the pipeline sent to its dead-letter topic since the process started."))
	if err != nil {
		return nil, err
	}
	if c.errs, err = meter.Int64Counter(MetricLagPollErrors,
		metric.WithDescription("Failed polls of consumer lag from Kafka.")); err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, l := range c.current() {
			attrs := metric.WithAttributes(attribute.String(LabelGroup, l.Group), attribute.String(LabelTopic, l.Topic),
				attribute.String(LabelPartition, strconv.Itoa(l.Partition)))
			o.ObserveInt64(lagRecords, l.Lag, attrs)
			o.ObserveFloat64(lagSeconds, l.LagSeconds, attrs)
		}
		if cfg.Pipelines == nil {
			return nil
		}
		now := c.now()
		for _, p := range cfg.Pipelines() {
			attrs := metric.WithAttributes(attribute.String(LabelPipeline, p.Name))
			o.ObserveFloat64(wmLSN, float64(p.Watermark), attrs)
			if !p.WatermarkTime.IsZero() {
				o.ObserveFloat64(wmAge, max(now.Sub(p.WatermarkTime).Seconds(), 0), attrs)
			}
			o.ObserveInt64(dead, p.DeadLetter, attrs)
		}
		return nil
	}, lagRecords, lagSeconds, wmLSN, wmAge, dead)
	if err != nil {
		return nil, fmt.Errorf("telemetry collector: %w", err)
	}
	return c, nil
}

// Run polls lag every Interval until ctx is done; failures are logged, counted
// and retried at the next tick.
func (c *Collector) Run(ctx context.Context) error {
	if len(c.cfg.Groups) == 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		if err := c.Poll(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("consumer lag poll failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Poll reads the lag of the configured groups once.
func (c *Collector) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.Interval, 10*time.Second))
	defer cancel()
	lags, err := c.lag(ctx, c.cfg.Brokers, c.cfg.Groups)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastErr = err
	if err != nil {
		c.errs.Add(ctx, 1)
		return err
	}
	c.lags, c.polledAt = lags, c.now()
	return nil
}

// current returns the last lag poll, or nothing once it is older than three
// intervals: a stale figure would hide that lag is no longer measured.
func (c *Collector) current() []ops.PartitionLag {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.polledAt.IsZero() || c.now().Sub(c.polledAt) > 3*c.cfg.Interval {
		return nil
	}
	return c.lags
}

// Lag returns the partitions of the last successful poll (nil once stale).
func (c *Collector) Lag() []ops.PartitionLag { return c.current() }

// GroupLag sums a group's lag in records over its partitions and takes the
// largest lag in seconds; ok is false when the group was not measured.
func (c *Collector) GroupLag(group string) (records int64, seconds float64, ok bool) {
	for _, l := range c.current() {
		if l.Group == group {
			records += l.Lag
			seconds = max(seconds, l.LagSeconds)
			ok = true
		}
	}
	return records, seconds, ok
}
