package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/wechatpaysim"
	"go.yaml.in/yaml/v3"
)

// repoFile is the path of a file at the repository's root.
func repoFile(name string) string { return filepath.Join("..", "..", name) }

// composeCommands are the Compose commands the README names that are
// installed here: `docker compose` (Compose v2, a docker CLI plugin) and
// `docker-compose` (Compose v1, the one Debian bookworm packages, which
// scripts/test installs when neither is present). At least one must be.
func composeCommands(t *testing.T) [][]string {
	t.Helper()
	var cmds [][]string
	if docker, err := exec.LookPath("docker"); err == nil {
		v := exec.Command(docker, "compose", "version")
		v.Env = composeEnv(t)
		if v.Run() == nil {
			cmds = append(cmds, []string{docker, "compose"})
		}
	}
	if bin, err := exec.LookPath("docker-compose"); err == nil {
		cmds = append(cmds, []string{bin})
	}
	if len(cmds) == 0 {
		t.Fatal("neither `docker compose` nor `docker-compose` is installed (scripts/test installs Debian's docker-compose)")
	}
	return cmds
}

// composeEnv is the environment Compose runs in: PATH, an empty HOME and
// where docker finds its CLI plugins, nothing else from the test's
// environment, so only the file's defaults apply.
func composeEnv(t *testing.T) []string {
	dockerConfig := os.Getenv("DOCKER_CONFIG")
	if dockerConfig == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dockerConfig = filepath.Join(home, ".docker")
		}
	}
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_CONFIG=" + dockerConfig}
}

// composeConfig runs `<compose> config` on docker-compose.yml with the
// given profiles and returns the resolved file.
func composeConfig(t *testing.T, compose []string, profiles ...string) string {
	t.Helper()
	args := append(slices.Clone(compose[1:]), "-f", repoFile("docker-compose.yml"))
	for _, p := range profiles {
		args = append(args, "--profile", p)
	}
	cmd := exec.Command(compose[0], append(args, "config")...)
	cmd.Env = composeEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s config %v: %v\n%s", strings.Join(compose, " "), profiles, err, out)
	}
	return string(out)
}

// composePort is a published port as "[host_ip:]published:target", read
// from either form `config` prints: Compose v1's string or Compose v2's
// mapping.
type composePort string

