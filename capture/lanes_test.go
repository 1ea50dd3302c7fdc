package capture_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/capture/capturetest"
	"github.com/starstream/starstream/stream"
	"github.com/starstream/starstream/stream/streamtest"
)

// writeOnly hides the writer's Enqueue: capture then writes synchronously,
// the path writer decorators (counting, gating) take.
type writeOnly struct{ capture.Writer }

// TestWritePaths: with one or several write lanes, pipelined (Enqueue) or
// synchronous (Write), and many small flushes, hot keys updated over and over,
// a truncate between transactions and a transaction larger than a chunk keep
// each key's order and nothing at or below an emitted watermark arrives
// later, and replaying the topic gives the table.
func TestWritePaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		lanes     int
		writeOnly bool
	}{{"one lane enqueue", 1, false}, {"three lanes enqueue", 3, false}, {"one lane write", 1, true}, {"three lanes write", 3, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := capturetest.Connect(t)
			schema := capturetest.NewSchema(t)
			tbl := pgx.Identifier{schema, "kv"}.Sanitize()
			exec(t, db, "CREATE TABLE "+tbl+" (k int PRIMARY KEY, v int NOT NULL)")
			exec(t, db, "INSERT INTO "+tbl+" SELECT g, 0 FROM generate_series(1, 30) g")
			cfg := capturetest.Config(t, schema)
			cfg.WriteLanes = tc.lanes
			cfg.ChunkEvents = 50
			cfg.MaxInFlight = 400
			w, codecs := capturetest.NewWriter(t)
			var cw capture.Writer = w
			if tc.writeOnly {
				cw = writeOnly{w}
			}
			run := capturetest.Start(t, cfg, cw)
			capturetest.Eventually(t, 60*time.Second, "slot active", func() bool {
				s, ok := capturetest.Slot(t, db, cfg.Slot)
				return ok && s.Active && s.ConfirmedFlush != 0 // listed and active already while being created
			})

			ctx := context.Background()
			rng := rand.New(rand.NewPCG(7, uint64(tc.lanes)))
			next := 31
			for i := 0; i < 200; i++ {
				switch {
				case i == 120:
					exec(t, db, "TRUNCATE "+tbl)
					exec(t, db, "INSERT INTO "+tbl+" SELECT g, 1000 FROM generate_series(1, 30) g")
				case i == 60:
					exec(t, db, "INSERT INTO "+tbl+" SELECT g, g FROM generate_series($1::int, $2::int) g", next, next+1999)
					next += 2000
				case i%3 == 0:
					// Several changes of the same hot keys in one transaction.
					err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
						for j := 0; j < 20; j++ {
							if _, err := tx.Exec(ctx, "UPDATE "+tbl+" SET v = v + 1 WHERE k = $1", 1+rng.IntN(30)); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				default:
					exec(t, db, "UPDATE "+tbl+" SET v = v + 1 WHERE k = $1", 1+rng.IntN(30))
				}
			}
			exec(t, db, "DELETE FROM "+tbl+" WHERE k % 7 = 0")
			fence := capturetest.Fence(t, db)
			topic := stream.Topic("cdc", schema, "kv")
			recs := capturetest.ReadUntil(t, topic, codecs, fence, 2*time.Minute)
			if err := run.Stop(); err != nil {
				t.Fatalf("run: %v", err)
			}
			v := streamtest.NewValidator()
			validate(v, topic, recs)
			v.Check(t)
			assertTable(t, db, tbl, replay(capturetest.Events(recs)))
			truncates := 0
			for _, r := range recs {
				if r.Marker == 0 && r.Event.Op == stream.OpTruncate {
					truncates++
				}
			}
			if truncates != 3 {
				t.Errorf("%d truncate records, want one in each of the 3 partitions", truncates)
			}
			t.Log(fmt.Sprintf("%d records", len(recs)))
		})
	}
}
