package bigquery_test

import (
	"context"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/starstream/starstream/sinks"
	"github.com/starstream/starstream/sinks/bigquery"
	"github.com/starstream/starstream/sinks/bigquery/bqtest"
)

func ordersTable() sinks.Table {
	return sinks.Table{
		Name:        "orders",
		Description: "orders mirrored from shop.orders",
		Columns: []sinks.Column{
			{Name: "order_id", Type: sinks.Int64, Description: "source key"},
			{Name: "status", Type: sinks.String},
			{Name: "amount", Type: sinks.Numeric, Nullable: true},
			{Name: "ordered_at", Type: sinks.Timestamp},
		},
		PrimaryKey:  []string{"order_id"},
		PartitionBy: "ordered_at",
		ClusterBy:   []string{"status"},
	}
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func orderRow(id int64, status string, lsn uint64) sinks.Row {
	return sinks.Row{Op: sinks.Upsert, Pos: sinks.Position{LSN: lsn}, Values: map[string]any{
		"order_id": id, "status": status, "amount": big.NewRat(id*100+5, 100), "ordered_at": t0.Add(time.Duration(id) * time.Second),
	}}
}

func statuses(t *testing.T, f *fixture) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	for _, r := range f.rows(t, "orders") {
		out[r["order_id"].(int64)] = r["status"].(string)
	}
	return out
}

func fastRetry() sinks.RetryPolicy {
	return sinks.RetryPolicy{Initial: time.Millisecond, Max: 10 * time.Millisecond, Attempts: 10}
}

func TestEnsureTableCreatesDatasetAndTable(t *testing.T) {
	t.Parallel()
	srv := bqtest.New(t)
	cfg := config(srv)
	cfg.MaxStaleness = 15 * time.Minute
	w, err := bigquery.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	ds, ok := srv.Dataset(project, dataset)
	if !ok || ds.Location != "EU" {
		t.Fatalf("dataset = %+v, want one in EU", ds)
	}
	md, ok := srv.Table(project, dataset, "orders")
	if !ok {
		t.Fatal("table not created")
	}
	if pk := md.TableConstraints.PrimaryKey.Columns; !slices.Equal(pk, []string{"order_id"}) {
		t.Errorf("primary key %v", pk)
	}
	if tp := md.TimePartitioning; tp == nil || tp.Type != "DAY" || tp.Field != "ordered_at" {
		t.Errorf("time partitioning %+v", tp)
	}
	if c := md.Clustering; c == nil || !slices.Equal(c.Fields, []string{"status"}) {
		t.Errorf("clustering %+v", c)
	}
	if md.Description != "orders mirrored from shop.orders" || md.Schema.Fields[0].Description != "source key" {
		t.Errorf("descriptions %q, %q", md.Description, md.Schema.Fields[0].Description)
	}
	if md.Schema.Fields[1].Mode != "REQUIRED" || md.Schema.Fields[2].Mode == "REQUIRED" {
		t.Errorf("modes %s, %s", md.Schema.Fields[1].Mode, md.Schema.Fields[2].Mode)
	}
	if md.MaxStaleness != "0-0 0 0:15:0" {
		t.Errorf("max staleness %q", md.MaxStaleness)
	}
	// Ensuring again changes nothing.
	if err := w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	if again, _ := srv.Table(project, dataset, "orders"); again.Etag != md.Etag {
		t.Errorf("second EnsureTable modified the table (etag %s → %s)", md.Etag, again.Etag)
	}
	// A new max staleness is applied to the existing table.
	cfg.MaxStaleness = time.Hour
	w2, err := bigquery.New(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := w2.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	if again, _ := srv.Table(project, dataset, "orders"); again.MaxStaleness != "0-0 0 1:0:0" {
		t.Errorf("max staleness after reconfiguring: %q", again.MaxStaleness)
	}
}

// TestSchemaEvolution adds a nullable column and writes it through the same
// Writer: the new writer schema travels with the next appends.
func TestSchemaEvolution(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	ctx := t.Context()
	v1 := ordersTable()
	if err := f.w.EnsureTable(ctx, v1); err != nil {
		t.Fatal(err)
	}
	write(t, f.w, "orders", orderRow(1, "placed", 10))

	v2 := v1
	v2.Columns = append(slices.Clone(v1.Columns), sinks.Column{Name: "coupon", Type: sinks.String, Nullable: true, Description: "added later"})
	if err := f.w.EnsureTable(ctx, v2); err != nil {
		t.Fatal(err)
	}
	r := orderRow(2, "placed", 20)
	r.Values["coupon"] = "SPRING"
	write(t, f.w, "orders", r)
	write(t, f.w, "orders", orderRow(3, "placed", 30)) // without the new column: NULL

	got := map[int64]any{}
	for _, row := range f.rows(t, "orders") {
		got[row["order_id"].(int64)] = row["coupon"]
	}
	if got[1] != nil || got[2] != "SPRING" || got[3] != nil || len(got) != 3 {
		t.Fatalf("coupons %v", got)
	}
	// A NOT NULL column cannot be added to an existing BigQuery table.
	v3 := v2
	v3.Columns = append(slices.Clone(v2.Columns), sinks.Column{Name: "required_later", Type: sinks.String})
	if err := f.w.EnsureTable(ctx, v3); !errors.Is(err, sinks.ErrInvalidTable) {
		t.Fatalf("adding a NOT NULL column: %v, want ErrInvalidTable", err)
	}
}

// TestWriteSplitsRequests writes a batch larger than one 10 MB request: the
// double refuses any request over the limit, so every row landing proves the split.
func TestWriteSplitsRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1000)
	var rows []sinks.Row
	for id := int64(1); id <= 25_000; id++ { // ~25 MB
		rows = append(rows, orderRow(id, big, 1))
	}
	write(t, f.w, "orders", rows...)
	if n := len(f.rows(t, "orders")); n != len(rows) {
		t.Fatalf("%d rows landed, want %d", n, len(rows))
	}
	if appends, _ := f.srv.Stats(); appends < 3 {
		t.Fatalf("%d AppendRows requests for ~25 MB, want at least 3", appends)
	}
}

