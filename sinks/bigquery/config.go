package bigquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"time"

	"google.golang.org/api/option"

	"github.com/starstream/starstream/sinks"
)

// DefaultMaxRequestBytes keeps every AppendRows request well under the 10 MB
// limit of the Storage Write API, leaving room for the writer schema, stream
// name and framing.
const DefaultMaxRequestBytes = 9_000_000

// Config configures a Writer.
type Config struct {
	Project  string // Google Cloud project that owns the dataset
	Dataset  string // dataset holding the warehouse tables; created if missing
	Location string // dataset location for a new dataset ("US", "europe-west1"); empty: BigQuery's default
	// CredentialsFile is a service-account JSON key file; empty uses Application
	// Default Credentials. Only the path ever appears in errors and logs.
	CredentialsFile string
	// MaxStaleness is the tables' max_staleness option: how old CDC changes may be
	// when queried (cheaper queries); zero leaves BigQuery's default (always fresh).
	MaxStaleness time.Duration
	// MaxRequestBytes caps one AppendRows request; zero means DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Retry is the policy of the sinks.WithRetry decorator Open puts around the Writer.
	Retry sinks.RetryPolicy

	// WriteOptions and RESTOptions are appended to the options of the Storage
	// Write (gRPC) and BigQuery (REST) clients: endpoints and transport for tests.
	WriteOptions []option.ClientOption
	RESTOptions  []option.ClientOption
}

// Dataset IDs: letters, digits and underscores, up to 1,024 characters
// (https://cloud.google.com/bigquery/docs/datasets#dataset-naming).
var datasetID = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// Validate checks the configuration without touching the network or the disk.
func (c Config) Validate() error {
	if c.Project == "" {
		return fmt.Errorf("%w: project is required", ErrConfig)
	}
	if !datasetID.MatchString(c.Dataset) || len(c.Dataset) > 1024 {
		return fmt.Errorf("%w: dataset %q must be 1 to 1024 letters, digits or underscores", ErrConfig, c.Dataset)
	}
	if c.MaxStaleness < 0 {
		return fmt.Errorf("%w: max staleness must not be negative", ErrConfig)
	}
	if c.MaxRequestBytes < 0 || c.MaxRequestBytes >= 10_000_000 {
		return fmt.Errorf("%w: max request bytes must be below the 10 MB AppendRows limit", ErrConfig)
	}
	return nil
}

func (c Config) maxRequestBytes() int {
	if c.MaxRequestBytes == 0 {
		return DefaultMaxRequestBytes
	}
	return c.MaxRequestBytes
}

// credentials returns the auth option for the configured credentials. It reads
// the key file itself so that a missing or malformed file fails here with an
// error that names the path and never quotes the file's content.
func (c Config) credentials() ([]option.ClientOption, error) {
	if c.CredentialsFile == "" {
		return nil, nil // Application Default Credentials
	}
	data, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: credentials file %q does not exist", ErrConfig, c.CredentialsFile)
		}
		return nil, fmt.Errorf("%w: credentials file %q cannot be read", ErrConfig, c.CredentialsFile)
	}
	var key struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &key); err != nil {
		return nil, fmt.Errorf("%w: credentials file %q is not valid JSON", ErrConfig, c.CredentialsFile)
	}
	if key.Type != "service_account" {
		return nil, fmt.Errorf("%w: credentials file %q is not a service_account key", ErrConfig, c.CredentialsFile)
	}
	// The typed option refuses any other kind of credential configuration
	// (option.WithCredentialsFile is deprecated for accepting any).
	return []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, data)}, nil
}
