package stream

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/segmentio/kafka-go"
)

// fakeRegistry follows the Confluent Schema Registry REST API as documented
// (POST /subjects/{s}/versions, GET /schemas/ids/{id}, GET /subjects/{s}/versions,
// PUT /config/{s}; error bodies {"error_code", "message"}): ids are global and
// the same schema text gets the same id under every subject. The compatibility
// check is the test's refuse function; the real one is tested against the
// registry `make up` starts (registry_integration_test.go).
type fakeRegistry struct {
	user, pass string
	refuse     func(subject, schema string) bool
	failNext   int // answer that many requests with 503 first

	mu       sync.Mutex
	ids      map[string]int
	texts    map[int]string
	versions map[string][]int
	requests []string
}

func newFakeRegistry(t *testing.T) (*fakeRegistry, *httptest.Server) {
	f := &fakeRegistry{ids: map[string]int{}, texts: map[int]string{}, versions: map[string][]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeRegistry) fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.EscapedPath())
	if f.failNext > 0 {
		f.failNext--
		f.fail(w, http.StatusServiceUnavailable, 50003, "backend unavailable")
		return
	}
	if f.user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.pass {
			f.fail(w, http.StatusUnauthorized, 401, "Unauthorized")
			return
		}
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		var body struct{ Schema string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fail(w, http.StatusUnprocessableEntity, 42201, "Invalid schema")
			return
		}
		if _, err := goavro.NewCodec(body.Schema); err != nil {
			f.fail(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
			return
		}
		subject := parts[1]
		if f.refuse != nil && f.refuse(subject, body.Schema) {
			f.fail(w, http.StatusConflict, 409, "Schema being registered is incompatible with an earlier schema for subject \""+subject+"\"")
			return
		}
		id, ok := f.ids[body.Schema]
		if !ok {
			id = len(f.ids) + 1
			f.ids[body.Schema], f.texts[id] = id, body.Schema
		}
		known := false
		for _, v := range f.versions[subject] {
			known = known || v == id
		}
		if !known {
			f.versions[subject] = append(f.versions[subject], id)
		}
		_ = json.NewEncoder(w).Encode(map[string]int{"id": id})
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "schemas" && parts[1] == "ids":
		id, _ := strconv.Atoi(parts[2])
		text, ok := f.texts[id]
		if !ok {
			f.fail(w, http.StatusNotFound, 40403, fmt.Sprintf("Schema %d not found", id))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"schema": text})
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "subjects" && parts[2] == "versions":
		vs, ok := f.versions[parts[1]]
		if !ok {
			f.fail(w, http.StatusNotFound, 40401, "Subject not found")
			return
		}
		out := make([]int, len(vs))
		for i := range vs {
			out[i] = i + 1
		}
		_ = json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodPut && len(parts) == 2 && parts[0] == "config":
		_, _ = w.Write([]byte(`{"compatibility":"BACKWARD"}`))
	default:
		f.fail(w, http.StatusNotFound, 404, "HTTP 404 Not Found")
	}
}

func (f *fakeRegistry) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

const avroA = `{"type":"record","name":"A","fields":[{"name":"a","type":"long"}]}`

