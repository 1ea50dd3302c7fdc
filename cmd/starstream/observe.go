package main

import (
	"context"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/cmd/starstream/internal/ops"
	"github.com/starstream/starstream/cmd/starstream/internal/status"
	"github.com/starstream/starstream/cmd/starstream/internal/telemetry"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/stream"
)

// lagCmd: starstream lag [--pipelines a,b]
func lagCmd(a *app) *cobra.Command {
	var names []string
	cmd := &cobra.Command{
		Use:   "lag",
		Short: "Consumer lag per group and partition: committed and end offset, records and seconds behind",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			groups, err := a.groups(ctx, names)
			if err != nil {
				return err
			}
			lags, err := ops.Lag(ctx, a.cfg.Kafka.Brokers, a.kafka, groups)
			if err != nil {
				return err
			}
			return ops.PrintLag(os.Stdout, lags)
		},
	}
	cmd.Flags().StringSliceVar(&names, "pipelines", nil, "only these pipelines (default: every starstream group of the namespace)")
	return cmd
}

// groups returns the consumer groups of the named pipelines, or every
// starstream group of the namespace when none is named.
func (a *app) groups(ctx context.Context, names []string) ([]string, error) {
	env := dimensions.Env{Namespace: a.cfg.Pipelines.Namespace}
	if len(names) == 0 {
		return ops.Groups(ctx, a.cfg.Kafka.Brokers, a.kafka, env.Group(""))
	}
	nodes, err := resolve(names, true)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = env.Group(n.name)
	}
	return out, nil
}

// replayCmd: starstream replay --pipeline P --to-earliest|--to-datetime T|--to-offset N|--shift-by N [--dry-run]
func replayCmd(a *app) *cobra.Command {
	var name string
	var f ops.ReplayFlags
	cmd := &cobra.Command{
		Use:   "replay --pipeline P (--to-earliest | --to-datetime T | --to-offset N | --shift-by N) [--dry-run]",
		Short: "Move a stopped pipeline's committed offsets; it re-derives identical rows from its checkpoints",
		RunE: func(cmd *cobra.Command, _ []string) error {
			to, err := f.Target()
			if err != nil {
				return err
			}
			if _, err := resolve([]string{name}, true); err != nil {
				return err
			}
			group := dimensions.Env{Namespace: a.cfg.Pipelines.Namespace}.Group(name)
			plan, err := ops.Replay(cmd.Context(), a.cfg.Kafka.Brokers, a.kafka, group, to, f.DryRun)
			if len(plan.Partitions) > 0 {
				if perr := plan.Print(os.Stdout); err == nil {
					err = perr
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&name, "pipeline", "", "the pipeline whose consumer group to move (required)")
	_ = cmd.MarkFlagRequired("pipeline")
	f.Register(cmd.Flags())
	return cmd
}

// newTelemetry builds the process's MeterProvider; pass tel.Meter(...) to
// capture.Config.Meter and dimensions.NewMetrics, and defer tel.Shutdown.
func (a *app) newTelemetry(ctx context.Context) (*telemetry.Telemetry, error) {
	return telemetry.New(ctx, telemetry.Config{ServiceName: "starstream", OTLPEndpoint: a.cfg.Telemetry.OTLPEndpoint})
}

// observers returns what serves a process's HTTP side until ctx is done: the
// lag collector, the WAL clock (when db is set) and the status page with
// /metrics. ps are the pipelines this process runs (nil for capture only);
// capt reports capture (nil when it runs elsewhere).
func (a *app) observers(tel *telemetry.Telemetry, ps []pipeline, db *pgxpool.Pool, capt func() *status.Capture) ([]func(context.Context) error, error) {
	env := dimensions.Env{Namespace: a.cfg.Pipelines.Namespace}
	clock := telemetry.NewWALClock()
	tput := status.NewThroughput(time.Minute)
	upstream := map[string][]string{}
	for _, n := range registry() {
		upstream[n.name] = n.upstream
	}
	standby, quarantined := map[string]bool{}, map[string]int64{}
	var groups []string
	for _, p := range ps {
		groups = append(groups, env.Group(p.Name()))
	}
	stats := func() []telemetry.PipelineStat {
		out := make([]telemetry.PipelineStat, 0, len(ps))
		for _, p := range ps {
			st := p.Stats()
			s := telemetry.PipelineStat{Name: p.Name(), Watermark: uint64(st.Watermark), Processed: st.Processed,
				DeadLetter: st.DeadLetter, LastError: st.LastError}
			standby[p.Name()], quarantined[p.Name()] = st.Standby, st.Quarantined
			if t, _ := clock.CompleteUpTo(uint64(st.Watermark)); !t.IsZero() && st.Watermark > 0 {
				s.WatermarkTime = t
			}
			out = append(out, s)
		}
		return out
	}
	col, err := telemetry.NewCollector(tel.Meter("github.com/starstream/starstream/cmd/starstream"),
		telemetry.CollectorConfig{Brokers: a.cfg.Kafka.Brokers, Security: a.kafka, Groups: groups, Pipelines: stats}, a.log)
	if err != nil {
		return nil, err
	}
	snapshot := func() status.Snapshot {
		now := time.Now()
		snap := status.Snapshot{GeneratedAt: now}
		if capt != nil {
			snap.Capture = capt()
		}
		for _, st := range stats() {
			n := status.Node{Name: st.Name, Upstream: upstream[st.Name], Watermark: st.Watermark, WatermarkAge: -1,
				Throughput: tput.Rate(st.Name, st.Processed, now), Processed: st.Processed, DeadLetter: st.DeadLetter,
				LastError: st.LastError, Standby: standby[st.Name], DQFailures: quarantined[st.Name]}
			if !st.WatermarkTime.IsZero() {
				n.WatermarkAge = now.Sub(st.WatermarkTime)
			}
			n.Lag, n.LagSeconds, _ = col.GroupLag(env.Group(st.Name))
			snap.Pipelines = append(snap.Pipelines, n)
		}
		return snap
	}
	secrets := a.cfg.secrets()
	runs := []func(context.Context) error{col.Run}
	if a.cfg.HTTP.Addr != "" {
		srv := status.New(status.Config{Addr: a.cfg.HTTP.Addr, Metrics: tel.Handler(), Secrets: secrets}, snapshot, a.log)
		runs = append(runs, srv.Run)
	}
	if db != nil {
		runs = append(runs, func(ctx context.Context) error {
			clock.Run(ctx, 2*time.Second, currentWALPosition(db))
			return nil
		})
	}
	return runs, nil
}

// currentWALPosition reads the source's current WAL position, for the WAL clock.
func currentWALPosition(db *pgxpool.Pool) func(context.Context) (uint64, error) {
	return func(ctx context.Context) (uint64, error) {
		var text string
		if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&text); err != nil {
			return 0, err
		}
		l, err := stream.ParseLSN(text)
		return uint64(l), err
	}
}

// captureStatus is the capture panel; events come from demo's countingWriter.
func (a *app) captureStatus(events func() int64) func() *status.Capture {
	return func() *status.Capture {
		return &status.Capture{Slot: a.cfg.Postgres.Slot, Publication: a.cfg.Postgres.Publication,
			DSN: capture.RedactDSN(a.cfg.Postgres.DSN), Events: events()}
	}
}
