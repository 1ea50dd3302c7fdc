package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/starstream/starstream/deploy/shop"
	"github.com/starstream/starstream/dimensions"
	"github.com/starstream/starstream/facts"
	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/bigquery"
	"github.com/starstream/starstream/sinks/duckdb"

	"github.com/starstream/starstream/cmd/starstream/internal/status"
	"github.com/starstream/starstream/cmd/starstream/internal/verify"
)

func newRoot() *cobra.Command {
	var configPath, logLevel string
	var a *app
	root := &cobra.Command{
		Use:           "starstream",
		Short:         "Stream an e-commerce PostgreSQL database into a BigQuery/DuckDB star schema through Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(configPath, os.Environ())
			if err != nil {
				return err
			}
			if logLevel != "" {
				cfg.Log.Level = logLevel
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			na, err := newApp(cfg)
			if err != nil {
				return err
			}
			*a = *na
			return nil
		},
	}
	a = &app{}
	root.PersistentFlags().StringVar(&configPath, "config", os.Getenv("STARSTREAM_CONFIG"), "YAML configuration file (defaults are embedded)")
	root.PersistentFlags().StringVar(&logLevel, "log-level", "", "debug, info, warn or error")
	root.AddCommand(withCaptureSubcommands(a, captureCmd(a)), runCmd(a), demoCmd(a), seedCmd(a), generateCmd(a), queryCmd(a), ddlCmd(a), dagCmd(), configCmd(a),
		verifyCmd(a), lagCmd(a), replayCmd(a), backfillCmd(a))
	return root
}

func captureCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "capture",
		Short: "Capture changes of the source schema into Kafka (snapshot first, then streaming)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := a.reachable(ctx); err != nil {
				return err
			}
			o, err := a.observe(ctx, nil)
			if err != nil {
				return err
			}
			defer o.close()
			w, err := a.writer()
			if err != nil {
				return err
			}
			defer w.Close()
			cw := &countingWriter{Writer: w}
			c, err := a.capture(cw, o.tel.Meter("github.com/starstream/starstream/capture"))
			if err != nil {
				return err
			}
			extra, err := a.observers(o.tel, nil, o.db, a.captureStatus(cw.events.Load))
			if err != nil {
				return err
			}
			return runAll(ctx, a, nil, append(extra, c.Run))
		},
	}
}

func runCmd(a *app) *cobra.Command {
	var names []string
	var withCapture, only bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run pipelines and everything upstream of them (all when --pipelines is not given)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			sink, err := a.openSink(ctx)
			if err != nil {
				return err
			}
			defer sink.Close()
			o, err := a.observe(ctx, sink)
			if err != nil {
				return err
			}
			defer o.close()
			ps, err := a.buildPipelines(o.env, names, only)
			if err != nil {
				return err
			}
			var runs []func(context.Context) error
			var captured func() *status.Capture
			if withCapture {
				if err := a.reachable(ctx); err != nil {
					return err
				}
				w, err := a.writer()
				if err != nil {
					return err
				}
				defer w.Close()
				cw := &countingWriter{Writer: w}
				c, err := a.capture(cw, o.tel.Meter("github.com/starstream/starstream/capture"))
				if err != nil {
					return err
				}
				runs, captured = append(runs, c.Run), a.captureStatus(cw.events.Load)
			}
			extra, err := a.observers(o.tel, ps, o.db, captured)
			if err != nil {
				return err
			}
			return runAll(ctx, a, ps, append(runs, extra...))
		},
	}
	cmd.Flags().StringSliceVar(&names, "pipelines", nil, "pipelines to run, e.g. fact_sales,dim_customer (upstream added)")
	cmd.Flags().BoolVar(&withCapture, "capture", false, "also run capture in this process")
	cmd.Flags().BoolVar(&only, "only", false, "run exactly the named pipelines, not their upstream (one deployment per pipeline)")
	return cmd
}

