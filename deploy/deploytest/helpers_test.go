// Package deploytest checks the deployment files — docker-compose.yml, deploy/docker,
// deploy/k8s, deploy/prometheus and deploy/grafana — by parsing them with the libraries
// that their real consumers use (compose-spec, the Kubernetes API types, Prometheus' rule
// and PromQL parsers). It needs no Docker, cluster or network.
package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// pipelines is every pipeline of the DAG (DESIGN §4); each must be deployed.
var pipelines = []string{
	"dim_date", "dim_customer", "dim_product", "dim_seller", "dim_campaign",
	"fact_sales", "fact_inventory", "fact_cart", "fact_marketing",
}

// metrics is the documented list of starstream's Prometheus series, with their kind.
var metrics = map[string]string{
	"starstream_capture_slot_lag_bytes":         "gauge",
	"starstream_capture_slot_lag_seconds":       "gauge",
	"starstream_capture_events_total":           "counter",
	"starstream_pipeline_events_applied_total":  "counter",
	"starstream_consumer_lag_records":           "gauge",
	"starstream_consumer_lag_seconds":           "gauge",
	"starstream_pipeline_watermark_lsn":         "gauge",
	"starstream_pipeline_watermark_age_seconds": "gauge",
	"starstream_dq_failures_total":              "counter",
	"starstream_sink_latency_seconds":           "histogram",
	"starstream_sink_errors_total":              "counter",
}

// baseMetric maps a series name to its documented metric: a histogram is queried
// through its _bucket, _sum and _count series.
func baseMetric(series string) (string, bool) {
	if _, ok := metrics[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && metrics[base] == "histogram" {
			return base, true
		}
	}
	return "", false
}

// repoRoot is the repository root: tests run in deploy/deploytest.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grafanaVars stands in for Grafana's variables so that dashboard queries parse as PromQL.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
)

var dashboardVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)

// selectedSeries parses a PromQL expression and returns the metric name of every
// selector in it; a selector without a metric name is an error (it would match
// anything scraped).
func selectedSeries(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var missing error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name == "" {
			missing = fmt.Errorf("selector %s names no metric", vs)
			return nil
		}
		names = append(names, vs.Name)
		return nil
	})
	if missing != nil {
		return nil, missing
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}

// checkSeries fails unless expr parses and selects only documented starstream series
// (or one of allowed); it returns the documented metrics it uses.
func checkSeries(t *testing.T, where, expr string, allowed ...string) []string {
	t.Helper()
	names, err := selectedSeries(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return nil
	}
	if len(names) == 0 {
		t.Errorf("%s: %q selects no series", where, expr)
	}
	var used []string
	for _, n := range names {
		if base, ok := baseMetric(n); ok {
			used = append(used, base)
			continue
		}
		if !slices.Contains(allowed, n) {
			t.Errorf("%s: %q selects %s, which is not a documented starstream metric", where, expr, n)
		}
	}
	return used
}

// missingKeys returns the keys of want absent from have, sorted.
func missingKeys[V any](want []string, have map[string]V) []string {
	var out []string
	for _, k := range want {
		if _, ok := have[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
