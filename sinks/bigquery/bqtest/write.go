package bqtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const defaultStreamID = "_default"

// stream is an explicitly created write stream (COMMITTED, PENDING or BUFFERED).
type stream struct {
	name      string
	typ       storagepb.WriteStream_Type
	t         *table
	rows      [][]any
	flushed   int // rows of a BUFFERED stream made visible
	finalized bool
	committed bool
	created   time.Time
}

type writeService struct {
	storagepb.UnimplementedBigQueryWriteServer
	s *Server
}

// parseStreamName splits projects/p/datasets/d/tables/t/streams/id.
func parseStreamName(name string) (project, ds, tbl, id string, err error) {
	p := strings.Split(name, "/")
	if len(p) != 8 || p[0] != "projects" || p[2] != "datasets" || p[4] != "tables" || p[6] != "streams" {
		return "", "", "", "", status.Errorf(codes.InvalidArgument, "invalid stream name %q", name)
	}
	return p[1], p[3], p[5], p[7], nil
}

func parseTableName(name string) (project, ds, tbl string, err error) {
	p := strings.Split(name, "/")
	if len(p) != 6 || p[0] != "projects" || p[2] != "datasets" || p[4] != "tables" {
		return "", "", "", status.Errorf(codes.InvalidArgument, "invalid table name %q", name)
	}
	return p[1], p[3], p[5], nil
}

// resolve finds the table behind a stream name; s.mu must be held.
func (s *Server) resolve(name string) (*table, *stream, error) {
	project, ds, tbl, id, err := parseStreamName(name)
	if err != nil {
		return nil, nil, err
	}
	t, err := s.lookupTable(project, ds, tbl)
	if err != nil {
		return nil, nil, status.Error(codes.NotFound, err.Error())
	}
	if id == defaultStreamID {
		return t, nil, nil
	}
	st, ok := s.streams[name]
	if !ok || st.t != t {
		return nil, nil, status.Errorf(codes.NotFound, "stream %s not found", name)
	}
	return t, st, nil
}

// GetWriteStream describes a stream. managedwriter calls it for every new
// managed stream, even the default one, to learn the location (FINDINGS.md).
func (w *writeService) GetWriteStream(_ context.Context, req *storagepb.GetWriteStreamRequest) (*storagepb.WriteStream, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t, st, err := s.resolve(req.GetName())
	if err != nil {
		return nil, err
	}
	ws := &storagepb.WriteStream{
		Name:      req.GetName(),
		Type:      storagepb.WriteStream_COMMITTED, // the default stream behaves as a committed one
		Location:  t.meta.Location,
		WriteMode: storagepb.WriteStream_INSERT,
	}
	if st != nil {
		ws.Type = st.typ
		ws.CreateTime = timestamppb.New(st.created)
	}
	if req.GetView() == storagepb.WriteStreamView_FULL {
		ws.TableSchema = storageSchema(t.meta.Schema)
	}
	return ws, nil
}

// CreateWriteStream creates a COMMITTED, PENDING or BUFFERED stream.
func (w *writeService) CreateWriteStream(_ context.Context, req *storagepb.CreateWriteStreamRequest) (*storagepb.WriteStream, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	project, ds, tbl, err := parseTableName(req.GetParent())
	if err != nil {
		return nil, err
	}
	t, err := s.lookupTable(project, ds, tbl)
	if err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	typ := req.GetWriteStream().GetType()
	switch typ {
	case storagepb.WriteStream_COMMITTED, storagepb.WriteStream_PENDING, storagepb.WriteStream_BUFFERED:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "stream type %v cannot be created", typ)
	}
	s.nextID++
	name := fmt.Sprintf("%s/streams/bqtest%d", req.GetParent(), s.nextID)
	st := &stream{name: name, typ: typ, t: t, created: time.Now()}
	s.streams[name] = st
	return &storagepb.WriteStream{Name: name, Type: typ, Location: t.meta.Location, CreateTime: timestamppb.New(st.created)}, nil
}

// FinalizeWriteStream closes a stream for appends. "You cannot finalize a
// DefaultStream, as it always exists." (managedwriter ManagedStream.Finalize).
func (w *writeService) FinalizeWriteStream(_ context.Context, req *storagepb.FinalizeWriteStreamRequest) (*storagepb.FinalizeWriteStreamResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st, err := s.resolve(req.GetName())
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, status.Error(codes.InvalidArgument, "the _default stream cannot be finalized")
	}
	st.finalized = true
	return &storagepb.FinalizeWriteStreamResponse{RowCount: int64(len(st.rows))}, nil
}

