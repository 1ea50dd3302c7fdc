package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/starstream/starstream/cmd/starstream/internal/ops"
	"github.com/starstream/starstream/dimensions"
)

// documented is every starstream series with its Prometheus type and labels,
// as docs/operations.md lists them. The instruments of other packages are
// recreated here with the kinds and units those packages use.
var documented = map[string]struct {
	kind   dto.MetricType
	labels []string
}{
	"starstream_capture_slot_lag_bytes":           {dto.MetricType_GAUGE, nil},
	"starstream_capture_slot_lag_seconds":         {dto.MetricType_GAUGE, nil},
	"starstream_capture_events_total":             {dto.MetricType_COUNTER, []string{"table"}},
	"starstream_pipeline_events_applied_total":    {dto.MetricType_COUNTER, []string{"pipeline"}},
	"starstream_consumer_lag_records":             {dto.MetricType_GAUGE, []string{"group", "partition", "topic"}},
	"starstream_consumer_lag_seconds":             {dto.MetricType_GAUGE, []string{"group", "partition", "topic"}},
	"starstream_consumer_lag_poll_errors_total":   {dto.MetricType_COUNTER, nil},
	"starstream_pipeline_watermark_lsn":           {dto.MetricType_GAUGE, []string{"pipeline"}},
	"starstream_pipeline_watermark_age_seconds":   {dto.MetricType_GAUGE, []string{"pipeline"}},
	"starstream_pipeline_dead_letters_total":      {dto.MetricType_COUNTER, []string{"pipeline"}},
	"starstream_dq_failures_total":                {dto.MetricType_COUNTER, []string{"pipeline", "rule"}},
	"starstream_sink_latency_seconds":             {dto.MetricType_HISTOGRAM, []string{"table"}},
	"starstream_sink_errors_total":                {dto.MetricType_COUNTER, []string{"table"}},
	"starstream_capture_write_seconds":            {dto.MetricType_HISTOGRAM, nil},
	"starstream_capture_confirmed_lsn":            {dto.MetricType_GAUGE, nil},
	"starstream_capture_slot_safe_wal_size_bytes": {dto.MetricType_GAUGE, nil},
	"starstream_capture_slot_wal_status":          {dto.MetricType_GAUGE, nil},
	"starstream_capture_snapshot_rows_total":      {dto.MetricType_COUNTER, []string{"table"}},
	"starstream_capture_backfill_rows_total":      {dto.MetricType_COUNTER, []string{"table"}},
	"starstream_capture_snapshot_progress_rows":   {dto.MetricType_GAUGE, []string{"table"}},
	"starstream_capture_snapshot_rows_per_second": {dto.MetricType_GAUGE, []string{"table"}},
	"starstream_capture_snapshot_eta_seconds":     {dto.MetricType_GAUGE, []string{"table"}},
	"starstream_capture_snapshot_estimated_rows":  {dto.MetricType_GAUGE, []string{"table"}},
}