func TestRegistryRegisterAndLookupAreCached(t *testing.T) {
	t.Parallel()
	f, srv := newFakeRegistry(t)
	ctx := context.Background()
	reg, err := NewRegistry(RegistryConfig{URL: srv.URL + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := reg.Register(ctx, "t1-value", avroA)
	if err != nil {
		t.Fatal(err)
	}
	again, err := reg.Register(ctx, "t1-value", avroA)
	if err != nil || again != id1 {
		t.Fatalf("second register: id %d, %v; want %d", again, err, id1)
	}
	if n := f.count("POST /subjects/t1-value/versions"); n != 1 {
		t.Errorf("%d register requests for one subject and schema, want 1 (cached)", n)
	}
	other, err := reg.Register(ctx, "t2-value", avroA)
	if err != nil || other != id1 {
		t.Fatalf("same schema under another subject: id %d, %v; want %d", other, err, id1)
	}
	// A client that never registered it looks it up once.
	fresh, _ := NewRegistry(RegistryConfig{URL: srv.URL}, nil)
	for i := 0; i < 3; i++ {
		text, err := fresh.SchemaByID(ctx, id1)
		if err != nil || text != avroA {
			t.Fatalf("schema %d: %q, %v", id1, text, err)
		}
	}
	if n := f.count("GET /schemas/ids/"); n != 1 {
		t.Errorf("%d lookups of one id, want 1 (cached)", n)
	}
	vs, err := fresh.Versions(ctx, "t1-value")
	if err != nil || !reflect.DeepEqual(vs, []int{1}) {
		t.Errorf("versions %v, %v", vs, err)
	}
	if err := fresh.SetCompatibility(ctx, "t1-value", "BACKWARD"); err != nil {
		t.Error(err)
	}
	if n := f.count("PUT /config/t1-value"); n != 1 {
		t.Errorf("%d compatibility requests, want 1", n)
	}
}

func TestRegistryErrorsAreClassified(t *testing.T) {
	t.Parallel()
	f, srv := newFakeRegistry(t)
	f.refuse = func(subject, schema string) bool { return strings.Contains(schema, `"string"`) }
	ctx := context.Background()
	reg, _ := NewRegistry(RegistryConfig{URL: srv.URL}, nil)

	_, err := reg.Register(ctx, "cdc.shop.customers-value", `{"type":"record","name":"A","fields":[{"name":"a","type":"string"}]}`)
	if !errors.Is(err, ErrIncompatibleSchema) {
		t.Fatalf("refused schema: %v, want ErrIncompatibleSchema", err)
	}
	for _, want := range []string{"cdc.shop.customers-value", "HTTP 409", "incompatible with an earlier schema", "compatibility"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if errors.Is(err, ErrRegistryUnavailable) || errors.Is(err, ErrSchemaNotFound) {
		t.Errorf("409 classified as more than incompatible: %v", err)
	}

	_, err = reg.SchemaByID(ctx, 4242)
	if !errors.Is(err, ErrSchemaNotFound) || !strings.Contains(err.Error(), "40403") {
		t.Errorf("unknown id: %v, want ErrSchemaNotFound with code 40403", err)
	}

	_, err = reg.Register(ctx, "x-value", `{"type":"nope"}`)
	var re *RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusUnprocessableEntity || re.Code != 42201 {
		t.Errorf("invalid schema: %v, want HTTP 422 / 42201", err)
	}
	if errors.Is(err, ErrIncompatibleSchema) || errors.Is(err, ErrRegistryUnavailable) {
		t.Errorf("422 misclassified: %v", err)
	}
}

func TestRegistryRetriesUnavailable(t *testing.T) {
	t.Parallel()
	f, srv := newFakeRegistry(t)
	f.failNext = 2
	reg, _ := NewRegistry(RegistryConfig{URL: srv.URL}, nil)
	id, err := reg.Register(context.Background(), "t-value", avroA)
	if err != nil || id != 1 {
		t.Fatalf("after two 503s: id %d, %v", id, err)
	}
	if n := f.count("POST"); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}

	f.mu.Lock()
	f.failNext = 100
	f.mu.Unlock()
	_, err = reg.SchemaByID(context.Background(), 77)
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("registry answering 503: %v, want ErrRegistryUnavailable", err)
	}
	if n := f.count("GET /schemas/ids/77"); n != registryAttempts {
		t.Errorf("%d attempts, want %d", n, registryAttempts)
	}

	// Nothing listening: unavailable, and the context bounds the retries.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	reg, _ = NewRegistry(RegistryConfig{URL: dead.URL}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := reg.SchemaByID(ctx, 1); !errors.Is(err, ErrRegistryUnavailable) {
		t.Errorf("no registry: %v, want ErrRegistryUnavailable", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("retries outlived the context: %s", time.Since(start))
	}
}

func TestRegistryBasicAuthNeverShowsThePassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	f, srv := newFakeRegistry(t)
	f.user, f.pass = "starstream", secret
	ctx := context.Background()
	hostURL := strings.Replace(srv.URL, "http://", "http://starstream:"+secret+"@", 1)
	for name, cfg := range map[string]RegistryConfig{
		"fields":   {URL: srv.URL, Username: "starstream", Password: secret},
		"userinfo": {URL: hostURL},
	} {
		reg, err := NewRegistry(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Register(ctx, "auth-value", avroA); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.Contains(reg.String(), secret) {
			t.Errorf("%s: String() shows the password: %s", name, reg.String())
		}
	}
	for name, cfg := range map[string]RegistryConfig{
		"wrong password": {URL: srv.URL, Username: "starstream", Password: "not-" + secret},
		"none":           {URL: srv.URL},
	} {
		reg, _ := NewRegistry(cfg, nil)
		_, err := reg.Register(ctx, "auth-value", avroA+" ")
		var re *RegistryError
		if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "username") {
			t.Errorf("%s: %v, want HTTP 401 naming the credentials", name, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
	// A registry that is down: the error names the address, never the password.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	deadURL := strings.Replace(dead.URL, "http://", "http://starstream:"+secret+"@", 1)
	reg, _ := NewRegistry(RegistryConfig{URL: deadURL}, nil)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := reg.Register(cctx, "auth-value", avroA)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), strings.TrimPrefix(dead.URL, "http://")) {
		t.Errorf("unreachable registry: %v", err)
	}
	if err := (RegistryConfig{URL: "ftp://u:" + secret + "@host"}).Validate(); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("bad url: %v", err)
	}
	if got := RedactRegistryURL(deadURL); strings.Contains(got, secret) {
		t.Errorf("RedactRegistryURL: %s", got)
	}
}