// BatchCommitWriteStreams makes finalized PENDING streams visible atomically.
// "Streams must be finalized before commit and cannot be committed multiple
// times" (managedwriter Client.BatchCommitWriteStreams); failures come back as
// stream_errors with nothing committed.
func (w *writeService) BatchCommitWriteStreams(_ context.Context, req *storagepb.BatchCommitWriteStreamsRequest) (*storagepb.BatchCommitWriteStreamsResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []*storagepb.StorageError
	var sts []*stream
	for _, name := range req.GetWriteStreams() {
		_, st, err := s.resolve(name)
		switch {
		case err != nil:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_STREAM_NOT_FOUND, Entity: name, ErrorMessage: err.Error()})
		case st == nil || st.typ != storagepb.WriteStream_PENDING:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_INVALID_STREAM_TYPE, Entity: name, ErrorMessage: "only PENDING streams are committed"})
		case !st.finalized:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_INVALID_STREAM_STATE, Entity: name, ErrorMessage: "stream is not finalized"})
		case st.committed:
			errs = append(errs, &storagepb.StorageError{Code: storagepb.StorageError_STREAM_ALREADY_COMMITTED, Entity: name, ErrorMessage: "stream already committed"})
		default:
			sts = append(sts, st)
		}
	}
	if len(errs) > 0 {
		return &storagepb.BatchCommitWriteStreamsResponse{StreamErrors: errs}, nil
	}
	for _, st := range sts {
		st.committed = true
		st.t.plain = append(st.t.plain, st.rows...)
	}
	return &storagepb.BatchCommitWriteStreamsResponse{CommitTime: timestamppb.Now()}, nil
}

// FlushRows makes the rows of a BUFFERED stream visible up to and including offset.
func (w *writeService) FlushRows(_ context.Context, req *storagepb.FlushRowsRequest) (*storagepb.FlushRowsResponse, error) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, st, err := s.resolve(req.GetWriteStream())
	if err != nil {
		return nil, err
	}
	if st == nil || st.typ != storagepb.WriteStream_BUFFERED {
		return nil, status.Error(codes.InvalidArgument, "FlushRows needs a BUFFERED stream")
	}
	off := int(req.GetOffset().GetValue())
	if off >= len(st.rows) {
		return nil, status.Errorf(codes.OutOfRange, "flush offset %d is beyond the end of the stream (%d rows)", off, len(st.rows))
	}
	if off+1 > st.flushed {
		st.t.plain = append(st.t.plain, st.rows[st.flushed:off+1]...)
		st.flushed = off + 1
	}
	return &storagepb.FlushRowsResponse{Offset: int64(off)}, nil
}

// conn is what the double remembers about one AppendRows connection:
// "writer_schema, write_stream and the trace id arrive only on the first
// AppendRows request of each connection" (FINDINGS.md; AppendRowsRequest docs:
// "For explicitly created write streams, the format is ... For the special
// default stream ... only the first request on a connection needs to carry the
// stream name and schema"). Later requests may change either (multiplexing).
type conn struct {
	stream string
	schema *descriptorpb.DescriptorProto
	dec    *decoder
}