func newTelemetry(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	tel, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// recordLikeOtherPackages records the pipelines' instruments through the real
// dimensions.Metrics, and recreates capture's (which need a database to
// construct) as capture/metrics.go declares them: full Prometheus names, unit
// "s" or "By", counters ending in _total.
func recordLikeOtherPackages(t *testing.T, m metric.Meter) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	pm, err := dimensions.NewMetrics(m)
	must(err)
	pm.Applied(ctx, "dim_customer", 3)
	pm.DQ(ctx, "dim_customer", map[string]int64{"email_not_null": 3})
	pm.Sink(ctx, "dim_customer", 42*time.Millisecond, 1)

	table := attribute.String("table", "shop.customers")
	for _, name := range []string{"starstream_capture_events_total", "starstream_capture_snapshot_rows_total", "starstream_capture_backfill_rows_total"} {
		c, err := m.Int64Counter(name)
		must(err)
		c.Add(ctx, 3, metric.WithAttributes(table))
	}
	h, err := m.Float64Histogram("starstream_capture_write_seconds", metric.WithUnit("s"))
	must(err)
	h.Record(ctx, 0.042)
	for _, g := range []struct{ name, unit string }{
		{"starstream_capture_slot_lag_bytes", "By"}, {"starstream_capture_slot_safe_wal_size_bytes", "By"},
		{"starstream_capture_slot_wal_status", ""}, {"starstream_capture_confirmed_lsn", ""},
	} {
		gauge, err := m.Int64Gauge(g.name, metric.WithUnit(g.unit))
		must(err)
		gauge.Record(ctx, 7)
	}
	// The snapshot's progress, per table being read (capture observes them).
	for _, g := range []struct {
		name, unit string
		float      bool
	}{
		{"starstream_capture_snapshot_progress_rows", "", false}, {"starstream_capture_snapshot_estimated_rows", "", false},
		{"starstream_capture_snapshot_rows_per_second", "", true}, {"starstream_capture_snapshot_eta_seconds", "s", true},
	} {
		if g.float {
			gauge, err := m.Float64Gauge(g.name, metric.WithUnit(g.unit))
			must(err)
			gauge.Record(ctx, 7, metric.WithAttributes(table))
			continue
		}
		gauge, err := m.Int64Gauge(g.name, metric.WithUnit(g.unit))
		must(err)
		gauge.Record(ctx, 7, metric.WithAttributes(table))
	}
	g, err := m.Float64Gauge("starstream_capture_slot_lag_seconds", metric.WithUnit("s"))
	must(err)
	g.Record(ctx, 1.5)
}

func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", res.Status, body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams, string(body)
}

func fakeLag(_ context.Context, _, groups []string) ([]ops.PartitionLag, error) {
	var out []ops.PartitionLag
	for _, g := range groups {
		out = append(out,
			ops.PartitionLag{Group: g, Topic: "cdc.shop.customers", Partition: 0, Committed: 90, End: 100, Lag: 10, LagSeconds: 4.5},
			ops.PartitionLag{Group: g, Topic: "cdc.shop.customers", Partition: 1, Committed: 50, End: 50})
	}
	return out, nil
}

