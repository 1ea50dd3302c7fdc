package bigquery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"cloud.google.com/go/bigquery/storage/managedwriter"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/starstream/starstream/sinks"
)

// chunk is the rows of one AppendRows request and their indexes in the batch.
type chunk struct {
	rows [][]byte
	idx  []int
}

// Write sends rows as CDC changes on the table's default stream and returns when
// BigQuery acknowledged every request. Rows the sink or BigQuery refuses come
// back as RowErrors while the others are written. A failure of the whole batch
// wraps sinks.ErrTransient when retrying may help (unavailable, throttled,
// connection lost); other errors are terminal. Retrying a batch that partly
// landed is safe: changes are keyed and ordered by _CHANGE_SEQUENCE_NUMBER.
func (w *Writer) Write(ctx context.Context, table string, rows []sinks.Row) ([]sinks.RowError, error) {
	w.mu.Lock()
	st, ok := w.tables[table]
	closed := w.closed
	var snap tableState
	if ok {
		snap = *st
	}
	w.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s was never ensured by this writer", sinks.ErrUnknownTable, table)
	}
	if len(rows) == 0 {
		return nil, nil
	}

	var rowErrs []sinks.RowError
	enc, idx := encodeRows(snap.schema, snap.pk, rows, func(i int, err error) {
		rowErrs = append(rowErrs, sinks.RowError{Index: i, Reason: err.Error()})
	})
	budget := w.cfg.maxRequestBytes() - proto.Size(snap.schema.descriptor) - 4096
	enc, idx = dropOversized(enc, idx, budget, func(i int, err error) {
		rowErrs = append(rowErrs, sinks.RowError{Index: i, Reason: err.Error()})
	})
	pending := split(enc, idx, budget)

	var opts []managedwriter.AppendOption
	if snap.schema != snap.first {
		// The table gained columns since the stream opened: send the new writer
		// schema with these appends; managedwriter reconnects to carry it.
		opts = append(opts, managedwriter.UpdateSchemaDescriptor(snap.schema.descriptor))
	}
	var failure error
	for len(pending) > 0 {
		results := make([]*managedwriter.AppendResult, len(pending))
		for i, c := range pending {
			res, err := snap.stream.AppendRows(ctx, c.rows, opts...)
			if err != nil {
				failure = worse(failure, err)
				continue
			}
			results[i] = res
		}
		var retry []chunk
		for i, res := range results {
			if res == nil {
				continue
			}
			resp, err := res.FullResponse(ctx)
			if err == nil {
				continue
			}
			if re := resp.GetRowErrors(); len(re) > 0 {
				// "If a request failed due to corrupted rows, no rows in the batch will
				// be appended. The API will return row level error info, so that the
				// caller can remove the bad rows and retry the request."
				// (AppendRowsResponse.row_errors)
				bad := map[int64]string{}
				for _, e := range re {
					bad[e.GetIndex()] = e.GetMessage()
				}
				var again chunk
				for j, r := range pending[i].rows {
					if msg, refused := bad[int64(j)]; refused {
						rowErrs = append(rowErrs, sinks.RowError{Index: pending[i].idx[j], Reason: "refused by BigQuery: " + msg})
						continue
					}
					again.rows = append(again.rows, r)
					again.idx = append(again.idx, pending[i].idx[j])
				}
				if len(again.rows) < len(pending[i].rows) { // some rows refused: send the rest
					if len(again.rows) > 0 {
						retry = append(retry, again)
					}
					continue
				}
			}
			failure = worse(failure, err)
		}
		pending = retry
	}
	slices.SortFunc(rowErrs, func(a, b sinks.RowError) int { return a.Index - b.Index })
	if failure != nil {
		return rowErrs, fmt.Errorf("write %s: %w", table, classify(failure))
	}
	return rowErrs, nil
}

// encodeRows serializes the rows into one buffer; refused rows are reported and skipped.
func encodeRows(rs *rowSchema, pk []string, rows []sinks.Row, refuse func(int, error)) ([][]byte, []int) {
	buf := make([]byte, 0, 64*len(rows))
	ends := make([]int, 0, len(rows))
	idx := make([]int, 0, len(rows))
	for i, r := range rows {
		next, err := rs.encode(buf, r, pk)
		if err != nil {
			refuse(i, err)
			continue
		}
		buf = next
		ends = append(ends, len(buf))
		idx = append(idx, i)
	}
	enc := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		enc[i] = buf[start:end:end]
		start = end
	}
	return enc, idx
}

// dropOversized refuses rows that could not fit in any AppendRows request.
func dropOversized(enc [][]byte, idx []int, budget int, refuse func(int, error)) ([][]byte, []int) {
	keep := 0
	for i, r := range enc {
		if len(r) > budget {
			refuse(idx[i], fmt.Errorf("row of %d bytes exceeds the %d bytes an AppendRows request can carry", len(r), budget))
			continue
		}
		enc[keep], idx[keep] = r, idx[i]
		keep++
	}
	return enc[:keep], idx[:keep]
}

// split groups rows into requests of at most budget bytes of row data (each row
// costs its length plus the tag and length prefix of the repeated field).
func split(enc [][]byte, idx []int, budget int) []chunk {
	var out []chunk
	var cur chunk
	size := 0
	for i, r := range enc {
		n := 1 + protowire.SizeVarint(uint64(len(r))) + len(r)
		if len(cur.rows) > 0 && size+n > budget {
			out = append(out, cur)
			cur, size = chunk{}, 0
		}
		cur.rows = append(cur.rows, r)
		cur.idx = append(cur.idx, idx[i])
		size += n
	}
	if len(cur.rows) > 0 {
		out = append(out, cur)
	}
	return out
}

// worse keeps the error that matters most: a terminal error over a transient one.
func worse(cur, next error) error {
	if cur == nil || (isTransient(cur) && !isTransient(next)) {
		return next
	}
	return cur
}

// classify wraps err in sinks.ErrTransient when retrying may help.
func classify(err error) error {
	if err == nil || errors.Is(err, sinks.ErrTransient) || !isTransient(err) {
		return err
	}
	return fmt.Errorf("%w: %w", sinks.ErrTransient, err)
}

// isTransient: lost connections and the gRPC codes managedwriter itself treats
// as retryable (UNAVAILABLE, ABORTED, INTERNAL, DEADLINE_EXCEEDED, and CANCELED
// for a connection it tore down), plus RESOURCE_EXHAUSTED (throttling) and the
// REST statuses 429 and 5xx. The caller's own cancellation is not transient.
func isTransient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if isEOF(err) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal,
			codes.DeadlineExceeded, codes.Canceled:
			return true
		}
		return false
	}
	for _, code := range []int{429, 500, 502, 503, 504} {
		if hasStatus(err, code) {
			return true
		}
	}
	return false
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }
