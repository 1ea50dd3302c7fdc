// Package telemetry sets up starstream's OpenTelemetry metrics: one
// MeterProvider that every package records into, exported for Prometheus on
// /metrics with the names exactly as the instruments spell them
// (starstream_<area>_<noun>_<unit>), and pushed over OTLP/gRPC when an endpoint
// is configured. Its Collector records what is polled rather than counted:
// consumer lag and pipeline watermarks.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Config configures the telemetry of one process.
type Config struct {
	// ServiceName is the OTLP resource's service.name; default "starstream".
	ServiceName string
	// OTLPEndpoint enables OTLP/gRPC push when set: "host:port" or a URL
	// ("https://collector:4317"; "http://…" means plaintext). The exporter also
	// honours the standard OTEL_EXPORTER_OTLP_* variables for headers and TLS.
	OTLPEndpoint string
	// OTLPInsecure uses plaintext gRPC for a "host:port" endpoint.
	OTLPInsecure bool
	// OTLPInterval is the push period; default 30s.
	OTLPInterval time.Duration
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.ServiceName == "" {
		c.ServiceName = "starstream"
	}
	if c.OTLPInterval == 0 {
		c.OTLPInterval = 30 * time.Second
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.OTLPInterval < 0 {
		return errors.New("telemetry: otlp interval must not be negative")
	}
	if strings.Contains(c.OTLPEndpoint, "@") {
		return errors.New("telemetry: the otlp endpoint must not carry credentials; use OTEL_EXPORTER_OTLP_HEADERS")
	}
	return nil
}

// Telemetry owns the process's MeterProvider and its exporters.
type Telemetry struct {
	provider *sdkmetric.MeterProvider
	handler  http.Handler
}

// secondsBuckets suit latencies from a millisecond to minutes; the SDK's
// default buckets (0, 5, 10, 25, … 10000) are meant for milliseconds and would
// put every write of a healthy sink into the first bucket.
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// New builds the MeterProvider with a Prometheus exporter on its own registry
// (plus Go runtime and process collectors) and, when configured, OTLP.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Instrument names are already the Prometheus names: no unit or _total
	// suffixes appended, no otel_scope_* labels, no target_info series.
	prom, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))),
		sdkmetric.WithReader(prom),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "*_seconds", Kind: sdkmetric.InstrumentKindHistogram},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: secondsBuckets}},
		)),
	}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlpExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(cfg.OTLPInterval))))
	}
	return &Telemetry{
		provider: sdkmetric.NewMeterProvider(opts...),
		handler:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}, nil
}

func otlpExporter(ctx context.Context, cfg Config) (sdkmetric.Exporter, error) {
	var opts []otlpmetricgrpc.Option
	if strings.Contains(cfg.OTLPEndpoint, "://") {
		opts = append(opts, otlpmetricgrpc.WithEndpointURL(cfg.OTLPEndpoint))
	} else {
		opts = append(opts, otlpmetricgrpc.WithEndpoint(cfg.OTLPEndpoint))
		if cfg.OTLPInsecure {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
	}
	exp, err := otlpmetricgrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	return exp, nil
}

// Meter returns a meter of the process's provider; name is the instrumenting
// package ("github.com/starstream/starstream/capture").
func (t *Telemetry) Meter(name string) metric.Meter { return t.provider.Meter(name) }

// MeterProvider returns the provider, e.g. for otel.SetMeterProvider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.provider }

// Handler serves the Prometheus exposition of every instrument (/metrics).
func (t *Telemetry) Handler() http.Handler { return t.handler }

// Shutdown flushes OTLP (a last push) and stops the readers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}
