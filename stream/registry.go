package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RegistryConfig configures the client of a Confluent Schema Registry REST API.
type RegistryConfig struct {
	// URL is the API's base, e.g. http://127.0.0.1:18081/apis/ccompat/v7 for Apicurio or
	// http://registry:8081 for Confluent's. Credentials in it (user:password@) are used for
	// basic auth and never printed.
	URL      string
	Username string // basic auth, optional
	Password string // basic auth, optional; never logged nor put in errors
	CAFile   string // PEM roots an https registry's certificate is verified against; empty: the system's
	Timeout  time.Duration
}

// Validate checks the configuration; its errors never contain the password.
func (c RegistryConfig) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("schema registry url %q is not an http(s) URL", redactURL(c.URL))
	}
	if c.Password != "" && c.Username == "" && u.User == nil {
		return errors.New("schema registry password given without a username")
	}
	if c.CAFile != "" && u.Scheme != "https" {
		return fmt.Errorf("schema registry CA file %s is set but the url is not https", c.CAFile)
	}
	return nil
}

// roots reads CAFile: nil (the system's) when unset.
func (c RegistryConfig) roots() (*x509.CertPool, error) {
	if c.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("schema registry CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("schema registry CA file %s holds no PEM certificate", c.CAFile)
	}
	return pool, nil
}

// Registry is a client of a Confluent Schema Registry: it registers schemas under
// subjects and looks them up by id, both cached, so a process asks the registry once
// per subject and schema and once per id. It is safe for concurrent use.
type Registry struct {
	base       string // without credentials or trailing slash
	user, pass string
	http       *http.Client
	log        *slog.Logger

	mu      sync.Mutex
	ids     map[subjectSchema]int // registered: subject and schema text → id
	texts   map[int]string        // looked up: id → schema text
	failing error                 // the last call's failure that was not the schema's (unreachable, refused); nil after a success
}

// Failing is the registry's current trouble: the failure of the last call when
// it was not about the schema asked for (unreachable, refused credentials, an
// untrusted certificate), nil once a call succeeded again. Consumers wait out
// such failures instead of dead-lettering, so this is what the status page shows.
func (r *Registry) Failing() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing
}

type subjectSchema struct{ subject, schema string }

// Retries of one registry call before it reports ErrRegistryUnavailable.
const (
	registryAttempts   = 5
	registryBackoff    = 200 * time.Millisecond
	registryMaxBackoff = 3 * time.Second
	registryTimeout    = 10 * time.Second
)

// NewRegistry returns a client; it does not contact the registry.
func NewRegistry(cfg RegistryConfig, logger *slog.Logger) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	roots, err := cfg.roots()
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: cfg.Timeout}
	if roots != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		client.Transport = t
	}
	u, _ := url.Parse(cfg.URL)
	user, pass := cfg.Username, cfg.Password
	if u.User != nil {
		if user == "" {
			user = u.User.Username()
		}
		if p, ok := u.User.Password(); ok && pass == "" {
			pass = p
		}
		u.User = nil
	}
	if client.Timeout <= 0 {
		client.Timeout = registryTimeout
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{
		base: strings.TrimRight(u.String(), "/"), user: user, pass: pass,
		http: client, log: logger,
		ids: map[subjectSchema]int{}, texts: map[int]string{},
	}, nil
}

// String is the registry's URL without credentials.
func (r *Registry) String() string { return r.base }

// Register registers an Avro schema under a subject (a new version unless the subject
// already has it) and returns its id. A schema the subject's compatibility level refuses
// is an ErrIncompatibleSchema naming the subject and the registry's reason.
func (r *Registry) Register(ctx context.Context, subject, schema string) (int, error) {
	k := subjectSchema{subject, schema}
	r.mu.Lock()
	id, ok := r.ids[k]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	body, _ := json.Marshal(map[string]string{"schema": schema, "schemaType": "AVRO"})
	var out struct {
		ID int `json:"id"`
	}
	if err := r.call(ctx, http.MethodPost, "/subjects/"+url.PathEscape(subject)+"/versions", body, &out); err != nil {
		return 0, fmt.Errorf("register schema under subject %s: %w", subject, err)
	}
	if out.ID <= 0 {
		return 0, fmt.Errorf("register schema under subject %s: registry %s answered without an id", subject, r.base)
	}
	r.mu.Lock()
	r.ids[k] = out.ID
	r.texts[out.ID] = schema
	r.mu.Unlock()
	return out.ID, nil
}