// UnmarshalYAML reads the string form or the mapping form.
func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*p = composePort(n.Value)
		return nil
	}
	var m struct {
		HostIP    string `yaml:"host_ip"`
		Published string `yaml:"published"`
		Target    string `yaml:"target"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	s := m.Published + ":" + m.Target
	if m.HostIP != "" {
		s = m.HostIP + ":" + s
	}
	*p = composePort(s)
	return nil
}

// composeFile is the part of a resolved compose file the checks read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Entrypoint  []string          `yaml:"entrypoint"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Profiles    []string          `yaml:"profiles"`
		Ports       []composePort     `yaml:"ports"`

		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

func TestComposeFileIsAcceptedAndSetsOnlyVariablesTheProgramsRead(t *testing.T) {
	t.Parallel()
	for _, compose := range composeCommands(t) {
		name := strings.Join(append([]string{filepath.Base(compose[0])}, compose[1:]...), " ")
		t.Run(name, func(t *testing.T) {
			composeConfig(t, compose) // without the simulator profile
			var f composeFile
			if err := yaml.Unmarshal([]byte(composeConfig(t, compose, "sim")), &f); err != nil {
				t.Fatal(err)
			}
			checkComposeFile(t, f)
		})
	}
}

// checkComposeFile checks the resolved compose file with the simulator
// profile.
func checkComposeFile(t *testing.T, f composeFile) {
	t.Helper()
	for _, want := range []string{"postgres", "migrate", "contractd", "sim-keys", "sim"} {
		if _, ok := f.Services[want]; !ok {
			t.Fatalf("docker-compose.yml has no service %s", want)
		}
	}
	for name, s := range f.Services {
		if s.Image != "contractd:local" {
			continue
		}
		program, known := "contractd", config.Variables
		if len(s.Entrypoint) > 0 && strings.HasSuffix(s.Entrypoint[0], "/wechatpay-sim") {
			program, known = "wechatpay-sim", wechatpaysim.EnvVariables
			if !slices.Contains(s.Profiles, "sim") {
				t.Errorf("service %s runs the simulator outside the sim profile", name)
			}
		}
		for k := range s.Environment {
			if !slices.Contains(known, k) {
				t.Errorf("service %s sets %s, which %s does not read", name, k, program)
			}
		}
		for _, k := range []string{"CONTRACTD_HTTP_ADDR", "SIM_ADDR"} {
			if v, ok := s.Environment[k]; ok && !strings.HasPrefix(v, "0.0.0.0:") {
				t.Errorf("service %s: %s=%s, want all interfaces inside the container", name, k, v)
			}
		}
	}
	// What is advertised is what a browser on the host opens.
	sim := f.Services["sim"]
	if u := sim.Environment["SIM_PUBLIC_URL"]; !strings.HasPrefix(u, "http://127.0.0.1:") && !strings.HasPrefix(u, "http://localhost:") {
		t.Errorf("SIM_PUBLIC_URL %q is not a URL a browser on the host opens", u)
	}
	pg := f.Services["postgres"].Ports
	if len(pg) == 0 {
		t.Error("Postgres is not published on the host")
	}
	for _, p := range pg {
		if parts := strings.Split(string(p), ":"); len(parts) < 2 || parts[len(parts)-2] == "5432" {
			t.Errorf("Postgres published as %q: host port 5432 is the host's own Postgres", p)
		}
	}
	for _, name := range []string{"postgres", "contractd", "sim"} {
		if f.Services[name].Healthcheck == nil {
			t.Errorf("service %s has no health check", name)
		}
	}
	if hc := f.Services["contractd"].Healthcheck; hc != nil && !slices.Equal(hc.Test, []string{"CMD", "/usr/local/bin/contractd", "healthcheck"}) {
		t.Errorf("contractd's health check %v, want its own healthcheck command (the image has no shell)", hc.Test)
	}
	if c := f.Services["migrate"].Command; !slices.Equal(c, []string{"migrate", "up"}) {
		t.Errorf("migrate runs %v", c)
	}
}

// dockerStage is one FROM ... stage of a Dockerfile.
type dockerStage struct {
	From         string
	Instructions []string // upper-case instruction and its arguments, continuation lines joined
}

func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		instr, args, _ := strings.Cut(line, " ")
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			stages = append(stages, dockerStage{From: strings.TrimSpace(args)})
			return
		}
		if len(stages) == 0 {
			t.Fatalf("%s: %s before the first FROM", path, instr)
		}
		stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, instr+" "+strings.TrimSpace(args))
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

func TestDockerfileIsMultiStageNonRootWithoutToolchain(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t, repoFile("Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(stages))
	}
	final := stages[len(stages)-1]
	toolchain := regexp.MustCompile(`(?i)\b(golang|go:|/go\b|gcc|build-essential)`)
	if toolchain.MatchString(final.From) {
		t.Errorf("final stage FROM %s carries a toolchain", final.From)
	}
	var user string
	for _, in := range final.Instructions {
		instr, args, _ := strings.Cut(in, " ")
		switch instr {
		case "USER":
			user = args
		case "RUN":
			t.Errorf("final stage runs %q: it must only copy the built binaries (no shell there)", args)
		case "COPY", "ADD":
			if !strings.Contains(args, "--from=") {
				t.Errorf("final stage %s %q copies from the build context, not the build stage", instr, args)
			}
			if toolchain.MatchString(args) {
				t.Errorf("final stage %s %q copies a toolchain", instr, args)
			}
		}
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("final stage USER %q, want a non-root user", user)
	}
	if !slices.ContainsFunc(final.Instructions, func(in string) bool {
		return strings.HasPrefix(in, "HEALTHCHECK ") && strings.Contains(in, "contractd") && strings.Contains(in, "healthcheck")
	}) {
		t.Error("final stage has no HEALTHCHECK through contractd healthcheck")
	}
	if !slices.ContainsFunc(final.Instructions, func(in string) bool {
		return strings.HasPrefix(in, "ENTRYPOINT ") && strings.Contains(in, "contractd")
	}) {
		t.Error("final stage does not run contractd")
	}
	if !slices.ContainsFunc(stages[0].Instructions, func(in string) bool {
		return strings.HasPrefix(in, "RUN ") && strings.Contains(in, "CGO_ENABLED=0") && strings.Contains(in, "go build")
	}) {
		t.Error("the build stage does not build static binaries (CGO_ENABLED=0 go build)")
	}
}

