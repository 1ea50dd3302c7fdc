package bqtest_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"cloud.google.com/go/bigquery"
	storage "cloud.google.com/go/bigquery/storage/apiv1"
	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/starstream/starstream/sinks/bigquery/bqtest"
)

const (
	project = "p"
	dataset = "d"
)

// env is a double with a dataset and the raw Storage Write client.
type env struct {
	srv  *bqtest.Server
	rest *bigquery.Client
	raw  *storage.BigQueryWriteClient
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := bqtest.New(t)
	ctx := t.Context()
	rest, err := bigquery.NewClient(ctx, project, srv.RESTOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rest.Close() })
	if err := rest.Dataset(dataset).Create(ctx, &bigquery.DatasetMetadata{Location: "EU"}); err != nil {
		t.Fatal(err)
	}
	raw, err := storage.NewBigQueryWriteClient(ctx, srv.WriteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return &env{srv: srv, rest: rest, raw: raw}
}

// table creates table name (id INT64 NOT NULL, name STRING, doc JSON), with
// primary key id when keyed.
func (e *env) table(t *testing.T, name string, keyed bool) string {
	t.Helper()
	md := &bigquery.TableMetadata{Schema: bigquery.Schema{
		{Name: "id", Type: bigquery.IntegerFieldType, Required: true},
		{Name: "name", Type: bigquery.StringFieldType},
		{Name: "doc", Type: bigquery.JSONFieldType},
	}}
	if keyed {
		md.TableConstraints = &bigquery.TableConstraints{PrimaryKey: &bigquery.PrimaryKey{Columns: []string{"id"}}}
	}
	if err := e.rest.Dataset(dataset).Table(name).Create(t.Context(), md); err != nil {
		t.Fatal(err)
	}
	return "projects/p/datasets/d/tables/" + name
}

func field(name string, n int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
	return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ.Enum(),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()}
}

// cdcSchema is the writer schema of the test table plus the CDC pseudo-columns.
func cdcSchema(extra ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
	return &descriptorpb.DescriptorProto{Name: proto.String("row"), Field: append([]*descriptorpb.FieldDescriptorProto{
		field("id", 1, descriptorpb.FieldDescriptorProto_TYPE_INT64),
		field("name", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING),
		field("_CHANGE_TYPE", 3, descriptorpb.FieldDescriptorProto_TYPE_STRING),
		field("_CHANGE_SEQUENCE_NUMBER", 4, descriptorpb.FieldDescriptorProto_TYPE_STRING),
		field("doc", 5, descriptorpb.FieldDescriptorProto_TYPE_STRING),
	}, extra...)}
}

func plainSchema() *descriptorpb.DescriptorProto {
	return &descriptorpb.DescriptorProto{Name: proto.String("row"), Field: []*descriptorpb.FieldDescriptorProto{
		field("id", 1, descriptorpb.FieldDescriptorProto_TYPE_INT64),
		field("name", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING),
	}}
}

// row encodes a row of cdcSchema; empty strings are left out (NULL).
func row(id int64, name, changeType, seq string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(id))
	for _, f := range []struct {
		n protowire.Number
		v string
	}{{2, name}, {3, changeType}, {4, seq}} {
		if f.v != "" {
			b = protowire.AppendTag(b, f.n, protowire.BytesType)
			b = protowire.AppendString(b, f.v)
		}
	}
	return b
}

func withDoc(b []byte, doc string) []byte {
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendString(b, doc)
}

// conn is one AppendRows connection.
type conn struct {
	t      *testing.T
	stream storagepb.BigQueryWrite_AppendRowsClient
}

func (e *env) open(t *testing.T) *conn {
	t.Helper()
	s, err := e.raw.AppendRows(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.CloseSend() })
	return &conn{t: t, stream: s}
}

// send sends one request and returns its response (or the stream's error).
func (c *conn) send(stream string, schema *descriptorpb.DescriptorProto, rows [][]byte, offset *wrapperspb.Int64Value) (*storagepb.AppendRowsResponse, error) {
	c.t.Helper()
	data := &storagepb.AppendRowsRequest_ProtoData{Rows: &storagepb.ProtoRows{SerializedRows: rows}}
	if schema != nil {
		data.WriterSchema = &storagepb.ProtoSchema{ProtoDescriptor: schema}
	}
	req := &storagepb.AppendRowsRequest{WriteStream: stream, Offset: offset, Rows: &storagepb.AppendRowsRequest_ProtoRows{ProtoRows: data}}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return c.stream.Recv()
}