// The Confluent wire format: magic byte 0, the schema id big endian, then the
// same Avro binary single-object encoding carries after its 10-byte header.
func TestConfluentWireFormat(t *testing.T) {
	t.Parallel()
	codecs := NewCodecs()
	soe, err := NewTableCodec(codecs, testSchema())
	if err != nil {
		t.Fatal(err)
	}
	cf := *soe
	cf.KeyID, cf.ValueID = 7, 0x01020304
	ev := Event{Schema: "shop", Table: "products", Op: OpInsert, Key: map[string]any{"product_id": int64(7)},
		After: map[string]any{"product_id": int64(7), "name": "lamp"}, Pos: Position{LSN: 42, Seq: 1},
		CommitTime: time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC)}
	sv, _ := soe.EncodeValue(&ev)
	sk, _ := soe.EncodeKey(&ev)
	cv, err := cf.EncodeValue(&ev)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := cf.EncodeKey(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cv[:5], []byte{0, 1, 2, 3, 4}) || !bytes.Equal(cv[5:], sv[10:]) {
		t.Errorf("value %x, want 00 01020304 then %x", cv, sv[10:])
	}
	if !bytes.Equal(ck[:5], []byte{0, 0, 0, 0, 7}) || !bytes.Equal(ck[5:], sk[10:]) {
		t.Errorf("key %x, want 00 00000007 then %x", ck, sk[10:])
	}

	// A process without the ids: unknown until resolved through the registry.
	f, srv := newFakeRegistry(t)
	reg, _ := NewRegistry(RegistryConfig{URL: srv.URL}, nil)
	ctx := context.Background()
	vid, _ := reg.Register(ctx, "cdc.shop.products-value", soe.ValueJSON)
	kid, _ := reg.Register(ctx, "cdc.shop.products-key", soe.KeyJSON)
	cf.KeyID, cf.ValueID = kid, vid
	cv, _ = cf.EncodeValue(&ev)
	ck, _ = cf.EncodeKey(&ev)
	reader := NewRegistryCodecs(reg)
	reader.reg, _ = NewRegistry(RegistryConfig{URL: srv.URL}, nil) // empty cache: a fresh process
	d, err := reader.DecodeEvent(cv)
	if !errors.Is(err, ErrUnknownSchema) || d.SchemaID != vid {
		t.Fatalf("unresolved id: %+v, %v", d, err)
	}
	if err := reader.Resolve(ctx, cv); err != nil {
		t.Fatal(err)
	}
	if err := reader.Resolve(ctx, ck); err != nil {
		t.Fatal(err)
	}
	d, err = reader.DecodeEvent(cv)
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaID != vid || d.Fingerprint != soe.ValueFP || d.Event.Table != "products" || d.Event.After["name"] != "lamp" || d.Event.Pos != ev.Pos {
		t.Errorf("decoded %+v", d)
	}
	k, err := reader.DecodeKey(ck)
	if err != nil || k["product_id"] != int64(7) {
		t.Errorf("key %v, %v", k, err)
	}
	// Both formats in one consumer: single-object records still decode.
	if _, err := NewTableCodec(reader, testSchema()); err != nil {
		t.Fatal(err)
	}
	if d, err := reader.DecodeEvent(sv); err != nil || d.SchemaID != 0 || d.Event.After["name"] != "lamp" {
		t.Errorf("single-object record in the same codecs: %+v, %v", d, err)
	}
	if n := f.count("GET /schemas/ids/"); n != 2 {
		t.Errorf("%d id lookups, want 2 (value and key, once each)", n)
	}

	noRegistry := NewCodecs()
	if err := noRegistry.Resolve(ctx, cv); !errors.Is(err, ErrUnknownSchema) || !strings.Contains(err.Error(), "kafka.schema_registry_url") {
		t.Errorf("no registry configured: %v", err)
	}
	if err := reader.Resolve(ctx, binary.BigEndian.AppendUint32([]byte{0}, 999)); !errors.Is(err, ErrSchemaNotFound) {
		t.Errorf("id the registry does not know: %v", err)
	}
	for name, buf := range map[string][]byte{
		"cut header":     {0, 0, 1},
		"trailing bytes": append(append([]byte{}, cv...), 0xFF),
		"zero id":        {0, 0, 0, 0, 0, 2},
		"plain text":     []byte("hello"),
	} {
		if _, err := reader.DecodeEvent(buf); !errors.Is(err, ErrPoison) {
			t.Errorf("%s: %v, want ErrPoison", name, err)
		}
	}
}

