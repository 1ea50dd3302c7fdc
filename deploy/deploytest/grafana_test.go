package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// dashboard is the part of a Grafana dashboard model that these checks read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource datasource      `json:"datasource"`
			Query      json.RawMessage `json:"query"`
			Current    struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row keeps its panels here
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "deploy/grafana/dashboards/starstream.json"), &d); err != nil {
		t.Fatalf("starstream.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// promQL turns a dashboard query into PromQL: Grafana's interval variables become
// durations, and a variable inside a label matcher becomes a regexp that matches anything.
func promQL(expr string) string {
	return dashboardVar.ReplaceAllString(grafanaVars.Replace(expr), ".*")
}

func TestGrafanaDashboardQueriesKnownMetrics(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	covered := map[string]bool{}
	ids := map[int]bool{}
	queries := 0
	for _, p := range allPanels(d.Panels) {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			t.Errorf("%s: id used twice", where)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("%s: a panel needs a title and at least one query", where)
		}
		if p.Datasource.Type != "prometheus" {
			t.Errorf("%s: datasource %+v, want prometheus", where, p.Datasource)
		}
		for _, tg := range p.Targets {
			queries++
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s/%s: datasource uid %q, want ${datasource} so any Prometheus can be picked", where, tg.RefID, tg.Datasource.UID)
			}
			for _, m := range checkSeries(t, where+"/"+tg.RefID, promQL(tg.Expr)) {
				covered[m] = true
			}
		}
	}
	for m := range metrics {
		if !covered[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	t.Logf("%d panels, %d queries", len(ids), queries)
}

var labelValues = regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

func TestGrafanaDashboardVariables(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		if v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: datasource uid %q, want ${datasource}", v.Name, v.Datasource.UID)
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query: %v", v.Name, err)
			continue
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, q.Query)
			continue
		}
		if _, ok := baseMetric(m[1]); !ok {
			t.Errorf("variable %s reads %s, not a documented metric", v.Name, m[1])
		}
	}
	// Every variable a query uses is defined.
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, ref := range dashboardVar.FindAllString(tg.Expr, -1) {
				name := strings.Trim(ref, "${}")
				if !strings.HasPrefix(name, "__") && !vars[name] {
					t.Errorf("panel %q uses undefined variable %s", p.Title, ref)
				}
			}
		}
	}
	if !vars["datasource"] {
		t.Error("no datasource variable")
	}
}

func TestGrafanaDashboardShowsSinkLatencyQuantiles(t *testing.T) {
	t.Parallel()
	var p50, p99 bool
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "starstream_sink_latency_seconds_bucket") {
				p50 = p50 || strings.Contains(tg.Expr, "histogram_quantile(0.5,")
				p99 = p99 || strings.Contains(tg.Expr, "histogram_quantile(0.99,")
			}
		}
	}
	if !p50 || !p99 {
		t.Errorf("sink latency p50 shown: %v, p99 shown: %v", p50, p99)
	}
}

func TestGrafanaDashboardLayout(t *testing.T) {
	t.Parallel()
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range loadDashboard(t).Panels {
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			continue
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at (%d,%d)", other, p.Title, x, y)
					return
				}
				used[cell{x, y}] = p.Title
			}
		}
	}
}

// Grafana provisioning files, decoded strictly.
type datasourcesFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string            `yaml:"name"`
		UID       string            `yaml:"uid"`
		Type      string            `yaml:"type"`
		Access    string            `yaml:"access"`
		URL       string            `yaml:"url"`
		IsDefault bool              `yaml:"isDefault"`
		Editable  bool              `yaml:"editable"`
		JSONData  map[string]string `yaml:"jsonData"`
	} `yaml:"datasources"`
}

type dashboardsFile struct {
	APIVersion int `yaml:"apiVersion"`
	Providers  []struct {
		Name                  string `yaml:"name"`
		Folder                string `yaml:"folder"`
		Type                  string `yaml:"type"`
		DisableDeletion       bool   `yaml:"disableDeletion"`
		AllowUIUpdates        bool   `yaml:"allowUiUpdates"`
		UpdateIntervalSeconds int    `yaml:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `yaml:"path"`
			FoldersFromFilesStructure bool   `yaml:"foldersFromFilesStructure"`
		} `yaml:"options"`
	} `yaml:"providers"`
}

func decodeYAMLStrict(t *testing.T, rel string, into any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, rel)))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func TestGrafanaProvisioningMatchesCompose(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	grafana := service(t, loadCompose(t, nil), "grafana")
	mounts := map[string]string{} // host dir -> container dir
	for _, v := range grafana.Volumes {
		mounts[v.Source] = v.Target
	}
	if mounts[filepath.Join(root, "deploy", "grafana", "provisioning")] != "/etc/grafana/provisioning" {
		t.Error("compose does not mount deploy/grafana/provisioning at /etc/grafana/provisioning")
	}
	dashDir := mounts[filepath.Join(root, "deploy", "grafana", "dashboards")]

	var ds datasourcesFile
	decodeYAMLStrict(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" {
		t.Fatalf("want one prometheus datasource, got %+v", ds.Datasources)
	}
	src := ds.Datasources[0]
	if src.URL != "http://prometheus:9090" {
		t.Errorf("datasource url %q, want the compose service http://prometheus:9090", src.URL)
	}
	for _, v := range loadDashboard(t).Templating.List {
		if v.Name == "datasource" && v.Current.Value != src.UID {
			t.Errorf("the dashboard's datasource variable defaults to %v, the provisioned uid is %q", v.Current.Value, src.UID)
		}
	}

	var dp dashboardsFile
	decodeYAMLStrict(t, "deploy/grafana/provisioning/dashboards/starstream.yml", &dp)
	if len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		t.Fatalf("want one file provider, got %+v", dp.Providers)
	}
	if got := dp.Providers[0].Options.Path; got == "" || got != dashDir {
		t.Errorf("dashboard provider reads %q, compose mounts deploy/grafana/dashboards at %q", got, dashDir)
	}
	if env := grafana.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; env == nil || *env != dashDir+"/starstream.json" {
		t.Errorf("home dashboard %v is not %s/starstream.json", env, dashDir)
	}
}
