package main

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/starstream/starstream/capture"
	"github.com/starstream/starstream/stream"
)

//go:embed defaults.yaml
var defaultYAML []byte

// Config is the whole service configuration: embedded defaults, then the YAML
// file, then STARSTREAM_<SECTION>_<KEY> environment variables, then flags.
type Config struct {
	Postgres struct {
		DSN          string `yaml:"dsn"`
		PasswordFile string `yaml:"password_file"` // overrides the DSN's password
		Schema       string `yaml:"schema"`
		Slot         string `yaml:"slot"`
		Publication  string `yaml:"publication"`
		// TLS to PostgreSQL: set here or in the DSN (the keys override the DSN's).
		SSLMode     string `yaml:"sslmode"`     // disable, allow, prefer, require, verify-ca, verify-full
		SSLRootCert string `yaml:"sslrootcert"` // CA file for verify-ca / verify-full
		SSLCert     string `yaml:"sslcert"`     // client certificate, optional
		SSLKey      string `yaml:"sslkey"`
	} `yaml:"postgres"`
	Kafka struct {
		Brokers           []string `yaml:"brokers"`
		Partitions        int      `yaml:"partitions"`
		ReplicationFactor int      `yaml:"replication_factor"`
		// SASL and TLS (stream.SecurityConfig): empty is plaintext without authentication.
		SASLMechanism    string `yaml:"sasl_mechanism"` // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
		SASLUsername     string `yaml:"sasl_username"`
		SASLPassword     string `yaml:"sasl_password"`      // prefer STARSTREAM_KAFKA_SASL_PASSWORD or the file
		SASLPasswordFile string `yaml:"sasl_password_file"` // read at start; overrides sasl_password
		TLS              bool   `yaml:"tls"`                // implied by tls_ca_file or tls_cert_file
		TLSCAFile        string `yaml:"tls_ca_file"`        // PEM roots; empty: the system's
		TLSServerName    string `yaml:"tls_server_name"`    // default: the broker's host
		TLSCertFile      string `yaml:"tls_cert_file"`      // client certificate for mutual TLS, optional
		TLSKeyFile       string `yaml:"tls_key_file"`
		// SchemaRegistryURL switches records to the Confluent wire format with their
		// schemas in that registry (Confluent REST API); empty: single-object
		// encoding with the schemas in the schema topic.
		SchemaRegistryURL          string `yaml:"schema_registry_url"`
		SchemaRegistryUsername     string `yaml:"schema_registry_username"`
		SchemaRegistryPassword     string `yaml:"schema_registry_password"`
		SchemaRegistryPasswordFile string `yaml:"schema_registry_password_file"` // overrides schema_registry_password
		SchemaRegistryCAFile       string `yaml:"schema_registry_ca_file"`       // PEM roots for an https registry; empty: the system's
	} `yaml:"kafka"`
	Warehouse struct {
		Kind                    string `yaml:"kind"` // duckdb or bigquery
		DuckDBPath              string `yaml:"duckdb_path"`
		BigQueryProject         string `yaml:"bigquery_project"`
		BigQueryDataset         string `yaml:"bigquery_dataset"`
		BigQueryLocation        string `yaml:"bigquery_location"`
		BigQueryCredentialsFile string `yaml:"bigquery_credentials_file"`
	} `yaml:"warehouse"`
	Pipelines struct {
		Namespace string `yaml:"namespace"` // prefix of output topics and groups
		MaxBatch  int    `yaml:"max_batch"`
	} `yaml:"pipelines"`
	HTTP struct {
		Addr string `yaml:"addr"` // status page, /metrics, /healthz, /readyz; empty turns it off
	} `yaml:"http"`
	Telemetry struct {
		OTLPEndpoint string `yaml:"otlp_endpoint"` // also push metrics over OTLP/gRPC when set
	} `yaml:"telemetry"`
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
	// Faults inject warehouse failures for chaos testing; keep them zero in production.
	Faults struct {
		SinkFailRate float64 `yaml:"sink_fail_rate"` // share of writes failing transiently (retried)
		SinkSlowRate float64 `yaml:"sink_slow_rate"` // share of writes delayed by sink_slow_ms
		SinkSlowMs   int     `yaml:"sink_slow_ms"`
	} `yaml:"faults"`
}