// SchemaByID returns the schema text of an id; an id the registry does not know is
// an ErrSchemaNotFound.
func (r *Registry) SchemaByID(ctx context.Context, id int) (string, error) {
	r.mu.Lock()
	s, ok := r.texts[id]
	r.mu.Unlock()
	if ok {
		return s, nil
	}
	var out struct {
		Schema     string `json:"schema"`
		SchemaType string `json:"schemaType"`
	}
	if err := r.call(ctx, http.MethodGet, "/schemas/ids/"+strconv.Itoa(id), nil, &out); err != nil {
		return "", fmt.Errorf("look up schema id %d: %w", id, err)
	}
	if out.SchemaType != "" && out.SchemaType != "AVRO" {
		return "", fmt.Errorf("look up schema id %d: %w: it is a %s schema, not Avro", id, ErrPoison, out.SchemaType)
	}
	r.mu.Lock()
	r.texts[id] = out.Schema
	r.mu.Unlock()
	return out.Schema, nil
}

// SetCompatibility sets a subject's compatibility level (BACKWARD, FORWARD, FULL,
// NONE, and their _TRANSITIVE forms).
func (r *Registry) SetCompatibility(ctx context.Context, subject, level string) error {
	body, _ := json.Marshal(map[string]string{"compatibility": level})
	if err := r.call(ctx, http.MethodPut, "/config/"+url.PathEscape(subject), body, nil); err != nil {
		return fmt.Errorf("set compatibility of subject %s: %w", subject, err)
	}
	return nil
}

// Check asks the registry for its global compatibility level: it answers, and
// accepts the credentials.
func (r *Registry) Check(ctx context.Context) error {
	if err := r.call(ctx, http.MethodGet, "/config", nil, nil); err != nil {
		return fmt.Errorf("schema registry check: %w", err)
	}
	return nil
}

// Subjects lists the registry's subjects.
func (r *Registry) Subjects(ctx context.Context) ([]string, error) {
	var out []string
	if err := r.call(ctx, http.MethodGet, "/subjects", nil, &out); err != nil {
		return nil, fmt.Errorf("list subjects: %w", err)
	}
	return out, nil
}

// Versions returns the version numbers registered under a subject.
func (r *Registry) Versions(ctx context.Context, subject string) ([]int, error) {
	var out []int
	if err := r.call(ctx, http.MethodGet, "/subjects/"+url.PathEscape(subject)+"/versions", nil, &out); err != nil {
		return nil, fmt.Errorf("list versions of subject %s: %w", subject, err)
	}
	return out, nil
}

// DeleteSubject deletes a subject and its versions for good (a soft delete, then
// the permanent one, as the Confluent API requires).
func (r *Registry) DeleteSubject(ctx context.Context, subject string) error {
	path := "/subjects/" + url.PathEscape(subject)
	if err := r.call(ctx, http.MethodDelete, path, nil, nil); err != nil && !errors.Is(err, ErrSchemaNotFound) {
		return fmt.Errorf("delete subject %s: %w", subject, err)
	}
	if err := r.call(ctx, http.MethodDelete, path+"?permanent=true", nil, nil); err != nil && !errors.Is(err, ErrSchemaNotFound) {
		return fmt.Errorf("delete subject %s permanently: %w", subject, err)
	}
	r.mu.Lock()
	for k := range r.ids {
		if k.subject == subject {
			delete(r.ids, k)
		}
	}
	r.mu.Unlock()
	return nil
}

// RegistryError is an error answer of the registry: its HTTP status, Confluent
// error code and message.
type RegistryError struct {
	URL     string // without credentials
	Status  int
	Code    int
	Message string
}

