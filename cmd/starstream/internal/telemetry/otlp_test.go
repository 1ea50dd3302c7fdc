package telemetry

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
)

// fakeCollector is an OTLP/gRPC metrics endpoint that remembers metric names.
type fakeCollector struct {
	collectormetrics.UnimplementedMetricsServiceServer
	mu      sync.Mutex
	names   map[string]bool
	service string
}

func (f *fakeCollector) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rm := range req.GetResourceMetrics() {
		for _, a := range rm.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				f.service = a.GetValue().GetStringValue()
			}
		}
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				f.names[m.GetName()] = true
			}
		}
	}
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

func TestOTLPPushesWhenConfigured(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeCollector{names: map[string]bool{}}
	srv := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(srv, fake)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tel, err := New(ctx, Config{OTLPEndpoint: ln.Addr().String(), OTLPInsecure: true, OTLPInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tel.Meter("test").Int64Counter("starstream_pipeline_events_applied_total")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 5)
	// Shutdown pushes what was recorded, whatever the interval.
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if !fake.names["starstream_pipeline_events_applied_total"] {
		t.Errorf("collector received %v", fake.names)
	}
	if fake.service != "starstream" {
		t.Errorf("service.name %q, want starstream", fake.service)
	}
}

func TestConfigRefusesCredentialsInEndpoint(t *testing.T) {
	t.Parallel()
	if _, err := New(context.Background(), Config{OTLPEndpoint: "https://user:secret@collector:4317"}); err == nil {
		t.Fatal("an endpoint with credentials was accepted")
	}
}

func TestWALClock(t *testing.T) {
	t.Parallel()
	c := NewWALClock()
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if _, ok := c.CompleteUpTo(100); ok {
		t.Fatal("a clock without samples answered")
	}
	c.Observe(100, t0)
	c.Observe(200, t0.Add(2*time.Second))
	c.Observe(200, t0.Add(4*time.Second)) // idle source
	c.Observe(150, t0.Add(5*time.Second)) // never backwards: taken as 200
	c.Observe(300, t0.Add(6*time.Second))
	cases := []struct {
		lsn  uint64
		want time.Time
		ok   bool
	}{
		{50, t0, false},                       // older than the history: at least since t0
		{100, t0, true},                       // complete up to the sample at 100
		{199, t0, true},                       // the source passed 199 after t0
		{200, t0.Add(5 * time.Second), true},  // idle at 200 until 5 s
		{1000, t0.Add(6 * time.Second), true}, // caught up: the latest sample
	}
	for _, tc := range cases {
		got, ok := c.CompleteUpTo(tc.lsn)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("CompleteUpTo(%d) = %v %v, want %v %v", tc.lsn, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWALClockThinsItsHistory(t *testing.T) {
	t.Parallel()
	c := NewWALClock()
	c.limit = 10
	t0 := time.Now()
	for i := range 100 {
		c.Observe(uint64(i*10), t0.Add(time.Duration(i)*time.Second))
	}
	if len(c.samples) > 10 {
		t.Fatalf("%d samples kept, limit 10", len(c.samples))
	}
	got, ok := c.CompleteUpTo(995)
	if !ok || !got.Equal(t0.Add(99*time.Second)) {
		t.Errorf("newest sample lost: %v %v", got, ok)
	}
	for i := 1; i < len(c.samples); i++ {
		if c.samples[i].lsn < c.samples[i-1].lsn || c.samples[i].at.Before(c.samples[i-1].at) {
			t.Fatalf("samples out of order: %+v", c.samples)
		}
	}
}