// TestDroppedConnectionThenSuccess: the append lands but its acknowledgement is
// lost with the connection. The write fails transiently; writing again is
// harmless (CDC by key and sequence) and the stream reconnects.
func TestDroppedConnectionThenSuccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	batch := []sinks.Row{orderRow(1, "placed", 10), orderRow(2, "placed", 10)}
	f.srv.DropNextAppends(1)
	if _, err := f.w.Write(t.Context(), "orders", batch); !sinks.IsTransient(err) {
		t.Fatalf("write on a dropped connection: %v, want transient", err)
	}
	write(t, f.w, "orders", batch...)
	write(t, f.w, "orders", orderRow(1, "paid", 20))
	if got := statuses(t, f); len(got) != 2 || got[1] != "paid" || got[2] != "placed" {
		t.Fatalf("rows %v", got)
	}

	// Through the retry decorator a dropped connection is invisible.
	f.srv.DropNextAppends(2)
	r := sinks.WithRetry(f.w, fastRetry(), nil)
	write(t, r, "orders", orderRow(2, "shipped", 30))
	if got := statuses(t, f); got[2] != "shipped" {
		t.Fatalf("rows %v", got)
	}
	if _, conns := f.srv.Stats(); conns < 3 {
		t.Fatalf("%d connections, want reconnects after each drop", conns)
	}
}

func TestResourceExhaustedThenSuccess(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	f.srv.FailNextAppends(codes.ResourceExhausted, 1)
	_, err := f.w.Write(t.Context(), "orders", []sinks.Row{orderRow(1, "placed", 10)})
	if !sinks.IsTransient(err) || !strings.Contains(err.Error(), "ResourceExhausted") {
		t.Fatalf("throttled write: %v, want transient RESOURCE_EXHAUSTED", err)
	}
	f.srv.FailNextAppends(codes.ResourceExhausted, 3)
	write(t, sinks.WithRetry(f.w, fastRetry(), nil), "orders", orderRow(1, "placed", 10))

	f.srv.FailNextConnections(2) // the connection itself ends with UNAVAILABLE
	write(t, sinks.WithRetry(f.w, fastRetry(), nil), "orders", orderRow(1, "paid", 20))
	if got := statuses(t, f); got[1] != "paid" {
		t.Fatalf("rows %v", got)
	}
}

