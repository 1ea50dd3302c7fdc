package capture

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Several capture processes may run for one slot: one leads, the others wait.
// Leadership is a PostgreSQL session advisory lock keyed by the slot name,
// held by a dedicated connection: it is released the moment the leader's
// process or connection dies, and a standby polling for it takes over. The
// slot itself admits one walsender at a time, a second fence.

// leaderPoll is how often a standby tries the lock, and how often a leader
// checks that it still holds it (its connection is alive).
const leaderPoll = time.Second

// lead blocks until this process holds the slot's lock, and returns the
// connection holding it. The caller must stop writing as soon as the
// returned channel is closed (the connection broke: the lock is gone), and
// close the connection when done.
func (c *Capture) lead(ctx context.Context) (*pgx.Conn, <-chan error, error) {
	var conn *pgx.Conn
	waiting := false
	for {
		var err error
		if conn == nil {
			if conn, err = c.connect(ctx); err != nil {
				return nil, nil, err
			}
		}
		var got bool
		err = conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('starstream.capture'), hashtext($1))`, c.cfg.Slot).Scan(&got)
		if err != nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil, nil, fmt.Errorf("take leadership of slot %s: %w", c.cfg.Slot, err)
		}
		if got {
			break
		}
		if !waiting {
			c.log.Info("standby: another capture process leads this slot; waiting to take over")
			waiting = true
		}
		select {
		case <-ctx.Done():
			conn.Close(context.WithoutCancel(ctx))
			return nil, nil, ctx.Err()
		case <-time.After(leaderPoll):
		}
	}
	c.log.Info("leading the slot")
	lost := make(chan error, 1)
	go func() {
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, leaderPoll)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				lost <- fmt.Errorf("lost leadership of slot %s (lock connection: %w)", c.cfg.Slot, err)
				return
			}
		}
	}()
	return conn, lost, nil
}