func TestMetricNamesAsDocumented(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Config{})
	recordLikeOtherPackages(t, tel.Meter("test/others"))
	now := time.Now()
	col, err := NewCollector(tel.Meter("test/collector"), CollectorConfig{
		Brokers: []string{"127.0.0.1:1"}, Groups: []string{"starstream.dim_customer"},
		Pipelines: func() []PipelineStat {
			return []PipelineStat{
				{Name: "dim_customer", Watermark: 0x16B3748, WatermarkTime: now.Add(-90 * time.Second), DeadLetter: 2},
				{Name: "fact_sales"}, // no watermark yet: LSN 0, no age
				{Name: "dim_date", Watermark: ^uint64(0), WatermarkTime: now}, // +∞ must not turn negative
			}
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	col.lag = fakeLag
	if err := col.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A failed poll counts, and keeps the last good figures.
	col.lag = func(context.Context, []string, []string) ([]ops.PartitionLag, error) { return nil, io.ErrUnexpectedEOF }
	if err := col.Poll(context.Background()); err == nil {
		t.Fatal("failing poll returned nil")
	}

	fams, body := scrape(t, tel.Handler())
	var got []string
	for name, f := range fams {
		if !strings.HasPrefix(name, "starstream_") {
			continue
		}
		got = append(got, name)
		want, ok := documented[name]
		if !ok {
			t.Errorf("undocumented series %s", name)
			continue
		}
		if f.GetType() != want.kind {
			t.Errorf("%s: type %s, want %s", name, f.GetType(), want.kind)
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			sort.Strings(labels)
			if !slices.Equal(labels, want.labels) {
				t.Errorf("%s: labels %v, want %v", name, labels, want.labels)
			}
		}
	}
	for name := range documented {
		if !slices.Contains(got, name) {
			t.Errorf("documented series %s not exported", name)
		}
	}
	for _, bad := range []string{"otel_scope", "target_info", "_seconds_seconds", "_total_total", "_records_total", "_lsn_total"} {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics contains %q", bad)
		}
	}

	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			match := true
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					match = false
				}
			}
			if match {
				switch {
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Counter != nil:
					return m.Counter.GetValue()
				}
			}
		}
		t.Errorf("%s%v not found", name, labels)
		return -1
	}
	p0 := map[string]string{"group": "starstream.dim_customer", "topic": "cdc.shop.customers", "partition": "0"}
	p1 := map[string]string{"group": "starstream.dim_customer", "topic": "cdc.shop.customers", "partition": "1"}
	if v := value(MetricConsumerLagRecords, p0); v != 10 {
		t.Errorf("lag records p0 = %v, want 10", v)
	}
	if v := value(MetricConsumerLagSeconds, p0); v != 4.5 {
		t.Errorf("lag seconds p0 = %v, want 4.5", v)
	}
	if v := value(MetricConsumerLagRecords, p1); v != 0 {
		t.Errorf("lag records p1 = %v, want 0", v)
	}
	if v := value(MetricWatermarkLSN, map[string]string{"pipeline": "dim_customer"}); v != 0x16B3748 {
		t.Errorf("watermark lsn = %v", v)
	}
	if v := value(MetricWatermarkAge, map[string]string{"pipeline": "dim_customer"}); v < 89 || v > 120 {
		t.Errorf("watermark age = %v, want about 90", v)
	}
	if v := value(MetricWatermarkLSN, map[string]string{"pipeline": "dim_date"}); v < 1.8e19 {
		t.Errorf("dim_date's +∞ watermark exported as %v", v)
	}
	if n := len(fams[MetricWatermarkAge].GetMetric()); n != 2 {
		t.Errorf("watermark age reported for %d pipelines, want the two with a known time", n)
	}
	if v := value(MetricDeadLetters, map[string]string{"pipeline": "dim_customer"}); v != 2 {
		t.Errorf("dead letters = %v", v)
	}
	if v := value(MetricLagPollErrors, nil); v != 1 {
		t.Errorf("poll errors = %v, want 1", v)
	}
	// Seconds histograms get buckets for seconds, up to minutes.
	var bounds []float64
	for _, b := range fams["starstream_sink_latency_seconds"].GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if !slices.Contains(bounds, 0.05) || !slices.Contains(bounds, 10) {
		t.Errorf("sink latency buckets %v lack 0.05 s and 10 s", bounds)
	}
}

func TestCollectorDropsStaleLag(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, Config{})
	col, err := NewCollector(tel.Meter("test"), CollectorConfig{Brokers: []string{"x:1"}, Groups: []string{"g"}, Interval: time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	col.lag = fakeLag
	clock := time.Now()
	col.now = func() time.Time { return clock }
	if err := col.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec, sec, ok := col.GroupLag("g"); !ok || rec != 10 || sec != 4.5 {
		t.Errorf("GroupLag = %d %v %v", rec, sec, ok)
	}
	if _, _, ok := col.GroupLag("other"); ok {
		t.Error("GroupLag of an unpolled group is ok")
	}
	clock = clock.Add(4 * time.Second)
	if l := col.Lag(); l != nil {
		t.Errorf("lag older than three intervals still reported: %+v", l)
	}
	fams, _ := scrape(t, tel.Handler())
	if _, ok := fams[MetricConsumerLagRecords]; ok {
		t.Error("stale lag exported")
	}
}

// TestDocsListEveryMetric keeps the metrics table of docs/operations.md and
// the exported names in step.
func TestDocsListEveryMetric(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(starstream_[a-z_]+)` \\| (gauge|counter|histogram) \\|")
	inDocs := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		inDocs[m[1]] = m[2]
	}
	for name, want := range documented {
		kind, ok := inDocs[name]
		if !ok {
			t.Errorf("docs/operations.md: no row for %s", name)
			continue
		}
		if want := strings.ToLower(want.kind.String()); kind != want {
			t.Errorf("docs/operations.md: %s is a %s, documented as %s", name, want, kind)
		}
	}
	for name := range inDocs {
		if _, ok := documented[name]; !ok {
			t.Errorf("docs/operations.md documents %s, which nothing exports", name)
		}
	}
}
