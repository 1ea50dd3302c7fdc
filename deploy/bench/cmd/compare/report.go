package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

type result struct {
	Machine machine       `json:"machine"`
	Backlog backlogInfo   `json:"backlog"`
	Drain   []drainResult `json:"drain"`
	Live    liveInfo      `json:"live"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryGiB  string `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	PostgreSQL string `json:"postgresql"`
	Kafka      string `json:"kafka_broker"`
	Connect    string `json:"kafka_connect"`
	Debezium   string `json:"debezium"`
	// DebeziumProps are the connector properties given with -debezium-props (defaults otherwise).
	DebeziumProps []string `json:"debezium_props,omitempty"`
	Java          string   `json:"java"`
	Go            string   `json:"go"`
	Commit        string   `json:"commit"`
	Date          string   `json:"date"`
	// LoadStart and LoadEnd are /proc/loadavg (1, 5, 15 min) when the run started and ended:
	// the machine is shared, and other work on it moves every figure.
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

type backlogInfo struct {
	Rows         int     `json:"rows"`
	TxRows       int     `json:"tx_rows"`
	WALBytes     int64   `json:"wal_bytes"`
	WriteSeconds float64 `json:"write_seconds"`
	EndLSN       string  `json:"end_lsn"`
}

type drainResult struct {
	Tool                string  `json:"tool"`
	Rows                int     `json:"rows"`
	Duplicates          int     `json:"duplicates"`
	Seconds             float64 `json:"seconds"`       // first → last record appended (pg_recvlogical: its run time)
	RowsPerSec          float64 `json:"rows_per_sec"`  // Rows / Seconds
	StartToLast         float64 `json:"start_to_last"` // process start → last record appended
	PeakRSSMiB          float64 `json:"peak_rss_mib"`
	CPUSeconds          float64 `json:"cpu_seconds"`           // the tool's process, start → drained
	WalsenderCPUSeconds float64 `json:"walsender_cpu_seconds"` // the walsender serving its slot
}

type liveInfo struct {
	Rows         int          `json:"rows"`
	TxRows       int          `json:"tx_rows"`
	TargetRate   float64      `json:"target_rate"`
	AchievedRate float64      `json:"achieved_rate"`
	Tools        []liveResult `json:"tools"`
}

type liveResult struct {
	Tool  string  `json:"tool"`
	Rows  int     `json:"rows"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// CommitReturnedMs is the median time from the commit timestamp the tool carries to
	// COMMIT returning in the harness: a check that the timestamps mean what they should.
	CommitReturnedMs float64 `json:"commit_returned_ms"`
	PeakRSSMiB       float64 `json:"peak_rss_mib"` // over the whole run of this process
	CPUSeconds       float64 `json:"cpu_seconds"`  // during the live phase
}

// latencyStats computes commit → Kafka latency over the live phase's rows (ids from first on).
func latencyStats(tool string, samples []sample, first int64, commits []time.Time, txRows int) liveResult {
	var lat, ret []float64
	for _, s := range samples {
		if s.id < first {
			continue
		}
		lat = append(lat, float64(s.appended-s.commit)/1000)
		if i := int((s.id - first) / int64(txRows)); i < len(commits) {
			ret = append(ret, float64(commits[i].UnixMicro()-s.commit)/1000)
		}
	}
	slices.Sort(lat)
	slices.Sort(ret)
	return liveResult{Tool: tool, Rows: len(lat), P50ms: pct(lat, 0.50), P99ms: pct(lat, 0.99), MaxMs: pct(lat, 1), CommitReturnedMs: pct(ret, 0.5)}
}

// writeSamples writes the live phase's rows of one tool as CSV (id, commit and append time in
// unix microseconds, latency in ms), for plots and for checking a surprising percentile.
func writeSamples(path string, samples []sample, first int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "id,commit_us,appended_us,latency_ms")
	for _, s := range samples {
		if s.id >= first {
			fmt.Fprintf(w, "%d,%d,%d,%.3f\n", s.id, s.commit, s.appended, float64(s.appended-s.commit)/1000)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (b *bench) report(w io.Writer) {
	r := b.res
	m := r.Machine
	fmt.Fprintf(w, "\nstarstream vs Debezium vs pg_recvlogical — run %s\n", b.run)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s GiB, Linux %s; PostgreSQL %s; Kafka %s; Connect %s + Debezium %s; %s; %s; commit %s\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.PostgreSQL, m.Kafka, m.Connect, m.Debezium, m.Java, m.Go, m.Commit)
	if len(m.DebeziumProps) > 0 {
		fmt.Fprintf(w, "Debezium connector properties beyond the defaults: %s\n", strings.Join(m.DebeziumProps, ", "))
	}
	fmt.Fprintf(w, "load average (1/5/15 min): %s at start, %s at end\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "backlog: %d rows of order_items (7 columns) in transactions of %d, %.0f MB of WAL, written in %.1fs\n\n",
		r.Backlog.Rows, r.Backlog.TxRows, float64(r.Backlog.WALBytes)/1e6, r.Backlog.WriteSeconds)

	fmt.Fprintln(w, "DRAIN — each reader alone reads the backlog into Kafka (pg_recvlogical: into /dev/null)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\trows/s\tfirst→last s\tstart→last s\trows\tdups\tpeak RSS MiB\tCPU s\twalsender CPU s\t")
	for _, d := range r.Drain {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t%d\t%.0f\t%.1f\t%.1f\t\n", d.Tool, d.RowsPerSec, d.Seconds, d.StartToLast,
			d.Rows, d.Duplicates, d.PeakRSSMiB, d.CPUSeconds, d.WalsenderCPUSeconds)
	}
	tw.Flush()
	if len(r.Live.Tools) > 0 {
		fmt.Fprintf(w, "\nLIVE — tools running together, %d rows at %.0f rows/s (achieved %.0f) in transactions of %d;\n",
			r.Live.Rows, r.Live.TargetRate, r.Live.AchievedRate, r.Live.TxRows)
		fmt.Fprintln(w, "latency = broker append time (LogAppendTime) − transaction commit timestamp carried in the record")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "tool\trows\tp50 ms\tp99 ms\tmax ms\tpeak RSS MiB (run)\tCPU s (live)\tCOMMIT returned +ms\t")
		for _, l := range r.Live.Tools {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t\n", l.Tool, l.Rows, l.P50ms, l.P99ms, l.MaxMs, l.PeakRSSMiB, l.CPUSeconds, l.CommitReturnedMs)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nRATIOS")
	drain := map[string]drainResult{}
	for _, d := range r.Drain {
		drain[d.Tool] = d
	}
	live := map[string]liveResult{}
	peak := map[string]float64{}
	for _, d := range r.Drain {
		peak[d.Tool] = d.PeakRSSMiB
	}
	for _, l := range r.Live.Tools {
		live[l.Tool] = l
		peak[l.Tool] = max(peak[l.Tool], l.PeakRSSMiB)
	}
	ss, okS := drain[toolStarstream]
	dz, okD := drain[toolDebezium]
	pr, okP := drain[toolRecv]
	if okS && okD {
		fmt.Fprintf(w, "starstream/Debezium rows/s:       %.2f×\n", ss.RowsPerSec/dz.RowsPerSec)
		fmt.Fprintf(w, "Debezium/starstream peak RSS:     %.1f×  (%.0f vs %.0f MiB)\n", peak[toolDebezium]/peak[toolStarstream], peak[toolDebezium], peak[toolStarstream])
		fmt.Fprintf(w, "Debezium/starstream CPU per row:  %.1f×\n", (dz.CPUSeconds/float64(dz.Rows))/(ss.CPUSeconds/float64(ss.Rows)))
	}
	if okS && okP {
		fmt.Fprintf(w, "starstream/pg_recvlogical rows/s: %.2f×\n", ss.RowsPerSec/pr.RowsPerSec)
	}
	if okD && okP {
		fmt.Fprintf(w, "Debezium/pg_recvlogical rows/s:   %.2f×\n", dz.RowsPerSec/pr.RowsPerSec)
	}
	if l1, ok1 := live[toolStarstream]; ok1 {
		if l2, ok2 := live[toolDebezium]; ok2 && l1.P99ms > 0 {
			fmt.Fprintf(w, "Debezium/starstream p99 latency:  %.1f×  (%.1f vs %.1f ms)\n", l2.P99ms/l1.P99ms, l2.P99ms, l1.P99ms)
		}
	}
}

func describeMachine(ctx context.Context, root string, src *source) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339), LoadStart: loadavg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				fmt.Sscan(strings.TrimSpace(v), &kib)
			}
		}
		m.MemoryGiB = fmt.Sprintf("%.1f", float64(kib)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	_ = src.db.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgreSQL)
	m.Kafka = pomProperty(filepath.Join(root, "deploy/local/kafka/pom.xml"), "kafka.version")
	m.Connect = pomProperty(filepath.Join(root, "deploy/bench/debezium/pom.xml"), "kafka.version")
	m.Debezium = pomProperty(filepath.Join(root, "deploy/bench/debezium/pom.xml"), "debezium.version")
	if out, err := exec.CommandContext(ctx, "java", "-version").CombinedOutput(); err == nil {
		m.Java = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		// The figures are of the code that was built: say so when it is not the commit's.
		if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no",
			"--", "capture", "stream", "deploy/bench", "go.mod").Output(); err == nil && len(st) > 0 {
			m.Commit += "-dirty"
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func pomProperty(path, name string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	re := regexp.MustCompile(`<` + regexp.QuoteMeta(name) + `>([^<]+)</`)
	if mm := re.FindSubmatch(b); mm != nil {
		return string(mm[1])
	}
	return "?"
}
