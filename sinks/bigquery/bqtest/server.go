// Package bqtest is an in-process BigQuery test double: a gRPC BigQueryWrite
// service (the Storage Write API) and an HTTP server for the REST endpoints the
// cloud.google.com/go/bigquery client uses for datasets and tables. Clients talk
// to it through the real libraries (managedwriter, bigquery) over 127.0.0.1.
//
// It enforces the documented rules a sink relies on (CDC upserts by primary key
// and change sequence number, the request size limit, schema checks, stream
// offsets) and can inject faults. Each rule cites its documentation where it is
// implemented.
package bqtest

import (
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// MaxRequestBytes is the largest AppendRows request the double accepts.
// "The size of a single request must be less than 10 MB in size. Requests larger
// than this return an error, typically INVALID_ARGUMENT." (managedwriter
// ManagedStream.AppendRows doc; https://cloud.google.com/bigquery/quotas#write-api-limits).
// The double reads "10 MB" as 10,000,000 bytes, the stricter reading.
const MaxRequestBytes = 10_000_000

// Server is the test double. Create it with New; it stops when the test ends.
type Server struct {
	grpcSrv  *grpc.Server
	grpcAddr string
	http     *httptest.Server

	mu       sync.Mutex
	datasets map[string]*dataset // key project.dataset
	streams  map[string]*stream  // explicit (non-default) streams by name
	nextID   int
	arrival  uint64 // global arrival counter: orders changes without a sequence number
	faults   faults
	appends  int // AppendRows requests received (after faults)
	conns    int // AppendRows connections opened

	refuse       func(map[string]any) bool
	refuseReason string
}

type faults struct {
	failCode  codes.Code
	failN     int
	failMsg   string
	dropN     int
	delay     time.Duration
	streamErr int
}

// New starts the gRPC and HTTP servers on 127.0.0.1 with random ports and stops
// them in t.Cleanup.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatalf("bqtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a Server outside a test (benchmarks, examples). Call Close.
func Start() (*Server, error) {
	s := &Server{
		datasets: map[string]*dataset{},
		streams:  map[string]*stream{},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	// The gRPC default receive limit is 4 MB; the double must read requests up to
	// and beyond 10 MB itself to judge the documented limit.
	s.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	storagepb.RegisterBigQueryWriteServer(s.grpcSrv, &writeService{s: s})
	s.grpcAddr = lis.Addr().String()
	go s.grpcSrv.Serve(lis) //nolint:errcheck // Serve returns when Close stops it.
	s.http = httptest.NewServer(s.restHandler())
	return s, nil
}

// Close stops both servers.
func (s *Server) Close() {
	s.http.Close()
	s.grpcSrv.Stop()
}

// GRPCAddr is the host:port of the Storage Write API.
func (s *Server) GRPCAddr() string { return s.grpcAddr }

// URL is the base URL of the REST API.
func (s *Server) URL() string { return s.http.URL }

// WriteOptions are the client options that point managedwriter at the double.
// Without the insecure transport credentials the client dials TLS and hangs
// (FINDINGS.md, BigQuery Storage Write API).
func (s *Server) WriteOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.grpcAddr),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// RESTOptions are the client options that point the bigquery client at the double.
func (s *Server) RESTOptions() []option.ClientOption {
	return []option.ClientOption{
		option.WithEndpoint(s.http.URL),
		option.WithoutAuthentication(),
	}
}

// FailNextAppends makes the next n AppendRows requests fail with code (for
// example codes.Unavailable or codes.ResourceExhausted), reported in the
// response's error field: "If present, it indicates rows were not accepted into
// the system. Users can retry or continue with other append requests within the
// same connection." (AppendRowsResponse.error, storage.proto).
func (s *Server) FailNextAppends(code codes.Code, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.failCode, s.faults.failN = code, n
	s.faults.failMsg = ""
	if code == codes.ResourceExhausted {
		// The message managedwriter's retry predicate recognises as throttling.
		s.faults.failMsg = "Exceeds 'AppendRows throughput' quota (injected by bqtest)"
	}
}

// FailNextConnections makes the next n AppendRows requests end their whole
// connection with UNAVAILABLE before being applied, as a restarting frontend does.
func (s *Server) FailNextConnections(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.streamErr = n
}

// DropNextAppends makes the next n AppendRows requests be applied and then lose
// their connection before the response is sent: the client sees the stream end
// (io.EOF) and cannot know the rows landed, the at-least-once case.
func (s *Server) DropNextAppends(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.dropN = n
}

// SetAppendDelay delays every AppendRows response by d (0 to stop).
func (s *Server) SetAppendDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.delay = d
}

// Stats reports how many AppendRows requests and connections the double served.
func (s *Server) Stats() (appends, connections int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appends, s.conns
}

// RefuseRows makes the double refuse, as a per-row error with reason, every row
// for which refuse returns true, as BigQuery does for values it cannot store.
// It lets tests reach a client's row-error handling with rows the client itself
// accepts. Nil stops it.
func (s *Server) RefuseRows(refuse func(values map[string]any) bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse, s.refuseReason = refuse, reason
}

// SetPrimaryKey replaces a table's primary key constraint (nil removes it), as
// ALTER TABLE … DROP PRIMARY KEY would behind a writer's back.
func (s *Server) SetPrimaryKey(project, ds, name string, cols []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookupTable(project, ds, name)
	if err != nil {
		return err
	}
	t.meta.TableConstraints = nil
	if len(cols) > 0 {
		t.meta.TableConstraints = &bq.TableConstraints{PrimaryKey: &bq.TableConstraintsPrimaryKey{Columns: cols}}
	}
	t.touch()
	return nil
}