// AppendRows is the bidirectional append stream. Each request gets exactly one
// response, in order.
func (w *writeService) AppendRows(srv storagepb.BigQueryWrite_AppendRowsServer) error {
	s := w.s
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	c := &conn{}
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.appends++
		f := &s.faults
		var inject *storagepb.AppendRowsResponse
		drop := false
		switch {
		case f.streamErr > 0:
			f.streamErr--
			s.mu.Unlock()
			return status.Error(codes.Unavailable, "bqtest: connection reset (injected)")
		case f.failN > 0:
			f.failN--
			msg := f.failMsg
			if msg == "" {
				msg = "bqtest: injected " + f.failCode.String()
			}
			inject = errorResponse(f.failCode, msg)
		case f.dropN > 0:
			f.dropN--
			drop = true
		}
		delay := f.delay
		s.mu.Unlock()

		if req.GetWriteStream() != "" {
			if req.GetWriteStream() != c.stream {
				c.dec = nil
			}
			c.stream = req.GetWriteStream()
		}
		if ws := req.GetProtoRows().GetWriterSchema(); ws != nil {
			c.schema, c.dec = ws.GetProtoDescriptor(), nil
		}
		resp := inject
		if resp == nil {
			resp = s.append(c, req)
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if drop {
			return nil // the append landed; its acknowledgement is lost with the connection
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

func errorResponse(code codes.Code, msg string) *storagepb.AppendRowsResponse {
	return &storagepb.AppendRowsResponse{Response: &storagepb.AppendRowsResponse_Error{Error: status.New(code, msg).Proto()}}
}

// append applies one request and builds its response.
func (s *Server) append(c *conn, req *storagepb.AppendRowsRequest) *storagepb.AppendRowsResponse {
	// "The size of a single request must be less than 10 MB in size. Requests
	// larger than this return an error, typically INVALID_ARGUMENT."
	if n := proto.Size(req); n >= MaxRequestBytes {
		return errorResponse(codes.InvalidArgument, fmt.Sprintf("AppendRows request of %d bytes exceeds the 10 MB limit", n))
	}
	if c.stream == "" {
		return errorResponse(codes.InvalidArgument, "write_stream must be set on the first request of a connection")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, st, err := s.resolve(c.stream)
	if err != nil {
		return errorResponse(status.Code(err), status.Convert(err).Message())
	}
	if c.dec == nil || c.dec.t != t || c.dec.gen != t.gen {
		dec, err := compile(t, st == nil, c.schema)
		if err != nil {
			return errorResponse(codes.InvalidArgument, err.Error())
		}
		c.dec = dec
	}
	rows := req.GetProtoRows().GetRows().GetSerializedRows()

	// "If a request failed due to corrupted rows, no rows in the batch will be
	// appended. The API will return row level error info, so that the caller can
	// remove the bad rows and retry the request." (AppendRowsResponse.row_errors).
	out := make([]*decoded, len(rows))
	var rowErrs []*storagepb.RowError
	for i, b := range rows {
		d, err := c.dec.decode(b)
		if err == nil && s.refuse != nil && s.refuse(t.project1(d.values)) {
			err = errors.New(s.refuseReason)
		}
		if err != nil {
			rowErrs = append(rowErrs, &storagepb.RowError{Index: int64(i), Code: storagepb.RowError_FIELDS_ERROR, Message: err.Error()})
			continue
		}
		out[i] = d
	}
	if len(rowErrs) > 0 {
		resp := errorResponse(codes.InvalidArgument, fmt.Sprintf("%d of %d rows are invalid; nothing was appended", len(rowErrs), len(rows)))
		resp.RowErrors = rowErrs
		return resp
	}

	if st == nil {
		// Default stream: "Specifying a value for this field is not allowed when
		// calling AppendRows for the '_default' stream." (AppendRowsRequest.offset).
		if req.GetOffset() != nil {
			return errorResponse(codes.InvalidArgument, "offset is not allowed on the _default stream")
		}
		for _, d := range out {
			s.arrival++
			if c.dec.cdc {
				ch := &change{values: d.values, del: d.changeType == "DELETE", seq: d.seq, arrival: s.arrival}
				if err := t.apply(ch); err != nil {
					return errorResponse(codes.InvalidArgument, err.Error())
				}
				continue
			}
			t.plain = append(t.plain, d.values)
		}
		// The default stream has no offsets: the result carries none (managedwriter
		// reports NoStreamOffset, -1).
		return &storagepb.AppendRowsResponse{Response: &storagepb.AppendRowsResponse_AppendResult_{AppendResult: &storagepb.AppendRowsResponse_AppendResult{}}, WriteStream: c.stream}
	}

	if st.finalized {
		return errorResponse(codes.InvalidArgument, "stream is finalized")
	}
	end := int64(len(st.rows))
	if off := req.GetOffset(); off != nil {
		// "ALREADY_EXISTS: Happens when an append specified an offset, and the backend
		// already has received data at this offset. ... OUT_OF_RANGE: Returned when
		// the specified offset in the stream is beyond the current end of the stream."
		// (AppendRowsResponse.error).
		switch {
		case off.GetValue() < end:
			return errorResponse(codes.AlreadyExists, fmt.Sprintf("offset %d already written (stream end is %d)", off.GetValue(), end))
		case off.GetValue() > end:
			return errorResponse(codes.OutOfRange, fmt.Sprintf("offset %d is beyond the end of the stream (%d)", off.GetValue(), end))
		}
	}
	for _, d := range out {
		st.rows = append(st.rows, d.values)
		if st.typ == storagepb.WriteStream_COMMITTED {
			t.plain = append(t.plain, d.values)
		}
	}
	return &storagepb.AppendRowsResponse{
		Response:    &storagepb.AppendRowsResponse_AppendResult_{AppendResult: &storagepb.AppendRowsResponse_AppendResult{Offset: wrapperspb.Int64(end)}},
		WriteStream: c.stream,
	}
}
