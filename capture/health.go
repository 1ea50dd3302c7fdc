package capture

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/stream"
)

// healthEvery is how often the slot's row is sampled for the lag metrics.
const healthEvery = 2 * time.Second

// walSample remembers when the server's WAL reached a position, to turn the
// slot's byte lag into a time lag.
type walSample struct {
	at  time.Time
	lsn stream.LSN
}

// watchSlot samples pg_replication_slots until ctx ends and publishes the
// slot's health to the metrics. A failed sample is logged and retried: health
// reporting never stops capture.
func (c *Capture) watchSlot(ctx context.Context) {
	if c.metrics == nil {
		return
	}
	var samples []walSample
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	var db *pgx.Conn
	defer func() {
		if db != nil {
			db.Close(context.WithoutCancel(ctx))
		}
	}()
	for {
		var h slotHealth
		var cur stream.LSN
		var err error
		if db == nil {
			db, err = c.connect(ctx)
		}
		if err == nil {
			h, cur, err = sampleSlot(ctx, db, c.cfg.Slot)
			if err != nil {
				db.Close(context.WithoutCancel(ctx))
				db = nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Debug("sample slot health", "error", err)
		} else if h.valid {
			now := time.Now()
			samples = append(samples, walSample{now, cur})
			h.lagSeconds, samples = timeLag(samples, h.confirmed, now)
			c.metrics.mu.Lock()
			c.metrics.slot = h
			c.metrics.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// timeLag returns how long ago the WAL reached confirmed (by the samples), and
// the samples still needed for later calls.
func timeLag(samples []walSample, confirmed stream.LSN, now time.Time) (float64, []walSample) {
	last := samples[len(samples)-1]
	if confirmed >= last.lsn {
		return 0, samples[len(samples)-1:]
	}
	// The newest sample at or below confirmed: the WAL was there at that time,
	// and went past confirmed before the next one.
	i := len(samples) - 1
	for i > 0 && samples[i].lsn > confirmed {
		i--
	}
	lag := now.Sub(samples[i].at).Seconds()
	const keep = 4096 // about two hours at healthEvery
	if i > 0 {
		samples = samples[i:]
	}
	if len(samples) > keep {
		samples = samples[len(samples)-keep:]
	}
	return lag, samples
}

func sampleSlot(ctx context.Context, db *pgx.Conn, slot string) (slotHealth, stream.LSN, error) {
	var cur, confirmed string
	var walStatus *string
	var safe *int64
	var lag int64
	err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, coalesce(confirmed_flush_lsn, '0/0')::text,
		coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8, wal_status, safe_wal_size
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&cur, &confirmed, &lag, &walStatus, &safe)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotHealth{}, 0, nil // not created yet, or lost: capture itself reports that
	}
	if err != nil {
		return slotHealth{}, 0, err
	}
	h := slotHealth{valid: true, lagBytes: max(lag, 0), walStatus: deref(walStatus), safeWAL: -1}
	if safe != nil {
		h.safeWAL = *safe
	}
	if h.confirmed, err = stream.ParseLSN(confirmed); err != nil {
		return h, 0, err
	}
	curLSN, err := stream.ParseLSN(cur)
	return h, curLSN, err
}
