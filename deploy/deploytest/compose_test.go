package deploytest

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// starstreamServices run the starstream image; the others are its infrastructure.
var (
	starstreamServices = []string{"capture", "pipelines"}
	demoServices       = []string{"seed", "traffic"}
	infraServices      = []string{"postgres", "kafka", "prometheus", "grafana"}
)

// loadCompose loads docker-compose.yml as `docker compose` does: interpolation from env
// (and nothing else: the test's own environment must not leak in), schema validation,
// normalisation, paths resolved against the project directory.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("starstream", true)
		o.Profiles = profiles
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q", name)
	}
	return s
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, nil)
	if p.Name != "starstream" {
		t.Errorf("project name %q, want starstream", p.Name)
	}
	want := append(slices.Clone(infraServices), starstreamServices...)
	if m := missingKeys(want, p.Services); len(m) > 0 {
		t.Errorf("services missing from the default profile: %v", m)
	}
	for _, name := range demoServices {
		if _, ok := p.Services[name]; ok {
			t.Errorf("%s runs without --profile demo: it must be opt-in", name)
		}
	}
	demo := loadCompose(t, nil, "demo")
	if m := missingKeys(demoServices, demo.Services); len(m) > 0 {
		t.Errorf("profile demo lacks %v", m)
	}
}

func TestComposePostgresHasLogicalWAL(t *testing.T) {
	t.Parallel()
	pg := service(t, loadCompose(t, nil), "postgres")
	repo, tag, _ := strings.Cut(pg.Image, ":")
	if repo != "postgres" || (tag != "16" && !strings.HasPrefix(tag, "16.") && !strings.HasPrefix(tag, "16-")) {
		t.Errorf("postgres image %q, want postgres:16", pg.Image)
	}
	settings := map[string]string{}
	for i, arg := range pg.Command {
		if arg == "-c" && i+1 < len(pg.Command) {
			k, v, _ := strings.Cut(pg.Command[i+1], "=")
			settings[k] = v
		}
	}
	if settings["wal_level"] != "logical" {
		t.Errorf("postgres command %v does not set -c wal_level=logical", pg.Command)
	}
	for _, k := range []string{"max_replication_slots", "max_wal_senders"} {
		if v, ok := settings[k]; ok {
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				t.Errorf("%s=%s leaves no room for the slot", k, v)
			}
		}
	}
}

