package status

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Planted secrets: none may appear in anything the server sends.
const (
	secretInError = "hunter2-in-error"
	secretInDSN   = "S3cretDSNpw"
	secretBare    = "bare-token-9f8e7d"
	secretKafka   = "kafka-sasl-Pl4nted" // a Kafka SASL password, scrubbed as one of Config.Secrets
)

// fakeSource is a changeable snapshot provider, shaped like the real DAG.
type fakeSource struct {
	mu   sync.Mutex
	snap Snapshot
}

func (f *fakeSource) get() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Pipelines = slices.Clone(s.Pipelines)
	return s
}

func (f *fakeSource) update(fn func(*Snapshot)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.snap)
}

func newFakeSource() *fakeSource {
	dims := []string{"dim_date", "dim_customer", "dim_product", "dim_seller", "dim_campaign"}
	n := func(name string, wm uint64, up ...string) Node {
		return Node{Name: name, Upstream: up, Watermark: wm, WatermarkAge: 3 * time.Second, Lag: 12, LagSeconds: 1.5,
			Throughput: 42.5, Processed: 1000}
	}
	nodes := []Node{
		n("dim_date", ^uint64(0)),
		n("dim_customer", 0x16B3748, "dim_date"),
		n("dim_product", 0x16B3748, "dim_date"),
		n("dim_seller", 0x16B3748, "dim_date"),
		n("dim_campaign", 0x16B3700, "dim_date", "dim_product"),
		n("fact_sales", 0x16B3000, dims...),
		n("fact_inventory", 0x16B3000, "fact_sales", "dim_product", "dim_date"),
		n("fact_cart", 0, "fact_sales", "dim_customer", "dim_product"),
		n("fact_marketing", 0x16B3000, "fact_sales", "dim_campaign", "dim_date"),
	}
	nodes[1].DQFailures = 7
	nodes[7].WatermarkAge = -1
	nodes[8].LastError = "write fact_marketing: connect postgres://starstream:" + secretInError +
		"@db:5432/warehouse failed; password=" + secretInError + " token " + secretBare +
		"; join group: SASL handshake as svc with password " + secretKafka + " failed"
	return &fakeSource{snap: Snapshot{Pipelines: nodes, Capture: &Capture{
		Slot: "starstream", Publication: "starstream", DSN: "postgres://starstream:" + secretInDSN + "@127.0.0.1:15432/starstream",
		Events: 123456, ConfirmedLSN: 0x16B3748, SlotLagBytes: 2048, SlotLagSeconds: 0.8,
	}}}
}

func newTestServer(t *testing.T, src *fakeSource) *httptest.Server {
	t.Helper()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "starstream_up 1\n") })
	s := New(Config{Metrics: metrics, Secrets: []string{secretBare, secretKafka}}, src.get, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b), res.Header
}

func assertNoSecret(t *testing.T, where, text string) {
	t.Helper()
	for _, s := range []string{secretInError, secretInDSN, secretBare, secretKafka} {
		if strings.Contains(text, s) {
			t.Errorf("%s shows the planted secret %q", where, s)
		}
	}
}

func TestAPIStatus(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, newFakeSource())
	code, body, hdr := get(t, srv.URL+"/api/status")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("/api/status: %d %s", code, hdr.Get("Content-Type"))
	}
	var st apiStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ready || len(st.Reasons) != 2 {
		t.Errorf("ready %v, reasons %q: want not ready for fact_cart (no watermark) and fact_marketing (error)", st.Ready, st.Reasons)
	}
	levels := map[string]int{}
	byName := map[string]apiNode{}
	for _, n := range st.Pipelines {
		levels[n.Name] = n.Level
		byName[n.Name] = n
	}
	wantLevels := map[string]int{"dim_date": 0, "dim_customer": 1, "dim_product": 1, "dim_seller": 1, "dim_campaign": 2,
		"fact_sales": 3, "fact_inventory": 4, "fact_cart": 4, "fact_marketing": 4}
	for name, l := range wantLevels {
		if levels[name] != l {
			t.Errorf("%s at level %d, want %d", name, levels[name], l)
		}
	}
	var edges []string
	for _, e := range st.Edges {
		edges = append(edges, e[0]+"→"+e[1])
	}
	slices.Sort(edges)
	want := []string{"dim_campaign→fact_sales", "dim_customer→fact_sales", "dim_date→dim_customer", "dim_date→dim_product",
		"dim_date→dim_seller", "dim_product→dim_campaign", "dim_seller→fact_sales", "fact_sales→fact_cart",
		"fact_sales→fact_inventory", "fact_sales→fact_marketing"}
	if !slices.Equal(edges, want) {
		t.Errorf("edges (transitive reduction of upstream)\n got %v\nwant %v", edges, want)
	}
	cust := byName["dim_customer"]
	if cust.WatermarkLSN != "0/16B3748" || cust.WatermarkAge == nil || *cust.WatermarkAge != 3 || cust.DQFailures != 7 || cust.State != "ok" {
		t.Errorf("dim_customer: %+v", cust)
	}
	if byName["fact_cart"].State != "waiting" || byName["fact_cart"].WatermarkAge != nil {
		t.Errorf("fact_cart: %+v", byName["fact_cart"])
	}
	if m := byName["fact_marketing"]; m.State != "error" || !strings.Contains(m.LastError, "xxxxx") {
		t.Errorf("fact_marketing: %+v", m)
	}
	if st.Capture == nil || st.Capture.ConfirmedLSN != "0/16B3748" || !strings.Contains(st.Capture.DSN, "starstream:xxxxx@127.0.0.1") {
		t.Errorf("capture: %+v", st.Capture)
	}
	assertNoSecret(t, "/api/status", body)
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	srv := newTestServer(t, src)
	if code, body, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body, _ := get(t, srv.URL+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "fact_cart has no watermark yet") ||
		!strings.Contains(body, "fact_marketing failed") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	assertNoSecret(t, "/readyz", body)
	src.update(func(s *Snapshot) {
		s.Pipelines[7].Watermark = 1
		s.Pipelines[8].LastError = ""
	})
	if code, body, _ := get(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with every watermark and no error: %d %q", code, body)
	}
	src.update(func(s *Snapshot) {
		s.Pipelines[7].Watermark = 0
		s.Pipelines[7].Standby = true
	})
	if code, body, _ := get(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a standby member: %d %q", code, body)
	}
	src.update(func(s *Snapshot) { s.Capture.LastError = "replication slot lost" })
	if code, body, _ := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "capture failed") {
		t.Errorf("/readyz with a failed capture: %d %q", code, body)
	}
}

