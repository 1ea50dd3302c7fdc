package bigquery_test

import (
	"sync"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/bigquery"
	"github.com/starstream/starstream/sinks/bigquery/bqtest"
	"github.com/starstream/starstream/sinks/sinkstest"
)

const (
	project = "starstream-test"
	dataset = "warehouse"
)

// fixture is one Writer against its own double.
type fixture struct {
	srv *bqtest.Server
	w   *bigquery.Writer
}

func config(srv *bqtest.Server) bigquery.Config {
	return bigquery.Config{
		Project:      project,
		Dataset:      dataset,
		Location:     "EU",
		WriteOptions: srv.WriteOptions(),
		RESTOptions:  srv.RESTOptions(),
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := bqtest.New(t)
	w, err := bigquery.New(t.Context(), config(srv), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &fixture{srv: srv, w: w}
}

func (f *fixture) rows(t *testing.T, table string) []map[string]any {
	t.Helper()
	rows, err := f.srv.Rows(project, dataset, table)
	if err != nil {
		t.Fatalf("rows of %s: %v", table, err)
	}
	return rows
}

// TestSink runs the shared acceptance suite. Each sink gets a fresh double (an
// empty warehouse); transient faults are UNAVAILABLE responses from the double.
func TestSink(t *testing.T) {
	var mu sync.Mutex
	servers := map[sinks.Sink]*bqtest.Server{}
	server := func(t *testing.T, s sinks.Sink) *bqtest.Server {
		mu.Lock()
		defer mu.Unlock()
		srv, ok := servers[s]
		if !ok {
			t.Fatalf("sink %T was not made by this harness", s)
		}
		return srv
	}
	sinkstest.Run(t, sinkstest.Harness{
		New: func(t *testing.T) sinks.Sink {
			f := newFixture(t)
			mu.Lock()
			servers[f.w] = f.srv
			mu.Unlock()
			return f.w
		},
		Rows: func(t *testing.T, s sinks.Sink, table string) []map[string]any {
			rows, err := server(t, s).Rows(project, dataset, table)
			if err != nil {
				t.Fatalf("rows of %s: %v", table, err)
			}
			return rows
		},
		FailNextWrites: func(t *testing.T, s sinks.Sink, n int) {
			// Each write of the suite's small batches is one AppendRows request.
			server(t, s).FailNextAppends(codes.Unavailable, n)
		},
		// The bulk table's rows are about 300 bytes: 40,000 of them are ~12 MB, more
		// than one 10 MB AppendRows request.
		MaxBatchRows: 40_000,
	})
}
