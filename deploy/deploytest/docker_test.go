package deploytest

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(src string) []instruction {
	var out []instruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
	}
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return out
}

// stage is the instructions from one FROM to the next.
type stage struct {
	from string
	name string
	body []instruction
}

func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body = append(out[len(out)-1].body, in)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := parseDockerfile(string(readFile(t, "deploy/docker/Dockerfile")))
	args := map[string]string{}
	for _, in := range ins {
		if in.cmd == "ARG" {
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		}
	}
	st := stages(ins)
	if len(st) < 2 {
		t.Fatalf("%d stages: want a build stage and a runtime stage", len(st))
	}
	build, final := st[0], st[len(st)-1]

	// The Go in the builder must be at least the go directive of go.mod.
	goMod := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(readFile(t, "go.mod")))
	goImage := regexp.MustCompile(`^(\d+)\.(\d+)`).FindStringSubmatch(args["GO_VERSION"])
	if !strings.HasPrefix(build.from, "golang:${GO_VERSION}") || goMod == nil || goImage == nil ||
		versionLess(goImage[1:], goMod[1:]) {
		t.Errorf("builder %s with GO_VERSION=%s cannot build go.mod's %q", build.from, args["GO_VERSION"], goMod[0])
	}
	var buildCmd string
	cgo := false
	for _, in := range build.body {
		if in.cmd == "ENV" && strings.Contains(in.args, "CGO_ENABLED=1") {
			cgo = true
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildCmd = in.args
		}
	}
	if !cgo {
		t.Error("the build stage must set CGO_ENABLED=1: DuckDB is linked through cgo")
	}
	out := regexp.MustCompile(`-o (\S+) \./cmd/starstream$`).FindStringSubmatch(buildCmd)
	if out == nil {
		t.Fatalf("no `go build ... -o <path> ./cmd/starstream` in the build stage (got %q)", buildCmd)
	}

	// The runtime stage runs that binary as the non-root user the k8s pods expect.
	var user, entrypoint string
	var copied, exposed bool
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			copied = copied || (strings.Contains(in.args, "--from="+build.name) && strings.Contains(in.args, out[1]))
		case "EXPOSE":
			exposed = exposed || slices.Contains(strings.Fields(in.args), "8080")
		}
	}
	if want := fmt.Sprintf("%d:%d", imageUID, imageUID); user != want {
		t.Errorf("runtime USER %q, want %s (numeric, non-root: runAsNonRoot can only verify a numeric UID)", user, want)
	}
	if !copied {
		t.Errorf("the runtime stage does not copy %s from stage %q", out[1], build.name)
	}
	if !strings.HasPrefix(entrypoint, `["`) || !strings.Contains(entrypoint, "/starstream\"") {
		t.Errorf("ENTRYPOINT %s: want the exec form running the binary, so compose and k8s pass subcommands as args", entrypoint)
	}
	if !exposed {
		t.Error("EXPOSE 8080 missing")
	}
	runtimeBase := strings.NewReplacer("${DEBIAN_RELEASE}", args["DEBIAN_RELEASE"]).Replace(final.from)
	buildBase := strings.NewReplacer("${GO_VERSION}", args["GO_VERSION"], "${DEBIAN_RELEASE}", args["DEBIAN_RELEASE"]).Replace(build.from)
	if release := args["DEBIAN_RELEASE"]; release == "" || !strings.HasSuffix(buildBase, "-"+release) || !strings.Contains(runtimeBase, release) {
		t.Errorf("builder %s and runtime %s must share a Debian release: the cgo binary links against its glibc and libstdc++", buildBase, runtimeBase)
	}
}

func versionLess(a, b []string) bool {
	for i := range a {
		x, _ := strconv.Atoi(a[i])
		y, _ := strconv.Atoi(b[i])
		if x != y {
			return x < y
		}
	}
	return false
}

func TestDockerIgnoreKeepsLocalStateOut(t *testing.T) {
	t.Parallel()
	lines := strings.Split(string(readFile(t, "deploy/docker/Dockerfile.dockerignore")), "\n")
	for _, want := range []string{".git", ".data", ".cache"} {
		if !slices.Contains(lines, want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}
}
