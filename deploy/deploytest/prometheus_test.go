package deploytest

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

// loadAlerts parses alerts.yml with Prometheus' own rule-file parser: unknown fields
// rejected, every expression parsed as PromQL, every template parsed.
func loadAlerts(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	path := filepath.Join(repoRoot(t), "deploy", "prometheus", "alerts.yml")
	groups, errs := rulefmt.ParseFile(path, false, model.LegacyValidation, parser.NewParser(parser.Options{}),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	groups := loadAlerts(t)
	names := map[string]bool{}
	covered := map[string]bool{}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			where := g.Name + "/" + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: recording rule %q: this file holds alerts only", g.Name, r.Record)
				continue
			}
			if names[r.Alert] {
				t.Errorf("%s: alert name used twice", where)
			}
			names[r.Alert] = true
			if time.Duration(r.For) < time.Minute {
				t.Errorf("%s: for: %v; a rule without a hold time pages on every blip", where, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			// `up` is Prometheus' own series for a target that cannot be scraped.
			for _, m := range checkSeries(t, where, r.Expr, "up") {
				covered[m] = true
			}
		}
	}
	for _, want := range []string{
		"starstream_capture_slot_lag_bytes", "starstream_capture_slot_lag_seconds",
		"starstream_consumer_lag_records", "starstream_consumer_lag_seconds",
		"starstream_pipeline_watermark_age_seconds", "starstream_dq_failures_total",
		"starstream_sink_errors_total",
	} {
		if !covered[want] {
			t.Errorf("no alert watches %s", want)
		}
	}
	t.Logf("%d alerts in %d groups", n, len(groups.Groups))
}

// TestWatermarkStallAlertNeedsGrowth pins the stall rule's shape: a pipeline whose
// watermark is old but moving (catching up) must not page; one whose age keeps growing must.
func TestWatermarkStallAlertNeedsGrowth(t *testing.T) {
	t.Parallel()
	for _, g := range loadAlerts(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "StarstreamWatermarkStalled" {
				continue
			}
			if !strings.Contains(r.Expr, "deriv(starstream_pipeline_watermark_age_seconds[") {
				t.Errorf("the stall alert must require the age to grow (deriv), got %q", r.Expr)
			}
			return
		}
	}
	t.Error("no StarstreamWatermarkStalled alert")
}

// prometheusConfig is the part of Prometheus' configuration file used here, decoded strictly.
type prometheusConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestPrometheusConfigScrapesComposeServices(t *testing.T) {
	t.Parallel()
	var cfg prometheusConfig
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, "deploy/prometheus/prometheus.yml")))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	p := loadCompose(t, nil)
	prom := service(t, p, "prometheus")
	// Where the compose file mounts deploy/prometheus inside the container.
	var mountTarget string
	for _, v := range prom.Volumes {
		if v.Source == filepath.Join(repoRoot(t), "deploy", "prometheus") {
			mountTarget = v.Target
		}
	}
	if mountTarget == "" {
		t.Fatal("compose does not mount deploy/prometheus into the prometheus service")
	}
	if !slices.Contains(prom.Command, "--config.file="+mountTarget+"/prometheus.yml") {
		t.Errorf("prometheus command %v does not load %s/prometheus.yml", prom.Command, mountTarget)
	}
	if !slices.Contains(cfg.RuleFiles, mountTarget+"/alerts.yml") {
		t.Errorf("rule_files %v does not load %s/alerts.yml", cfg.RuleFiles, mountTarget)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "starstream" {
			continue
		}
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job starstream scrapes %q, want /metrics", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	var services []string
	for _, tg := range targets {
		host, port, err := net.SplitHostPort(tg)
		if err != nil || port != "8080" {
			t.Errorf("target %q: want <service>:8080 (http.addr)", tg)
		}
		services = append(services, host)
	}
	slices.Sort(services)
	if want := slices.Sorted(slices.Values(starstreamServices)); !slices.Equal(services, want) {
		t.Errorf("job starstream scrapes %v, want the compose services %v", services, want)
	}
}