func (e *RegistryError) Error() string {
	msg := fmt.Sprintf("schema registry %s: HTTP %d", e.URL, e.Status)
	if e.Code != 0 {
		msg += fmt.Sprintf(" (error code %d)", e.Code)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch {
	case e.Status == http.StatusConflict:
		msg += " — the subject's compatibility level refuses this schema; see GET /config/<subject>, and for a breaking change use a new topic or lower the subject's compatibility"
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		msg += " — check kafka.schema_registry_username and the password"
	}
	return msg
}

// Is maps the registry's answers to the package's sentinels.
func (e *RegistryError) Is(target error) bool {
	switch target {
	case ErrIncompatibleSchema:
		return e.Status == http.StatusConflict
	case ErrSchemaNotFound:
		return e.Status == http.StatusNotFound
	case ErrRegistryUnavailable:
		return retryableStatus(e.Status)
	}
	return false
}

func retryableStatus(s int) bool {
	return s == http.StatusTooManyRequests || s >= 500
}

// call sends one API request, retrying connection failures and 5xx/429 answers with
// capped exponential backoff; out, when not nil, receives the JSON answer.
func (r *Registry) call(ctx context.Context, method, path string, body []byte, out any) error {
	backoff := registryBackoff
	var last error
	for attempt := 1; ; attempt++ {
		last = r.once(ctx, method, path, body, out)
		if last == nil || !errors.Is(last, ErrRegistryUnavailable) || attempt == registryAttempts {
			r.noteOutcome(ctx, last)
			return last
		}
		r.log.Warn("schema registry call failed, retrying", "registry", r.base, "attempt", attempt, "error", last)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then: %v)", last, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, registryMaxBackoff)
	}
}

// noteOutcome records a call's outcome for Failing: answers about the schema
// (not found, incompatible, invalid) say nothing about the registry's health,
// nor does a call its caller gave up on.
func (r *Registry) noteOutcome(ctx context.Context, err error) {
	var answer *RegistryError
	switch {
	case err != nil && ctx.Err() != nil:
		return
	case errors.As(err, &answer) && !errors.Is(err, ErrRegistryUnavailable) &&
		answer.Status != http.StatusUnauthorized && answer.Status != http.StatusForbidden:
		err = nil // the registry answered about the schema: it works
	}
	r.mu.Lock()
	r.failing = err
	r.mu.Unlock()
}

func (r *Registry) once(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return fmt.Errorf("schema registry request: %w", err)
	}
	req.Header.Set("Accept", "application/vnd.schemaregistry.v1+json, application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	}
	if r.user != "" {
		req.SetBasicAuth(r.user, r.pass)
	}
	res, err := r.http.Do(req)
	if err != nil {
		// url.Error repeats the URL, which holds no credentials (they travel in a header).
		var untrusted *tls.CertificateVerificationError
		if errors.As(err, &untrusted) {
			// Not a passing outage: retrying cannot help.
			return fmt.Errorf("schema registry %s does not present a certificate this process trusts (kafka.schema_registry_ca_file names the CA of a private registry): %s %s: %v",
				r.base, method, r.base+path, unwrapURLError(err))
		}
		return fmt.Errorf("%w: %s %s: %v", ErrRegistryUnavailable, method, r.base+path, unwrapURLError(err))
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%w: read answer of %s %s: %v", ErrRegistryUnavailable, method, r.base+path, err)
	}
	if res.StatusCode/100 != 2 {
		e := &RegistryError{URL: r.base, Status: res.StatusCode}
		var body struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &body) == nil {
			e.Code, e.Message = body.Code, body.Message
		}
		if e.Message == "" {
			e.Message = strings.TrimSpace(string(data[:min(len(data), 300)]))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("schema registry %s: %s %s: malformed answer: %v", r.base, method, path, err)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL masks the password of a URL with credentials.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + "xxxxx" + raw[i:]
			}
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// RedactRegistryURL returns a registry URL with its password, if any, masked.
func RedactRegistryURL(raw string) string { return redactURL(raw) }