// TestTerminalErrorNotRetried: a table that lost its primary key refuses CDC
// rows. That is terminal: even a retry decorator without an attempt limit
// returns at once, with an error that says why.
func TestTerminalErrorNotRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.SetPrimaryKey(project, dataset, "orders", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r := sinks.WithRetry(f.w, sinks.RetryPolicy{Initial: time.Millisecond}, nil) // retries until ctx is done
	before, _ := f.srv.Stats()
	_, err := r.Write(ctx, "orders", []sinks.Row{orderRow(1, "placed", 10)})
	if err == nil || sinks.IsTransient(err) || ctx.Err() != nil {
		t.Fatalf("write to a table without primary key: %v (ctx %v), want a terminal error", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "primary key") {
		t.Errorf("error does not say why: %v", err)
	}
	if after, _ := f.srv.Stats(); after-before != 1 {
		t.Errorf("%d appends, want exactly 1 (no retries)", after-before)
	}
	// Ensuring the table again notices the missing key.
	if err := f.w.EnsureTable(t.Context(), ordersTable()); !errors.Is(err, sinks.ErrInvalidTable) {
		t.Errorf("EnsureTable on a table without its key: %v, want ErrInvalidTable", err)
	}
}

// TestRowsRefusedByServer: BigQuery refuses a request with bad rows as a whole
// and lists them; the Writer reports them and writes the rest.
func TestRowsRefusedByServer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	f.srv.RefuseRows(func(v map[string]any) bool { return v["status"] == "poison" }, "value rejected")
	batch := []sinks.Row{orderRow(1, "placed", 10), orderRow(2, "poison", 10), orderRow(3, "placed", 10), orderRow(4, "poison", 10)}
	rowErrs, err := f.w.Write(t.Context(), "orders", batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(rowErrs) != 2 || rowErrs[0].Index != 1 || rowErrs[1].Index != 3 || !strings.Contains(rowErrs[0].Reason, "value rejected") {
		t.Fatalf("row errors %v, want indexes 1 and 3", rowErrs)
	}
	if got := statuses(t, f); len(got) != 2 || got[1] != "placed" || got[3] != "placed" {
		t.Fatalf("rows %v", got)
	}
	// Every row refused: row errors, not a failed batch.
	rowErrs, err = f.w.Write(t.Context(), "orders", []sinks.Row{orderRow(5, "poison", 10), orderRow(6, "poison", 10)})
	if err != nil || len(rowErrs) != 2 {
		t.Fatalf("all rows refused: %v %v", rowErrs, err)
	}
}

func TestCredentialsFile(t *testing.T) {
	t.Parallel()
	const secret = "-----BEGIN PRIVATE KEY-----\\nTOPSECRETKEYMATERIAL\\n-----END PRIVATE KEY-----"
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv := bqtest.New(t)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.json"), "does not exist"},
		{"not json", file("broken.json", `{"private_key": "`+secret+`", oops`), "not valid JSON"},
		{"not a service account", file("user.json", `{"type": "authorized_user", "client_secret": "`+secret+`", "refresh_token": "TOPSECRETKEYMATERIAL"}`), "not a service_account key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(srv)
			cfg.CredentialsFile = tc.path
			_, err := bigquery.New(t.Context(), cfg, nil)
			if !errors.Is(err, bigquery.ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q should say %q and name the file", err, tc.want)
			}
			if strings.Contains(err.Error(), "TOPSECRET") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := bigquery.Config{Project: "p", Dataset: "shop_dw"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mutate := range map[string]func(*bigquery.Config){
		"no project":         func(c *bigquery.Config) { c.Project = "" },
		"no dataset":         func(c *bigquery.Config) { c.Dataset = "" },
		"dataset with dash":  func(c *bigquery.Config) { c.Dataset = "shop-dw" },
		"negative staleness": func(c *bigquery.Config) { c.MaxStaleness = -time.Second },
		"request too large":  func(c *bigquery.Config) { c.MaxRequestBytes = 10_000_000 },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, bigquery.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

func TestNumericBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []byte
	}{
		{"0", []byte{0x00}},
		{"1", []byte{0x00, 0xca, 0x9a, 0x3b}},  // 1e9 = 0x3b9aca00
		{"-1", []byte{0x00, 0x36, 0x65, 0xc4}}, // -1e9
		{"0.000000001", []byte{0x01}},
		{"-0.000000001", []byte{0xff}},
	} {
		r, _ := new(big.Rat).SetString(tc.in)
		got, err := bigquery.NumericBytes(r)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("NumericBytes(%s) = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"1/3", "0.0000000001", "100000000000000000000000000000"} {
		r, _ := new(big.Rat).SetString(bad)
		if _, err := bigquery.NumericBytes(r); err == nil {
			t.Errorf("NumericBytes(%s) accepted", bad)
		}
	}
}

func write(t *testing.T, s sinks.Sink, table string, rows ...sinks.Row) {
	t.Helper()
	rowErrs, err := s.Write(t.Context(), table, rows)
	if err != nil || len(rowErrs) > 0 {
		t.Fatalf("Write: %v %v", err, rowErrs)
	}
}

// TestOpenRetries: Open wraps the Writer in the retry decorator.
func TestOpenRetries(t *testing.T) {
	t.Parallel()
	srv := bqtest.New(t)
	cfg := config(srv)
	cfg.Retry = fastRetry()
	s, err := bigquery.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	srv.FailNextAppends(codes.Unavailable, 2)
	write(t, s, "orders", orderRow(1, "placed", 10))
	if rows, _ := srv.Rows(project, dataset, "orders"); len(rows) != 1 {
		t.Fatalf("rows %v", rows)
	}
}

// TestWriteHonoursContext: a slow server and a short deadline end the write
// with the context's error, which is not transient (the caller asked to stop).
func TestWriteHonoursContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	f.srv.SetAppendDelay(2 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.w.Write(ctx, "orders", []sinks.Row{orderRow(1, "placed", 10)})
	if !errors.Is(err, context.DeadlineExceeded) || sinks.IsTransient(err) {
		t.Fatalf("write past its deadline: %v, want DeadlineExceeded, not transient", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("write took %v after a 100ms deadline", d)
	}
	f.srv.SetAppendDelay(0)
}

// TestConcurrentWrites: one Writer shared by pipelines writing several tables.
func TestConcurrentWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	defer f.w.Close()
	tables := []string{"orders_a", "orders_b"}
	for _, name := range tables {
		tbl := ordersTable()
		tbl.Name = name
		if err := f.w.EnsureTable(t.Context(), tbl); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rows []sinks.Row
			for i := range 200 {
				id := int64(g*1000 + i)
				rows = append(rows, orderRow(id, "placed", uint64(id)))
			}
			if _, err := f.w.Write(t.Context(), tables[g%2], rows); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, name := range tables {
		if n := len(f.rows(t, name)); n != 800 {
			t.Fatalf("%s: %d rows, want 800", name, n)
		}
	}
}

func TestOversizedRowAndClose(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.w.EnsureTable(t.Context(), ordersTable()); err != nil {
		t.Fatal(err)
	}
	huge := orderRow(2, strings.Repeat("x", 11_000_000), 10)
	rowErrs, err := f.w.Write(t.Context(), "orders", []sinks.Row{orderRow(1, "placed", 10), huge})
	if err != nil || len(rowErrs) != 1 || rowErrs[0].Index != 1 {
		t.Fatalf("oversized row: %v %v, want one row error at index 1", rowErrs, err)
	}
	if err := f.w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.w.Write(t.Context(), "orders", []sinks.Row{orderRow(1, "placed", 10)}); !errors.Is(err, bigquery.ErrClosed) || sinks.IsTransient(err) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}
}