// Each channel's walkthrough in the README is, line for line, the block a
// script under scripts/walkthrough runs (scripts/walkthroughs runs them all
// against contractd dev in CI).
func TestREADMEWalkthroughsAreTheScripts(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(repoFile("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	marker := regexp.MustCompile("(?s)<!-- walkthrough: (scripts/walkthrough/[a-z0-9-]+\\.sh) -->\n```sh\n(.*?)```\n")
	found := marker.FindAllStringSubmatch(string(readme), -1)
	scripts, err := filepath.Glob(repoFile("scripts/walkthrough/*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, s := range scripts {
		if filepath.Base(s) != "lib.sh" {
			want++
		}
	}
	if want != 6 || len(found) != want {
		t.Fatalf("README shows %d walkthroughs, scripts/walkthrough holds %d; want the six channels in both", len(found), want)
	}
	for _, m := range found {
		b, err := os.ReadFile(repoFile(m[1]))
		if err != nil {
			t.Fatalf("README names %s: %v", m[1], err)
		}
		_, body, ok := strings.Cut(string(b), "# README:begin\n")
		body, _, ok2 := strings.Cut(body, "# README:end\n")
		if !ok || !ok2 {
			t.Fatalf("%s lacks the README:begin/end markers", m[1])
		}
		if body != m[2] {
			t.Errorf("README's block for %s differs from the script:\nREADME:\n%s\nscript:\n%s", m[1], m[2], body)
		}
	}
}

// Every curl in a walkthrough fails on an HTTP error with the body shown
// (--fail-with-body): -f alone would hide our JSON error, the one thing
// that says what went wrong.
func TestWalkthroughsShowTheErrorBody(t *testing.T) {
	t.Parallel()
	scripts, err := filepath.Glob(repoFile("scripts/walkthrough/*.sh"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no walkthrough scripts: %v", err)
	}
	shortFail := regexp.MustCompile(`^-[a-zA-Z]*f[a-zA-Z]*$`)
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			words := strings.Fields(line)
			for j, w := range words {
				if w != "curl" && !strings.HasSuffix(w, "(curl") {
					continue
				}
				withBody := false
				for _, o := range words[j+1:] {
					switch {
					case o == "|" || o == "&&" || o == ";":
					case shortFail.MatchString(o) || o == "--fail":
						t.Errorf("%s:%d: curl %s hides the error body; use --fail-with-body", filepath.Base(s), i+1, o)
						continue
					case o == "--fail-with-body":
						withBody = true
						continue
					default:
						continue
					}
					break
				}
				if !withBody {
					t.Errorf("%s:%d: curl without --fail-with-body: %s", filepath.Base(s), i+1, line)
				}
			}
		}
	}
}

// Published ports read the same from Compose v1's string form and Compose
// v2's mapping form.
func TestComposePortReadsBothForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       composePort
	}{
		{"v1 string", `"127.0.0.1:55432:5432"`, "127.0.0.1:55432:5432"},
		{"v1 string without host", `"8080:8080"`, "8080:8080"},
		{"v2 mapping", "mode: ingress\nhost_ip: 127.0.0.1\ntarget: 5432\npublished: \"55432\"\nprotocol: tcp\n", "127.0.0.1:55432:5432"},
		{"v2 mapping without host", "mode: ingress\ntarget: 8080\npublished: \"8080\"\nprotocol: tcp\n", "8080:8080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p composePort
			if err := yaml.Unmarshal([]byte(tc.yaml), &p); err != nil {
				t.Fatal(err)
			}
			if p != tc.want {
				t.Fatalf("read %q, want %q", p, tc.want)
			}
		})
	}
}
