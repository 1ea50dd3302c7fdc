package capture_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
)

// gauges collects the current value of every capture gauge and counter.
func gauges(t *testing.T, r *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[m.Name] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[m.Name] += float64(p.Value)
				}
			}
		}
	}
	return out
}

// TestSlotMetrics: lag in bytes and seconds grows while Kafka does not
// acknowledge, and falls back once it does; wal_status and safe_wal_size are
// reported.
func TestSlotMetrics(t *testing.T) {
	t.Parallel()
	db := capturetest.Connect(t)
	schema := capturetest.NewSchema(t)
	tbl := pgx.Identifier{schema, "t"}.Sanitize()
	exec(t, db, "CREATE TABLE "+tbl+" (id int PRIMARY KEY, pad text)")
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	cfg := capturetest.Config(t, schema)
	cfg.Meter = provider.Meter("capture")
	sw, _ := capturetest.NewWriter(t)
	gw := &gatedWriter{Writer: sw}
	capturetest.Start(t, cfg, gw)
	capturetest.Eventually(t, 30*time.Second, "slot active", func() bool {
		s, ok := capturetest.Slot(t, db, cfg.Slot)
		return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
	})

	gw.close()
	exec(t, db, "INSERT INTO "+tbl+" SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g")
	capturetest.Eventually(t, 30*time.Second, "lag of more than 100 kB and 2 s", func() bool {
		g := gauges(t, reader)
		return g[capture.MetricSlotLagBytes] > 100_000 && g[capture.MetricSlotLagSeconds] >= 2
	})
	g := gauges(t, reader)
	if g[capture.MetricSlotWALStatus] != 0 || g[capture.MetricSlotSafeWALBytes] != -1 {
		t.Errorf("wal_status code %v, safe_wal_size %v; want reserved (0) and unlimited (-1)",
			g[capture.MetricSlotWALStatus], g[capture.MetricSlotSafeWALBytes])
	}
	gw.release()
	capturetest.Fence(t, db)
	capturetest.Eventually(t, 30*time.Second, "lag back under 2 s", func() bool {
		capturetest.Fence(t, db)
		g := gauges(t, reader)
		return g[capture.MetricSlotLagSeconds] < 2 && g[capture.MetricEventsCaptured] >= 2000
	})
	s, _ := capturetest.Slot(t, db, cfg.Slot)
	if got := gauges(t, reader)[capture.MetricConfirmedLSN]; stream.LSN(got) > s.ConfirmedFlush {
		t.Errorf("confirmed gauge %v ahead of the slot %s", got, s.ConfirmedFlush)
	}
}