// mustAppend expects success.
func (c *conn) mustAppend(stream string, schema *descriptorpb.DescriptorProto, rows ...[]byte) *storagepb.AppendRowsResponse {
	c.t.Helper()
	resp, err := c.send(stream, schema, rows, nil)
	if err != nil || resp.GetError() != nil {
		c.t.Fatalf("append: %v %v %v", err, resp.GetError(), resp.GetRowErrors())
	}
	return resp
}

// expectCode expects an in-band error with code.
func expectCode(t *testing.T, resp *storagepb.AppendRowsResponse, err error, code codes.Code, contains string) {
	t.Helper()
	if err != nil {
		t.Fatalf("stream error %v, want an in-band %v", err, code)
	}
	if got := codes.Code(resp.GetError().GetCode()); got != code || !strings.Contains(resp.GetError().GetMessage(), contains) {
		t.Fatalf("response error %v, want %v containing %q", resp.GetError(), code, contains)
	}
}

func names(t *testing.T, e *env, table string) map[int64]any {
	t.Helper()
	rows, err := e.srv.Rows(project, dataset, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]any{}
	for _, r := range rows {
		out[r["id"].(int64)] = r["name"]
	}
	return out
}

func TestParseSequence(t *testing.T) {
	t.Parallel()
	// Up to four '/'-separated sections of at most 16 hex digits
	// (https://cloud.google.com/bigquery/docs/change-data-capture#manage_custom_ordering).
	for _, ok := range []string{"0", "FF", "ff/1", "FFFFFFFFFFFFFFFF/FFFFFFFFFFFFFFFF/0/1", "0000000000000001"} {
		if _, err := bqtest.ParseSequence(ok); err != nil {
			t.Errorf("ParseSequence(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "1//2", "1/2/3/4/5", "G", "-1", "1 ", "11111111111111111"} {
		if _, err := bqtest.ParseSequence(bad); err == nil {
			t.Errorf("ParseSequence(%q) accepted", bad)
		}
	}
	// Sections compare as numbers, not as text.
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"A", "9", 1}, {"10", "F", 1}, {"1/FF", "2/0", -1}, {"2/A", "2/A", 0}, {"2", "2/0", 0}, {"2", "2/1", -1},
		{"0000FF", "FF", 0},
	} {
		a, _ := bqtest.ParseSequence(tc.a)
		b, _ := bqtest.ParseSequence(tc.b)
		if got := a.Compare(b); got != tc.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestCDCSemantics: per key the greatest sequence number wins whatever the
// arrival order; ties and rows without a sequence number go to the later
// arrival; a delete leaves the key absent and beats older upserts.
func TestCDCSemantics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "cdc", true) + "/streams/_default"
	c := e.open(t)
	resp := c.mustAppend(stream, cdcSchema(),
		row(1, "v2", "UPSERT", "2"),
		row(1, "v1", "UPSERT", "1"),  // older: ignored
		row(2, "a", "UPSERT", "5/1"), // tie below: the later arrival wins
		row(2, "b", "UPSERT", "5/1"),
		row(3, "x", "UPSERT", "A"),
		row(3, "", "DELETE", "B"),
		row(3, "y", "UPSERT", "9"), // older than the delete: stays deleted
		row(4, "first", "UPSERT", ""),
		row(4, "second", "UPSERT", ""), // no sequence: arrival order
		row(5, "10", "UPSERT", "10"),
		row(5, "F", "UPSERT", "F"), // hex: 0x10 > 0xF
	)
	if off := resp.GetAppendResult().GetOffset(); off != nil {
		t.Errorf("default stream returned offset %v; it has none", off)
	}
	want := map[int64]any{1: "v2", 2: "b", 4: "second", 5: "10"}
	if got := names(t, e, "cdc"); !equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	// A newer upsert brings a deleted key back.
	c.mustAppend(stream, nil, row(3, "z", "UPSERT", "C"))
	if got := names(t, e, "cdc"); got[3] != "z" {
		t.Fatalf("rows %v", got)
	}
}