// LoadConfig reads the defaults, the optional file and the environment.
func LoadConfig(path string, environ []string) (Config, error) {
	var c Config
	if err := decodeStrict(defaultYAML, &c); err != nil {
		return c, fmt.Errorf("embedded defaults: %w", err)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(b, &c); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	if c.Kafka.SchemaRegistryPasswordFile != "" {
		b, err := os.ReadFile(c.Kafka.SchemaRegistryPasswordFile)
		if err != nil {
			return c, fmt.Errorf("kafka.schema_registry_password_file: %w", err)
		}
		c.Kafka.SchemaRegistryPassword = strings.TrimSpace(string(b))
	}
	if c.Postgres.PasswordFile != "" {
		b, err := os.ReadFile(c.Postgres.PasswordFile)
		if err != nil {
			return c, fmt.Errorf("postgres password file: %w", err)
		}
		dsn, err := withPassword(c.Postgres.DSN, strings.TrimSpace(string(b)))
		if err != nil {
			return c, err
		}
		c.Postgres.DSN = dsn
	}
	params := map[string]string{"sslmode": c.Postgres.SSLMode, "sslrootcert": c.Postgres.SSLRootCert,
		"sslcert": c.Postgres.SSLCert, "sslkey": c.Postgres.SSLKey}
	dsn, err := withParams(c.Postgres.DSN, params)
	if err != nil {
		return c, err
	}
	c.Postgres.DSN = dsn
	return c, nil
}

func decodeStrict(b []byte, c *Config) error {
	if err := checkTypes(b, c); err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err.Error() != "EOF" {
		return err
	}
	return nil
}

// checkTypes names the key of a value of the wrong kind (yaml.v3 would truncate
// 2.5 into an int, or report a type error without the key).
func checkTypes(b []byte, c *Config) error {
	var raw map[string]map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil // the strict decoder reports structural errors with their line
	}
	root := reflect.ValueOf(c).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Tag.Get("yaml")
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Tag.Get("yaml")
			v, ok := raw[section][key]
			if !ok || v == nil {
				continue
			}
			name := section + "." + key
			switch sv.Field(j).Kind() {
			case reflect.Int:
				if _, isInt := v.(int); !isInt {
					return fmt.Errorf("%s: %v is not a whole number", name, v)
				}
			case reflect.Float64:
				switch v.(type) {
				case int, float64:
				default:
					return fmt.Errorf("%s: %v is not a number", name, v)
				}
			case reflect.Slice:
				if _, isList := v.([]any); !isList {
					return fmt.Errorf("%s: %v is not a list", name, v)
				}
			case reflect.String:
				if _, isStr := v.(string); !isStr {
					return fmt.Errorf("%s: %v is not text (quote it)", name, v)
				}
			case reflect.Bool:
				if _, isBool := v.(bool); !isBool {
					return fmt.Errorf("%s: %v is not true or false", name, v)
				}
			}
		}
	}
	return nil
}

// applyEnv sets fields from STARSTREAM_<SECTION>_<KEY> variables, where SECTION
// and KEY are the YAML names upper-cased.
func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "STARSTREAM_") {
			env[k] = v
		}
	}
	root := reflect.ValueOf(c).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Tag.Get("yaml")
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Tag.Get("yaml")
			name := "STARSTREAM_" + strings.ToUpper(section+"_"+key)
			v, ok := env[name]
			if !ok {
				continue
			}
			f := sv.Field(j)
			switch f.Kind() {
			case reflect.String:
				f.SetString(v)
			case reflect.Int:
				n, err := strconv.Atoi(v)
				if err != nil {
					return fmt.Errorf("%s: %q is not a whole number", name, v)
				}
				f.SetInt(int64(n))
			case reflect.Float64:
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return fmt.Errorf("%s: %q is not a number", name, v)
				}
				f.SetFloat(x)
			case reflect.Slice:
				f.Set(reflect.ValueOf(strings.Split(v, ",")))
			case reflect.Bool:
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("%s: %q is not true or false", name, v)
				}
				f.SetBool(b)
			}
		}
	}
	return nil
}