func TestComposeKafkaIsKRaft41(t *testing.T) {
	t.Parallel()
	k := service(t, loadCompose(t, nil), "kafka")
	repo, tag, _ := strings.Cut(k.Image, ":")
	if repo != "apache/kafka" {
		t.Errorf("kafka image %q, want apache/kafka", k.Image)
	}
	v := regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`).FindStringSubmatch(tag)
	if v == nil {
		t.Fatalf("kafka tag %q is not a pinned x.y.z release", tag)
	}
	major, _ := strconv.Atoi(v[1])
	minor, _ := strconv.Atoi(v[2])
	if major < 4 || (major == 4 && minor < 1) {
		t.Errorf("kafka %s: want 4.1 or newer (4.0.0 rejects kafka-go's JoinGroup v1)", tag)
	}
	env := func(name string) string {
		if p := k.Environment[name]; p != nil {
			return *p
		}
		return ""
	}
	roles := strings.Split(env("KAFKA_PROCESS_ROLES"), ",")
	if !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
		t.Errorf("KAFKA_PROCESS_ROLES=%q: want a single KRaft node (broker,controller)", env("KAFKA_PROCESS_ROLES"))
	}
	for name := range k.Environment {
		if strings.Contains(name, "ZOOKEEPER") {
			t.Errorf("%s: Kafka 4 has no ZooKeeper", name)
		}
	}
	// KRaft formats its storage with CLUSTER_ID: a base64url-encoded 16-byte UUID.
	if id, err := base64.RawURLEncoding.DecodeString(env("CLUSTER_ID")); err != nil || len(id) != 16 {
		t.Errorf("CLUSTER_ID %q is not a base64url UUID (err %v)", env("CLUSTER_ID"), err)
	}
	if env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR") != "1" {
		t.Error("a single broker needs KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1, or consumer groups never start")
	}
}

func TestComposeStarstreamWaitsForHealthyDependencies(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, nil, "demo")
	root := repoRoot(t)
	wants := map[string][]string{
		"capture":   {"postgres", "kafka"},
		"pipelines": {"kafka"},
		"seed":      {"postgres"},
		"traffic":   {"postgres"},
	}
	for name, deps := range wants {
		s := service(t, p, name)
		for _, dep := range deps {
			d, ok := s.DependsOn[dep]
			if !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: depends_on %s must have condition service_healthy (got %+v)", name, dep, d)
			}
		}
		if s.Build == nil || filepath.Clean(s.Build.Context) != root || s.Build.Dockerfile != "deploy/docker/Dockerfile" {
			t.Errorf("%s: want build {context: ., dockerfile: deploy/docker/Dockerfile}, got %+v", name, s.Build)
		}
	}
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				continue
			}
			if hc := p.Services[dep].HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "docker", "Dockerfile")); err != nil {
		t.Error(err)
	}
}

func TestComposeLongRunningServicesHaveHealthchecks(t *testing.T) {
	t.Parallel()
	for name, s := range loadCompose(t, nil).Services {
		if hc := s.HealthCheck; hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
}

func TestComposeStarstreamServices(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, nil, "demo")
	cfg, ok := p.Configs["starstream"]
	if !ok {
		t.Fatal("no top-level config starstream")
	}
	b, err := os.ReadFile(cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	doc := checkConfigFile(t, cfg.File, b)
	if addr, _ := doc["http"]["addr"].(string); strings.HasPrefix(addr, "127.") || strings.HasPrefix(addr, "localhost") {
		t.Errorf("http.addr %q: inside a container Prometheus and healthchecks cannot reach loopback", addr)
	}
	var deployed []string
	for _, name := range append(slices.Clone(starstreamServices), demoServices...) {
		s := service(t, p, name)
		if !slices.ContainsFunc(s.Configs, func(c types.ServiceConfigObjConfig) bool {
			return c.Source == "starstream" && c.Target == "/etc/starstream/starstream.yaml"
		}) {
			t.Errorf("%s does not mount the starstream config at /etc/starstream/starstream.yaml", name)
		}
		if v := s.Environment["STARSTREAM_CONFIG"]; v == nil || *v != "/etc/starstream/starstream.yaml" {
			t.Errorf("%s: STARSTREAM_CONFIG must name the mounted config", name)
		}
		for k := range s.Environment {
			checkEnvName(t, name, k)
		}
		if !s.ReadOnly {
			t.Errorf("%s: read_only root filesystem, as in Kubernetes", name)
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no subcommand", name)
			continue
		}
		if s.Command[0] == "run" {
			for _, arg := range s.Command[1:] {
				if list, ok := strings.CutPrefix(arg, "--pipelines="); ok {
					deployed = append(deployed, strings.Split(list, ",")...)
				}
			}
		}
	}
	slices.Sort(deployed)
	want := slices.Sorted(slices.Values(pipelines))
	if !slices.Equal(deployed, want) {
		t.Errorf("pipelines run by compose: %v, want each of %v once", deployed, want)
	}
}

// secretName matches environment variables that would hold a credential.
var secretName = regexp.MustCompile(`(?i)(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY|PRIVATE_KEY)`)

// urlPassword matches a URL carrying a password (user:password@host).
var urlPassword = regexp.MustCompile(`://[^/@\s:]+:[^/@\s]+@`)

func TestComposeHasNoPlainTextSecrets(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, nil, "demo")
	devDir := filepath.Join(root, "deploy", "docker", "dev-secrets")
	for name, s := range p.Services {
		for k, v := range s.Environment {
			if v == nil {
				continue
			}
			if urlPassword.MatchString(*v) {
				t.Errorf("%s: %s carries a password in a URL", name, k)
			}
			if !secretName.MatchString(k) {
				continue
			}
			if !strings.HasSuffix(k, "_FILE") || !strings.HasPrefix(*v, "/run/secrets/") {
				t.Errorf("%s: %s is a credential written inline; pass it as a *_FILE pointing into /run/secrets/", name, k)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := p.Secrets[sec.Source]; !ok {
				t.Errorf("%s uses undeclared secret %s", name, sec.Source)
			}
		}
	}
	// The only credentials are the documented local-dev defaults, in files.
	readme := string(readFile(t, "deploy/docker/README.md"))
	for name, sec := range p.Secrets {
		if sec.File == "" || sec.Environment != "" || sec.Content != "" {
			t.Errorf("secret %s must come from a file (got %+v)", name, sec)
			continue
		}
		if filepath.Dir(sec.File) != devDir {
			t.Errorf("secret %s defaults to %s, outside the documented deploy/docker/dev-secrets/", name, sec.File)
		}
		if !strings.Contains(readme, "dev-secrets/") {
			t.Error("deploy/docker/README.md does not document dev-secrets/")
		}
		value, err := os.ReadFile(sec.File)
		if err != nil {
			t.Fatalf("secret %s: %v", name, err)
		}
		pw := strings.TrimSpace(string(value))
		if !strings.Contains(pw, "dev") {
			t.Errorf("secret %s: the default %s must read as an obvious local-dev value", name, sec.File)
		}
		for _, f := range []string{"docker-compose.yml", "deploy/docker/starstream.yaml"} {
			if strings.Contains(string(readFile(t, f)), pw) {
				t.Errorf("%s contains the value of secret %s in plain text", f, name)
			}
		}
	}
}

func TestComposeInterpolatesOverrides(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, map[string]string{
		"PG_PASSWORD_FILE":          "/srv/secrets/pg",
		"STARSTREAM_WAREHOUSE_KIND": "bigquery",
	})
	if got := p.Secrets["postgres_password"].File; got != "/srv/secrets/pg" {
		t.Errorf("PG_PASSWORD_FILE did not override the secret's file: %q", got)
	}
	for _, name := range starstreamServices {
		if v := service(t, p, name).Environment["STARSTREAM_WAREHOUSE_KIND"]; v == nil || *v != "bigquery" {
			t.Errorf("%s: STARSTREAM_WAREHOUSE_KIND not taken from the environment", name)
		}
	}
	def := loadCompose(t, nil)
	if v := service(t, def, "pipelines").Environment["STARSTREAM_WAREHOUSE_KIND"]; v == nil || *v != "duckdb" {
		t.Error("the default warehouse must be duckdb")
	}
}

func TestComposePublishesOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	for name, s := range loadCompose(t, nil, "demo").Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s:%s on %q: bind it to 127.0.0.1", name, port.Published, strconv.Itoa(int(port.Target)), port.HostIP)
			}
		}
	}
}

func TestComposeBindMountsExist(t *testing.T) {
	t.Parallel()
	for name, s := range loadCompose(t, nil, "demo").Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s: %v", name, v.Source, err)
			}
		}
	}
}
