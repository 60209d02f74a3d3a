package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdPort makes sure something listens on 127.0.0.1:port while t runs:
// this test's own listener, or whoever already holds it.
func holdPort(t *testing.T, port int) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if ln, err := net.Listen("tcp", addr); err == nil {
		t.Cleanup(func() { ln.Close() })
		return
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("%s can neither be listened on nor reached: %v", addr, err)
	}
	c.Close()
}

// runWalkthroughs runs scripts/walkthroughs with extra environment and
// returns its exit code and output.
func runWalkthroughs(t *testing.T, extra ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/walkthroughs")
	cmd.Dir = "../.."
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "WALKTHROUGH_API_PORT" && k != "WALKTHROUGH_SIM_PORT" && k != "API" && k != "SIM" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, extra...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatalf("scripts/walkthroughs: %v\n%s", err, &out)
	}
	return 0, out.String()
}

// scripts/walkthroughs picks free ports: with its old fixed defaults
// (18080, 18090) taken, every walkthrough still ends signed, then
// terminated, with the app server told both (contractd dev's webhook
// receiver printed them). A port the caller chose that is taken stops it
// at once, naming the variable.
func TestWalkthroughsScriptPortsFreeOrRefusedUpFront(t *testing.T) {
	// Not parallel: this and the other test that runs a script building
	// bin/ (scripts/dev, scripts/walkthroughs) must not rewrite the binary
	// while the other one starts it.
	holdPort(t, 18080)
	holdPort(t, 18090)

	t.Run("DefaultsPickFreePorts", func(t *testing.T) {
		code, out := runWalkthroughs(t)
		if code != 0 {
			t.Fatalf("exit %d with 18080 and 18090 taken, want 0:\n%s", code, out)
		}
		for _, w := range []string{"app", "h5", "jsapi", "mini-program", "password-exempt", "web"} {
			if !strings.Contains(out, "walkthrough "+w+": signed, terminated, and the app server was told both\n") {
				t.Errorf("walkthrough %s did not end signed, terminated and told:\n%s", w, out)
			}
		}
	})

	t.Run("ATakenChosenPortStopsItFirst", func(t *testing.T) {
		for _, v := range []string{"WALKTHROUGH_API_PORT", "WALKTHROUGH_SIM_PORT"} {
			port := "18080"
			if v == "WALKTHROUGH_SIM_PORT" {
				port = "18090"
			}
			code, out := runWalkthroughs(t, v+"="+port)
			if code == 0 || !strings.Contains(out, v+"="+port+", but 127.0.0.1:"+port+" is taken") {
				t.Fatalf("%s=%s (taken): exit %d, output %q; want a failure naming it", v, port, code, out)
			}
			if strings.Contains(out, "walkthrough ") || strings.Contains(out, "contractd dev on") {
				t.Fatalf("%s=%s (taken): the suite started anyway:\n%s", v, port, out)
			}
		}
	})
}