// Validate checks the configuration; its errors never contain secrets.
func (c Config) Validate() error {
	var errs []error
	if c.Postgres.DSN == "" {
		errs = append(errs, errors.New("postgres.dsn is empty"))
	}
	if c.Postgres.Schema == "" {
		errs = append(errs, errors.New("postgres.schema is empty"))
	}
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("kafka.brokers is empty"))
	}
	for _, b := range c.Kafka.Brokers {
		_, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			errs = append(errs, fmt.Errorf("kafka.brokers: %q is not host:port with a port from 1 to 65535", b))
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q is not debug, info, warn or error", c.Log.Level))
	}
	if c.Kafka.SchemaRegistryURL != "" {
		if err := c.registry().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("kafka.schema_registry_url: %w", err))
		} else if _, err := stream.NewRegistry(c.registry(), nil); err != nil { // reads the CA file
			errs = append(errs, fmt.Errorf("kafka.schema_registry_ca_file: %w", err))
		}
	} else if c.Kafka.SchemaRegistryUsername != "" || c.Kafka.SchemaRegistryPassword != "" || c.Kafka.SchemaRegistryCAFile != "" {
		errs = append(errs, errors.New("kafka.schema_registry_username/password/ca_file are set but kafka.schema_registry_url is empty"))
	}
	if c.Kafka.Partitions < 1 || c.Kafka.ReplicationFactor < 1 {
		errs = append(errs, errors.New("kafka.partitions and kafka.replication_factor must be at least 1"))
	}
	switch c.Warehouse.Kind {
	case "duckdb":
		if c.Warehouse.DuckDBPath == "" {
			errs = append(errs, errors.New("warehouse.duckdb_path is empty"))
		}
	case "bigquery":
		if c.Warehouse.BigQueryProject == "" || c.Warehouse.BigQueryDataset == "" {
			errs = append(errs, errors.New("warehouse.bigquery_project and warehouse.bigquery_dataset are required for bigquery"))
		}
	default:
		errs = append(errs, fmt.Errorf("warehouse.kind %q is not duckdb or bigquery", c.Warehouse.Kind))
	}
	if c.Faults.SinkFailRate < 0 || c.Faults.SinkFailRate >= 1 {
		errs = append(errs, fmt.Errorf("faults.sink_fail_rate %g must be in [0, 1)", c.Faults.SinkFailRate))
	}
	if c.Faults.SinkSlowRate < 0 || c.Faults.SinkSlowRate > 1 || c.Faults.SinkSlowMs < 0 {
		errs = append(errs, errors.New("faults.sink_slow_rate must be in [0, 1] and faults.sink_slow_ms not negative"))
	}
	if c.Pipelines.MaxBatch < 1 {
		errs = append(errs, errors.New("pipelines.max_batch must be at least 1"))
	}
	switch c.Postgres.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		errs = append(errs, fmt.Errorf("postgres.sslmode %q is not disable, allow, prefer, require, verify-ca or verify-full", c.Postgres.SSLMode))
	}
	for key, path := range map[string]string{"postgres.sslrootcert": c.Postgres.SSLRootCert, "postgres.sslcert": c.Postgres.SSLCert,
		"postgres.sslkey": c.Postgres.SSLKey} {
		if _, err := os.Stat(path); path != "" && err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	if _, err := stream.NewSecurity(c.kafkaSecurity()); err != nil {
		errs = append(errs, prefixKeys("kafka.", err))
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); c.HTTP.Addr != "" && err != nil {
		errs = append(errs, fmt.Errorf("http.addr %q is not host:port", c.HTTP.Addr))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}

// registry is the schema registry client configuration.
func (c Config) registry() stream.RegistryConfig {
	return stream.RegistryConfig{URL: c.Kafka.SchemaRegistryURL, Username: c.Kafka.SchemaRegistryUsername,
		Password: c.Kafka.SchemaRegistryPassword, CAFile: c.Kafka.SchemaRegistryCAFile}
}

// Redacted returns the configuration as YAML with secrets masked.
func (c Config) Redacted() string {
	c.Postgres.DSN = capture.RedactDSN(c.Postgres.DSN)
	if c.Kafka.SASLPassword != "" {
		c.Kafka.SASLPassword = "xxxxx"
	}
	c.Kafka.SchemaRegistryURL = stream.RedactRegistryURL(c.Kafka.SchemaRegistryURL)
	if c.Kafka.SchemaRegistryPassword != "" {
		c.Kafka.SchemaRegistryPassword = "xxxxx"
	}
	b, _ := yaml.Marshal(c)
	return string(b)
}

// kafkaSecurity is the Kafka part of the configuration for stream.NewSecurity.
func (c Config) kafkaSecurity() stream.SecurityConfig {
	k := c.Kafka
	return stream.SecurityConfig{SASLMechanism: k.SASLMechanism, Username: k.SASLUsername, Password: k.SASLPassword,
		PasswordFile: k.SASLPasswordFile, TLS: k.TLS, TLSCAFile: k.TLSCAFile, TLSServerName: k.TLSServerName,
		TLSCertFile: k.TLSCertFile, TLSKeyFile: k.TLSKeyFile}
}

// secrets are the configured passwords, for the status page and the tests to
// look for; never printed.
func (c Config) secrets() []string {
	var out []string
	if pw := dsnPassword(c.Postgres.DSN); pw != "" {
		out = append(out, pw)
	}
	if c.Kafka.SASLPassword != "" {
		out = append(out, c.Kafka.SASLPassword)
	}
	if c.Kafka.SASLPasswordFile != "" {
		if b, err := os.ReadFile(c.Kafka.SASLPasswordFile); err == nil && strings.TrimSpace(string(b)) != "" {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	if pw := c.Kafka.SchemaRegistryPassword; pw != "" {
		out = append(out, pw)
	}
	if u, err := url.Parse(c.Kafka.SchemaRegistryURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw)
		}
	}
	return out
}

// prefixKeys puts prefix before each line of a joined error: stream names the
// keys under kafka: without the section.
func prefixKeys(prefix string, err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

// withParams sets connection parameters (the non-empty ones) in a URL or
// key=value DSN, replacing the DSN's own.
func withParams(dsn string, params map[string]string) (string, error) {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if v != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return dsn, nil
	}
	sort.Strings(keys)
	if !strings.Contains(dsn, "://") {
		for _, k := range keys {
			re := regexp.MustCompile(`(^|\s)` + k + `\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
			dsn = strings.TrimSpace(re.ReplaceAllString(dsn, ""))
			dsn += " " + k + "='" + strings.ReplaceAll(params[k], "'", `\'`) + "'"
		}
		return strings.TrimSpace(dsn), nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("postgres.dsn is not a URL to set sslmode/sslrootcert/sslcert/sslkey in")
	}
	q := u.Query()
	for _, k := range keys {
		q.Set(k, params[k])
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func withPassword(dsn, password string) (string, error) {
	if !strings.Contains(dsn, "://") {
		return dsn + " password='" + strings.ReplaceAll(password, "'", `\'`) + "'", nil
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return "", errors.New("postgres.dsn is not a URL with a user to attach the password file's password to")
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), nil
}