// An https registry with a private CA: trusted through CAFile, refused without it
// (the system's roots), and a CA file that is missing or holds no certificate is
// a configuration error, as is a CA file for an http URL.
func TestRegistryPrivateCA(t *testing.T) {
	t.Parallel()
	f := &fakeRegistry{ids: map[string]int{}, texts: map[int]string{}, versions: map[string][]int{}}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, err := NewRegistry(RegistryConfig{URL: srv.URL, CAFile: ca}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, "t1-value", avroA); err != nil {
		t.Fatalf("register over TLS with the CA file: %v", err)
	}

	system, err := NewRegistry(RegistryConfig{URL: srv.URL, Timeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = system.Register(ctx, "t1-value", avroA)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("register with the system roots: %v, want a certificate error", err)
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]RegistryConfig{
		"missing":  {URL: srv.URL, CAFile: filepath.Join(dir, "nope.crt")},
		"not PEM":  {URL: srv.URL, CAFile: notPEM},
		"http url": {URL: "http://127.0.0.1:1", CAFile: ca},
	} {
		if _, err := NewRegistry(cfg, nil); err == nil || !strings.Contains(err.Error(), "CA file") {
			t.Errorf("%s: %v, want an error about the CA file", name, err)
		}
	}
}

// A registry that refuses the lookup of a record's schema (wrong credentials
// here) is the configuration's fault, not the record's: the decoder waits for it
// to be fixed, logging why at ERROR, and does not call the record poison; once
// the credentials are right the same record decodes.
func TestDecodeWaitsOutARefusingRegistry(t *testing.T) {
	t.Parallel()
	f, srv := newFakeRegistry(t)
	f.user, f.pass = "starstream", "right"
	codecs := NewCodecs()
	tc, err := NewTableCodec(codecs, testSchema())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	writer, _ := NewRegistry(RegistryConfig{URL: srv.URL, Username: "starstream", Password: "right"}, nil)
	vid, err := writer.Register(ctx, "cdc.shop.products-value", tc.ValueJSON)
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := writer.Register(ctx, "cdc.shop.products-key", tc.KeyJSON)
	cf := *tc
	cf.KeyID, cf.ValueID = kid, vid
	ev := Event{Schema: "shop", Table: "products", Op: OpInsert, Key: map[string]any{"product_id": int64(7)},
		After: map[string]any{"product_id": int64(7), "name": "lamp"}, Pos: Position{LSN: 42, Seq: 1},
		CommitTime: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)}
	value, _ := cf.EncodeValue(&ev)
	key, _ := cf.EncodeKey(&ev)
	msg := kafka.Message{Topic: "cdc.shop.products", Key: key, Value: value}

	var logs bytes.Buffer
	wrong, _ := NewRegistry(RegistryConfig{URL: srv.URL, Username: "starstream", Password: "wrong"},
		slog.New(slog.NewTextHandler(&logs, nil)))
	d := newDecoder([]string{"127.0.0.1:1"}, nil, "", NewRegistryCodecs(wrong))
	wait, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	began := time.Now()
	rec := d.decode(wait, msg)
	if waited := time.Since(began); waited < time.Second {
		t.Errorf("decode returned after %v: it did not wait for the registry", waited)
	}
	if errors.Is(rec.Err, ErrUnknownSchema) || errors.Is(rec.Err, ErrPoison) || !errors.Is(rec.Err, context.DeadlineExceeded) {
		t.Errorf("refused lookup: %v, want only the caller's deadline (not poison)", rec.Err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "HTTP 401") ||
		strings.Contains(logs.String(), "wrong") {
		t.Errorf("log does not say why at ERROR (or shows the password):\n%s", logs.String())
	}

	if err := wrong.Failing(); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("Failing while refused: %v, want the 401 (the status page shows it)", err)
	}
	// The registry starts accepting the process's credentials: the same decoder
	// decodes the record, and the registry is no longer reported failing.
	f.mu.Lock()
	f.pass = "wrong"
	f.mu.Unlock()
	if rec := d.decode(ctx, msg); rec.Err != nil || rec.Event.After["name"] != "lamp" {
		t.Errorf("after the registry accepted the credentials: %+v", rec)
	}
	if err := wrong.Failing(); err != nil {
		t.Errorf("Failing after a success: %v", err)
	}
	f.mu.Lock()
	f.pass = "right"
	f.mu.Unlock()

	// Without a registry configured, the record is poison, naming the key to set.
	rec = newDecoder([]string{"127.0.0.1:1"}, nil, "", NewCodecs()).decode(ctx, msg)
	if !errors.Is(rec.Err, ErrUnknownSchema) || !strings.Contains(rec.Err.Error(), "kafka.schema_registry_url") {
		t.Errorf("no registry: %v, want unknown schema naming kafka.schema_registry_url", rec.Err)
	}

	right, _ := NewRegistry(RegistryConfig{URL: srv.URL, Username: "starstream", Password: "right"}, nil)
	rec = newDecoder([]string{"127.0.0.1:1"}, nil, "", NewRegistryCodecs(right)).decode(ctx, msg)
	if rec.Err != nil || rec.Event.After["name"] != "lamp" {
		t.Errorf("with the right credentials: %+v", rec)
	}
}
