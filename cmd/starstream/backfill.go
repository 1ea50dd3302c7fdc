package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starstream/starstream/capture"
)

// captureConfig is the configuration of the configured source's capture, for
// the commands that talk to it through PostgreSQL.
func (a *app) captureConfig(slot string) capture.Config {
	if slot == "" {
		slot = a.cfg.Postgres.Slot
	}
	return capture.Config{DSN: a.cfg.Postgres.DSN, Slot: slot, Publication: a.cfg.Postgres.Publication,
		Schemas: []string{a.cfg.Postgres.Schema}, Brokers: a.cfg.Kafka.Brokers, KafkaSecurity: a.kafka}
}

// withCaptureSubcommands adds `capture reset` under the capture command.
func withCaptureSubcommands(a *app, c *cobra.Command) *cobra.Command {
	c.AddCommand(captureResetCmd(a))
	return c
}

func captureResetCmd(a *app) *cobra.Command {
	var slot string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Drop capture's replication slot and forget its snapshot, so that the next start takes a new one",
		Long: `reset is the recovery for a lost or invalidated replication slot (capture stops with an error
that names this command). It drops the slot if it still exists (stop every capture process
first: an active slot cannot be dropped), marks its initial snapshot as not done in the state
table and forgets its snapshot and backfill progress. The publication is kept. The next
capture start creates the slot again and writes a new snapshot of every published table,
each table preceded by a truncate event so that rows deleted meanwhile do not linger.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := a.captureConfig(slot)
			if err := capture.Reset(cmd.Context(), cfg); err != nil {
				return err
			}
			fmt.Printf("slot %s reset: the next capture start takes a new snapshot\n", cfg.Slot)
			return nil
		},
	}
	cmd.Flags().StringVar(&slot, "slot", "", "replication slot (default: postgres.slot of the configuration)")
	return cmd
}

func backfillCmd(a *app) *cobra.Command {
	var table, slot string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "backfill --table T",
		Short: "Re-read one table into Kafka while capture keeps streaming (DBLog-style, no locks)",
		Long: `backfill asks the running capture to re-read a table and publish every row again as a snapshot
read ("r"), while it keeps streaming; nothing is locked and streaming does not pause.

How the request reaches capture: this command inserts a row (kind 'backfill') into capture's
signal table (public.starstream_signal, created by capture at its first start and part of its
publication). Capture sees the row in the replication stream, records a job in
public.starstream_capture_state_progress and reads the table in chunks of primary-key order.
Each chunk is read between a low- and a high-watermark row that capture writes to the signal
table: keys that change while the chunk is read are left to the stream, the rest is published
at the high watermark's position. So every backfilled row is newer than every earlier change of
its key and older than every later one: consumers apply it as an ordinary upsert. If capture is
not running, the request waits in the slot's WAL and runs when it starts; a capture restart
resumes the job after its last acknowledged chunk.

The command prints the job name and, with --wait (the default), the progress until the job is
done. Needs INSERT on the signal table and SELECT on the progress table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if table == "" {
				return fmt.Errorf("--table is required")
			}
			if !strings.Contains(table, ".") {
				table = a.cfg.Postgres.Schema + "." + table
			}
			ctx := cmd.Context()
			cfg := a.captureConfig(slot)
			job, err := capture.RequestBackfill(ctx, cfg, table)
			if err != nil {
				return err
			}
			fmt.Printf("backfill of %s requested from slot %s: job %s\n", table, cfg.Slot, job)
			if !wait {
				return nil
			}
			return waitBackfill(ctx, cfg, job, timeout)
		},
	}
	cmd.Flags().StringVar(&table, "table", "", "table to re-read: schema.table, or a table of postgres.schema")
	cmd.Flags().StringVar(&slot, "slot", "", "replication slot of the capture to ask (default: postgres.slot)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the backfill is done, printing its progress")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: wait until done)")
	return cmd
}

func waitBackfill(ctx context.Context, cfg capture.Config, job string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Time{}
	for {
		st, err := capture.Backfill(ctx, cfg, job)
		if err != nil {
			return err
		}
		switch {
		case st.Done && st.Error != "":
			return fmt.Errorf("backfill %s: %s", job, st.Error)
		case st.Done:
			fmt.Printf("backfill %s of %s done: %d rows\n", job, st.Table, st.Rows)
			return nil
		case time.Since(last) >= 5*time.Second:
			last = time.Now()
			if st.Seen {
				fmt.Printf("backfill %s of %s: %d of about %d rows\n", job, st.Table, st.Rows, st.Estimate)
			} else {
				fmt.Printf("backfill %s: waiting for capture of slot %s to pick the request up\n", job, cfg.Slot)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for backfill %s (it goes on in capture): %w", job, ctx.Err())
		case <-tick.C:
		}
	}
}