func equal(a, b map[int64]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestCDCPrerequisites: CDC needs the default stream and a primary key
// (https://cloud.google.com/bigquery/docs/change-data-capture#prerequisites).
func TestCDCPrerequisites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	unkeyed := e.table(t, "unkeyed", false)
	resp, err := e.open(t).send(unkeyed+"/streams/_default", cdcSchema(), [][]byte{row(1, "a", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "primary key")
	// Without _CHANGE_TYPE the same table takes plain appends.
	e.open(t).mustAppend(unkeyed+"/streams/_default", plainSchema(), row(1, "a", "", ""))

	keyed := e.table(t, "keyed", true)
	ws, err := e.raw.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{Parent: keyed, WriteStream: &storagepb.WriteStream{Type: storagepb.WriteStream_COMMITTED}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = e.open(t).send(ws.GetName(), cdcSchema(), [][]byte{row(1, "a", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "_default stream")
}

// TestRequestSizeLimit: "The size of a single request must be less than 10 MB"
// (https://cloud.google.com/bigquery/quotas#write-api-limits); larger ones fail
// with INVALID_ARGUMENT and nothing lands.
func TestRequestSizeLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "big", true) + "/streams/_default"
	payload := strings.Repeat("x", 1<<20)
	var rows [][]byte
	for i := range 10 {
		rows = append(rows, row(int64(i), payload, "UPSERT", "1"))
	}
	c := e.open(t)
	resp, err := c.send(stream, cdcSchema(), rows, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "10 MB")
	c.mustAppend(stream, nil, rows[:9]...) // 9 MB: fine, on the same connection
	if got := names(t, e, "big"); len(got) != 9 {
		t.Fatalf("%d rows, want 9", len(got))
	}
}

// TestRowErrors: "If a request failed due to corrupted rows, no rows in the
// batch will be appended. The API will return row level error info"
// (AppendRowsResponse.row_errors, storage.proto).
func TestRowErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "rows", true) + "/streams/_default"
	unknownField := protowire.AppendTag(row(6, "f", "UPSERT", "1"), 99, protowire.VarintType)
	unknownField = protowire.AppendVarint(unknownField, 1)
	resp, err := e.open(t).send(stream, cdcSchema(), [][]byte{
		row(1, "good", "UPSERT", "1"),
		row(2, "bad type", "MERGE", "1"),
		row(3, "bad seq", "UPSERT", "1/2/3/4/5"),
		withDoc(row(4, "bad json", "UPSERT", "1"), "{not json"),
		{0xff, 0xff}, // not a protobuf message
		unknownField,
		row(7, "", "UPSERT", ""), // fine: name is nullable
	}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "nothing was appended")
	var idx []int64
	for _, re := range resp.GetRowErrors() {
		if re.GetCode() != storagepb.RowError_FIELDS_ERROR || re.GetMessage() == "" {
			t.Errorf("row error %v", re)
		}
		idx = append(idx, re.GetIndex())
	}
	if len(idx) != 5 || idx[0] != 1 || idx[4] != 5 {
		t.Fatalf("row errors at %v, want 1..5", idx)
	}
	if got := names(t, e, "rows"); len(got) != 0 {
		t.Fatalf("rows %v landed from a refused request", got)
	}
}

// TestSchemaChecks: the writer schema is checked per request: a field the table
// lacks or a mistyped field fails the request ("Input schema has more fields
// than BigQuery schema", as reported in apache/beam#27892).
func TestSchemaChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "schema", true) + "/streams/_default"
	resp, err := e.open(t).send(stream, cdcSchema(field("extra", 6, descriptorpb.FieldDescriptorProto_TYPE_STRING)), [][]byte{row(1, "a", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "extra fields: 'extra'")

	mistyped := cdcSchema()
	mistyped.Field[1].Type = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE.Enum()
	resp, err = e.open(t).send(stream, mistyped, [][]byte{row(1, "a", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "name")

	noKey := &descriptorpb.DescriptorProto{Name: proto.String("row"), Field: []*descriptorpb.FieldDescriptorProto{field("name", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING)}}
	resp, err = e.open(t).send(stream, noKey, [][]byte{{}}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "REQUIRED column id")
}

// TestWriterSchemaPerConnection: the stream name and writer schema come only
// with the first request of a connection (FINDINGS.md); the double remembers
// them per connection, and a new connection must send them again.
func TestWriterSchemaPerConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "conn", true) + "/streams/_default"
	c := e.open(t)
	c.mustAppend(stream, cdcSchema(), row(1, "a", "UPSERT", "1"))
	c.mustAppend("", nil, row(2, "b", "UPSERT", "1")) // remembered
	resp, err := e.open(t).send(stream, nil, [][]byte{row(3, "c", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "writer_schema")
	resp, err = e.open(t).send("", cdcSchema(), [][]byte{row(3, "c", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "write_stream")
	if got := names(t, e, "conn"); len(got) != 2 {
		t.Fatalf("rows %v", got)
	}
}

// TestStreamOffsets: "ALREADY_EXISTS: Happens when an append specified an
// offset, and the backend already has received data at this offset ...
// OUT_OF_RANGE: Returned when the specified offset in the stream is beyond the
// current end of the stream." (AppendRowsResponse.error). PENDING rows appear on
// commit, BUFFERED rows on flush; the default stream takes no offset.
func TestStreamOffsets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	parent := e.table(t, "offsets", false)
	create := func(typ storagepb.WriteStream_Type) string {
		ws, err := e.raw.CreateWriteStream(ctx, &storagepb.CreateWriteStreamRequest{Parent: parent, WriteStream: &storagepb.WriteStream{Type: typ}})
		if err != nil {
			t.Fatal(err)
		}
		return ws.GetName()
	}
	committed := create(storagepb.WriteStream_COMMITTED)
	c := e.open(t)
	resp, err := c.send(committed, plainSchema(), [][]byte{row(1, "a", "", ""), row(2, "b", "", "")}, wrapperspb.Int64(0))
	if err != nil || resp.GetAppendResult().GetOffset().GetValue() != 0 {
		t.Fatalf("append at 0: %v %v", resp, err)
	}
	resp, err = c.send("", nil, [][]byte{row(3, "c", "", "")}, wrapperspb.Int64(1))
	expectCode(t, resp, err, codes.AlreadyExists, "offset 1")
	resp, err = c.send("", nil, [][]byte{row(3, "c", "", "")}, wrapperspb.Int64(5))
	expectCode(t, resp, err, codes.OutOfRange, "beyond")
	resp, err = c.send("", nil, [][]byte{row(3, "c", "", "")}, wrapperspb.Int64(2))
	if err != nil || resp.GetAppendResult().GetOffset().GetValue() != 2 {
		t.Fatalf("append at 2: %v %v", resp, err)
	}
	if got := names(t, e, "offsets"); len(got) != 3 {
		t.Fatalf("committed rows %v", got)
	}

	pending := create(storagepb.WriteStream_PENDING)
	e.open(t).mustAppend(pending, plainSchema(), row(10, "p", "", ""))
	if got := names(t, e, "offsets"); len(got) != 3 {
		t.Fatalf("pending rows visible before commit: %v", got)
	}
	commit, err := e.raw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{pending}})
	if err != nil || len(commit.GetStreamErrors()) != 1 || commit.GetCommitTime() != nil {
		t.Fatalf("commit before finalize: %v %v", commit, err)
	}
	if _, err := e.raw.FinalizeWriteStream(ctx, &storagepb.FinalizeWriteStreamRequest{Name: pending}); err != nil {
		t.Fatal(err)
	}
	resp, err = e.open(t).send(pending, plainSchema(), [][]byte{row(11, "late", "", "")}, nil)
	expectCode(t, resp, err, codes.InvalidArgument, "finalized")
	if commit, err = e.raw.BatchCommitWriteStreams(ctx, &storagepb.BatchCommitWriteStreamsRequest{Parent: parent, WriteStreams: []string{pending}}); err != nil || commit.GetCommitTime() == nil {
		t.Fatalf("commit: %v %v", commit, err)
	}
	if got := names(t, e, "offsets"); got[10] != "p" || len(got) != 4 {
		t.Fatalf("rows after commit %v", got)
	}

	buffered := create(storagepb.WriteStream_BUFFERED)
	e.open(t).mustAppend(buffered, plainSchema(), row(20, "b0", "", ""), row(21, "b1", "", ""))
	if _, err := e.raw.FlushRows(ctx, &storagepb.FlushRowsRequest{WriteStream: buffered, Offset: wrapperspb.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	if got := names(t, e, "offsets"); got[20] != "b0" || got[21] != nil {
		t.Fatalf("rows after flush to 0: %v", got)
	}
	if _, err := e.raw.FlushRows(ctx, &storagepb.FlushRowsRequest{WriteStream: buffered, Offset: wrapperspb.Int64(7)}); err == nil {
		t.Fatal("flush beyond the end accepted")
	}

	resp, err = e.open(t).send(parent+"/streams/_default", plainSchema(), [][]byte{row(30, "d", "", "")}, wrapperspb.Int64(0))
	expectCode(t, resp, err, codes.InvalidArgument, "offset")
}

// TestFaults: injected errors, dropped connections and lost acknowledgements.
func TestFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stream := e.table(t, "faults", true) + "/streams/_default"
	c := e.open(t)
	c.mustAppend(stream, cdcSchema(), row(1, "a", "UPSERT", "1"))

	e.srv.FailNextAppends(codes.Unavailable, 1)
	resp, err := c.send("", nil, [][]byte{row(2, "b", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.Unavailable, "injected")
	e.srv.FailNextAppends(codes.ResourceExhausted, 1)
	resp, err = c.send("", nil, [][]byte{row(2, "b", "UPSERT", "1")}, nil)
	expectCode(t, resp, err, codes.ResourceExhausted, "AppendRows throughput")
	c.mustAppend("", nil, row(2, "b", "UPSERT", "1")) // same connection still works

	e.srv.DropNextAppends(1)
	if _, err := c.send("", nil, [][]byte{row(3, "c", "UPSERT", "1")}, nil); !errors.Is(err, io.EOF) {
		t.Fatalf("dropped connection: %v, want io.EOF", err)
	}
	if got := names(t, e, "faults"); got[3] != "c" {
		t.Fatalf("the dropped append should have landed: %v", got)
	}

	e.srv.FailNextConnections(1)
	if _, err := e.open(t).send(stream, cdcSchema(), [][]byte{row(4, "d", "UPSERT", "1")}, nil); status.Code(err) != codes.Unavailable {
		t.Fatalf("failed connection: %v, want UNAVAILABLE", err)
	}
	if got := names(t, e, "faults"); got[4] != nil {
		t.Fatalf("an append on a failed connection landed: %v", got)
	}
}

// TestRESTTables: tables.insert validates keys, partitioning and clustering;
// tables.patch only adds NULLABLE columns and honours If-Match.
func TestRESTTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	ds := e.rest.Dataset(dataset)
	if err := ds.Create(ctx, &bigquery.DatasetMetadata{}); httpCode(err) != http.StatusConflict {
		t.Fatalf("second dataset create: %v, want 409", err)
	}
	if _, err := e.rest.Dataset("nope").Metadata(ctx); httpCode(err) != http.StatusNotFound {
		t.Fatalf("missing dataset: %v, want 404", err)
	}
	schema := bigquery.Schema{
		{Name: "id", Type: bigquery.IntegerFieldType, Required: true},
		{Name: "at", Type: bigquery.TimestampFieldType},
		{Name: "s", Type: bigquery.StringFieldType},
	}
	for name, md := range map[string]*bigquery.TableMetadata{
		"pk_missing_column": {Schema: schema, TableConstraints: &bigquery.TableConstraints{PrimaryKey: &bigquery.PrimaryKey{Columns: []string{"zz"}}}},
		"partition_string":  {Schema: schema, TimePartitioning: &bigquery.TimePartitioning{Field: "s"}},
		"five_clusters":     {Schema: schema, Clustering: &bigquery.Clustering{Fields: []string{"id", "at", "s", "id", "at"}}},
	} {
		if err := ds.Table(name).Create(ctx, md); httpCode(err) != http.StatusBadRequest {
			t.Errorf("create %s: %v, want 400", name, err)
		}
	}
	tbl := ds.Table("t")
	if err := tbl.Create(ctx, &bigquery.TableMetadata{Schema: schema, TimePartitioning: &bigquery.TimePartitioning{Field: "at"},
		Clustering: &bigquery.Clustering{Fields: []string{"s"}}, MaxStaleness: &bigquery.IntervalValue{Minutes: 5},
		TableConstraints: &bigquery.TableConstraints{PrimaryKey: &bigquery.PrimaryKey{Columns: []string{"id"}}}}); err != nil {
		t.Fatal(err)
	}
	md, err := tbl.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.TimePartitioning.Field != "at" || md.MaxStaleness.Minutes != 5 || md.TableConstraints.PrimaryKey.Columns[0] != "id" {
		t.Fatalf("metadata %+v", md)
	}
	grown := append(md.Schema, &bigquery.FieldSchema{Name: "n", Type: bigquery.NumericFieldType})
	if _, err := tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: grown}, "stale-etag"); httpCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale etag: %v, want 412", err)
	}
	if _, err := tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: grown}, md.ETag); err != nil {
		t.Fatal(err)
	}
	required := append(grown, &bigquery.FieldSchema{Name: "r", Type: bigquery.StringFieldType, Required: true})
	if _, err := tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: required}, ""); httpCode(err) != http.StatusBadRequest {
		t.Fatalf("adding a REQUIRED column: %v, want 400", err)
	}
	if _, err := tbl.Update(ctx, bigquery.TableMetadataToUpdate{Schema: schema[:2]}, ""); httpCode(err) != http.StatusBadRequest {
		t.Fatalf("dropping a column: %v, want 400", err)
	}
}

func httpCode(err error) int {
	var e *googleapi.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