// runAll runs the pipelines (and extra functions) until ctx is done or one fails.
// Errors that only say the work was interrupted by a requested stop are not failures.
func runAll(parent context.Context, a *app, ps []pipeline, extra []func(context.Context) error) error {
	g, ctx := errgroup.WithContext(parent)
	stopped := func(name string, err error) error {
		if err == nil {
			return nil
		}
		if parent.Err() != nil {
			a.log.Debug("interrupted by shutdown", "pipeline", name, "error", err)
			return nil
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, p := range ps {
		g.Go(func() error { return stopped(p.Name(), p.Run(ctx)) })
	}
	for _, f := range extra {
		g.Go(func() error { return stopped("service", f(ctx)) })
	}
	a.log.Info("pipelines started", "count", len(ps))
	return g.Wait()
}

func seedCmd(a *app) *cobra.Command {
	var scale int
	var seed int64
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Create the shop schema and load deterministic sample data",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, err := a.pool(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := shop.Create(ctx, db, a.cfg.Postgres.Schema); err != nil {
				return err
			}
			st, err := shop.Seed(ctx, db, shop.SeedConfig{Schema: a.cfg.Postgres.Schema, Scale: scale, Seed: seed})
			if err != nil {
				return err
			}
			fmt.Printf("seeded %s: %d rows in %s\n", a.cfg.Postgres.Schema, st.Total, st.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().IntVar(&scale, "scale", 1, "size multiplier (1 ≈ 4,400 rows)")
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed: same seed and scale, same rows")
	return cmd
}

func generateCmd(a *app) *cobra.Command {
	var rate float64
	var seed int64
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate continuous realistic traffic on the source database",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			db, err := a.pool(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			g, err := shop.NewGenerator(db, shop.GeneratorConfig{Schema: a.cfg.Postgres.Schema, Rate: rate, Seed: seed}, a.log)
			if err != nil {
				return err
			}
			err = g.Run(ctx)
			fmt.Println(formatKinds(g.Stats()))
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	cmd.Flags().Float64Var(&rate, "rate", 20, "transactions per second (0: as fast as possible)")
	cmd.Flags().Int64Var(&seed, "seed", time.Now().UnixNano(), "random seed")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	return cmd
}

func formatKinds(stats map[shop.Kind]int64) string {
	var parts []string
	for _, k := range shop.Kinds() {
		if n := stats[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, n))
		}
	}
	return "generated: " + strings.Join(parts, " ")
}

func queryCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "query SQL",
		Short: "Run a SQL query on the embedded DuckDB warehouse (while no other process has it open)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.cfg.Warehouse.Kind != "duckdb" {
				return fmt.Errorf("query works on the duckdb warehouse; use BigQuery's own console for %s", a.cfg.Warehouse.Kind)
			}
			return printQuery(cmd.Context(), a, args[0])
		},
	}
}

func ddlCmd(a *app) *cobra.Command {
	var dialect string
	cmd := &cobra.Command{
		Use:   "ddl",
		Short: "Print the DDL of the whole star schema",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dialect != "bigquery" {
				return fmt.Errorf("dialect %q: only bigquery is printed (DuckDB tables are created by the pipelines)", dialect)
			}
			for _, t := range starTables() {
				fmt.Println(bigquery.DDL(a.cfg.Warehouse.BigQueryDataset, t))
				fmt.Println()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dialect, "dialect", "bigquery", "bigquery")
	return cmd
}

// starTables lists every warehouse table of the star schema.
func starTables() []sinks.Table {
	out := []sinks.Table{dimensions.DateTable()}
	for _, d := range dimensions.All() {
		out = append(out, d.Table())
	}
	for _, f := range facts.All() {
		out = append(out, f.Table())
	}
	return out
}

func dagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dag",
		Short: "Print the pipeline DAG (upstream → downstream)",
		Run:   func(*cobra.Command, []string) { fmt.Print(dagText()) },
	}
}

func configCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (secrets masked)",
		Run:   func(*cobra.Command, []string) { fmt.Print(a.cfg.Redacted()) },
	}
}

func printTable(cols []string, rows [][]any) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = formatCell(v)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

func verifyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Reconcile the source with the warehouse; exits non-zero on any difference",
		Long: `verify checks that every source order item is in fact_sales exactly once with its order's
status, that each fact row references the dimension versions valid at its position, and that
the current members of every dimension equal the source rows. Run it once the pipelines have
caught up (watermarks past the last commit); stop starstream first when the warehouse is DuckDB.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.cfg.Warehouse.Kind != "duckdb" {
				return fmt.Errorf("verify reads the duckdb warehouse; %s is not supported yet", a.cfg.Warehouse.Kind)
			}
			ctx := cmd.Context()
			db, err := a.pool(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			wh, err := duckdb.Open(a.cfg.Warehouse.DuckDBPath, a.log)
			if err != nil {
				return fmt.Errorf("open warehouse %s (stop the running starstream first: DuckDB allows one process): %w", a.cfg.Warehouse.DuckDBPath, err)
			}
			defer wh.Close()
			rep, err := verify.Run(ctx, db, a.cfg.Postgres.Schema, wh, dimensions.All())
			if err != nil {
				return err
			}
			rep.Print(os.Stdout)
			if n := rep.Differences(); n > 0 {
				return fmt.Errorf("%d differences between source and warehouse", n)
			}
			return nil
		},
	}
}
