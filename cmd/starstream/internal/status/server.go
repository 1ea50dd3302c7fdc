// Package status serves starstream's read-only status page on the HTTP port:
// the pipeline DAG with each node's watermark (LSN and age), consumer lag,
// throughput, data-quality failures and last error, updated live; its JSON at
// /api/status; liveness (/healthz) and readiness (/readyz) for orchestrators;
// and the Prometheus metrics on /metrics. Nothing on it can change anything,
// and every text is redacted before it is shown.
package status

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed web
var webFS embed.FS

// DefaultAddr keeps the page on the local machine unless configured otherwise.
const DefaultAddr = "127.0.0.1:8080"

// Config configures the server.
type Config struct {
	Addr string // listen address; default DefaultAddr
	// Metrics serves /metrics (telemetry.Telemetry.Handler); nil answers 404.
	Metrics http.Handler
	// Secrets are literal values (passwords, tokens) scrubbed from every text
	// the page and the API show, beyond the patterns redacted anyway
	// (URL passwords, password=…, token: …).
	Secrets []string
}

// Server is the status HTTP server.
type Server struct {
	cfg      Config
	snapshot func() Snapshot
	redact   redactor
	log      *slog.Logger
	started  time.Time
}

// New returns a server calling snapshot for every page update; snapshot must be
// cheap (it runs every 2 s per open page) and safe for concurrent use.
func New(cfg Config, snapshot func() Snapshot, logger *slog.Logger) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	return &Server{cfg: cfg, snapshot: snapshot, redact: newRedactor(cfg.Secrets), log: logger, started: time.Now()}
}

// Handler returns the routes: /, /static/…, /api/status, /healthz, /readyz, /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(static)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.Handle("/static/", http.StripPrefix("/static/", files))
	mux.HandleFunc("/api/status", s.apiStatus)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Metrics == nil {
			http.NotFound(w, r)
			return
		}
		s.cfg.Metrics.ServeHTTP(w, r)
	})
	return readOnly(mux)
}

// readOnly refuses every method but GET and HEAD and sets headers that keep
// the page from loading anything but its own files or being framed.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the status page is read-only", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// Run serves on Addr until ctx is done, then shuts down, giving open requests
// five seconds.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("status page: listen on %s (http.addr): %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	s.log.Info("status page listening", "addr", "http://"+ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("status page: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("status page shutdown: %w", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status page: %w", err)
	}
	return nil
}

// current takes a snapshot and redacts it.
func (s *Server) current() Snapshot {
	snap := s.snapshot()
	if snap.GeneratedAt.IsZero() {
		snap.GeneratedAt = time.Now()
	}
	return s.redact.snapshot(snap)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ready, reasons := s.current().Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready:\n%s\n", strings.Join(reasons, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// apiNode is a Node as the page's script reads it.
type apiNode struct {
	Name         string   `json:"name"`
	Upstream     []string `json:"upstream"`
	Level        int      `json:"level"`
	External     bool     `json:"external,omitempty"` // upstream run by another process
	State        string   `json:"state"`              // ok, waiting, standby, error, external
	Watermark    uint64   `json:"watermark"`
	WatermarkLSN string   `json:"watermark_lsn"`
	WatermarkAge *float64 `json:"watermark_age_seconds"` // null when unknown
	Lag          int64    `json:"lag_records"`
	LagSeconds   float64  `json:"lag_seconds"`
	Throughput   float64  `json:"throughput_per_second"`
	Processed    int64    `json:"processed"`
	DeadLetter   int64    `json:"dead_letter"`
	DQFailures   int64    `json:"dq_failures"`
	LastError    string   `json:"last_error"`
}

type apiCapture struct {
	Slot           string  `json:"slot"`
	Publication    string  `json:"publication"`
	DSN            string  `json:"dsn"`
	Events         int64   `json:"events"`
	ConfirmedLSN   string  `json:"confirmed_lsn"`
	SlotLagBytes   int64   `json:"slot_lag_bytes"`
	SlotLagSeconds float64 `json:"slot_lag_seconds"`
	LastError      string  `json:"last_error"`
}

type apiStatus struct {
	GeneratedAt   time.Time   `json:"generated_at"`
	UptimeSeconds float64     `json:"uptime_seconds"`
	Ready         bool        `json:"ready"`
	Reasons       []string    `json:"reasons"`
	Capture       *apiCapture `json:"capture"`
	Pipelines     []apiNode   `json:"pipelines"`
	Edges         [][2]string `json:"edges"`
}

func (s *Server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	snap := s.current()
	ready, reasons := snap.Ready()
	levels, edges, external := layout(snap.Pipelines)
	out := apiStatus{GeneratedAt: snap.GeneratedAt.UTC(), UptimeSeconds: time.Since(s.started).Seconds(),
		Ready: ready, Reasons: reasons, Edges: edges, Pipelines: []apiNode{}}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	if out.Edges == nil {
		out.Edges = [][2]string{}
	}
	for _, n := range snap.Pipelines {
		an := apiNode{Name: n.Name, Upstream: n.Upstream, Level: levels[n.Name], Watermark: n.Watermark,
			WatermarkLSN: formatLSN(n.Watermark), Lag: n.Lag, LagSeconds: n.LagSeconds, Throughput: n.Throughput,
			Processed: n.Processed, DeadLetter: n.DeadLetter, DQFailures: n.DQFailures, LastError: n.LastError}
		if an.Upstream == nil {
			an.Upstream = []string{}
		}
		if n.Watermark > 0 && n.WatermarkAge >= 0 {
			age := n.WatermarkAge.Seconds()
			an.WatermarkAge = &age
		}
		switch {
		case n.LastError != "":
			an.State = "error"
		case n.Standby:
			an.State = "standby"
		case n.Watermark == 0:
			an.State = "waiting"
		default:
			an.State = "ok"
		}
		out.Pipelines = append(out.Pipelines, an)
	}
	for _, name := range external {
		out.Pipelines = append(out.Pipelines, apiNode{Name: name, Upstream: []string{}, Level: levels[name], External: true,
			State: "external", WatermarkLSN: formatLSN(0)})
	}
	if c := snap.Capture; c != nil {
		out.Capture = &apiCapture{Slot: c.Slot, Publication: c.Publication, DSN: c.DSN, Events: c.Events,
			ConfirmedLSN: formatLSN(c.ConfirmedLSN), SlotLagBytes: c.SlotLagBytes, SlotLagSeconds: c.SlotLagSeconds,
			LastError: c.LastError}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		s.log.Debug("status api write failed", "error", err)
	}
}