func TestReadOnlyAndRoutes(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, newFakeSource())
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		req, _ := http.NewRequest(method, srv.URL+"/api/status", strings.NewReader("{}"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /api/status: %d, want 405", method, res.StatusCode)
		}
	}
	code, body, hdr := get(t, srv.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, `id="dag"`) || !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("/: %d, CSP %q", code, hdr.Get("Content-Security-Policy"))
	}
	for _, path := range []string{"/static/app.js", "/static/style.css"} {
		if code, _, _ := get(t, srv.URL+path); code != http.StatusOK {
			t.Errorf("%s: %d", path, code)
		}
	}
	if code, body, _ := get(t, srv.URL+"/metrics"); code != http.StatusOK || body != "starstream_up 1\n" {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, _, _ := get(t, srv.URL+"/nothing-here"); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
	noMetrics := httptest.NewServer(New(Config{}, newFakeSource().get, slog.New(slog.DiscardHandler)).Handler())
	defer noMetrics.Close()
	if code, _, _ := get(t, noMetrics.URL+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without telemetry: %d, want 404", code)
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	r := newRedactor([]string{"  lit3ral  "})
	cases := map[string]string{
		"dial postgres://app:pa55w0rd@db:5432/shop: refused": "dial postgres://app:xxxxx@db:5432/shop: refused",
		"host=db user=app password=pa55w0rd dbname=shop":     "host=db user=app password=xxxxx dbname=shop",
		`config {"password": "pa55w0rd", "x": 1}`:            `config {"password": xxxxx, "x": 1}`,
		"sasl.password: 'pa55w0rd' next":                     "sasl.password: xxxxx next",
		"the lit3ral leaked":                                 "the xxxxx leaked",
		"kafka 127.0.0.1:19092 unreachable":                  "kafka 127.0.0.1:19092 unreachable",
		"postgres://app@db/shop":                             "postgres://app@db/shop",
	}
	for in, want := range cases {
		if got := r.text(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestThroughput(t *testing.T) {
	t.Parallel()
	tp := NewThroughput(time.Minute)
	t0 := time.Now()
	if r := tp.Rate("p", 0, t0); r != 0 {
		t.Errorf("first sample: %v", r)
	}
	if r := tp.Rate("p", 100, t0.Add(10*time.Second)); r != 10 {
		t.Errorf("100 events in 10 s: %v/s", r)
	}
	if r := tp.Rate("p", 100, t0.Add(10*time.Second+100*time.Millisecond)); r < 9.8 || r > 10 {
		t.Errorf("sub-second sample: %v", r)
	}
	// Two minutes later the window holds only the last minute's samples.
	tp.Rate("p", 700, t0.Add(70*time.Second))
	if r := tp.Rate("p", 1300, t0.Add(130*time.Second)); r != 10 {
		t.Errorf("windowed rate %v, want 10", r)
	}
	if r := tp.Rate("p", 5, t0.Add(131*time.Second)); r != 0 {
		t.Errorf("after a counter restart: %v", r)
	}
}

func TestLayoutMarksExternalUpstream(t *testing.T) {
	t.Parallel()
	levels, edges, external := layout([]Node{{Name: "fact_sales", Upstream: []string{"dim_customer", "dim_date"}}})
	if !slices.Equal(external, []string{"dim_customer", "dim_date"}) || levels["fact_sales"] != 1 || len(edges) != 2 {
		t.Errorf("levels %v edges %v external %v", levels, edges, external)
	}
}
