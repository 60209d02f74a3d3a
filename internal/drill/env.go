// Package drill runs the failover drill and the scale measurement of issue
// 20 against a cluster of scripts/cluster: load through the HAProxy front
// (pre-signs, the simulated WeChat user signing, WeChat's notifications,
// contract reads, a feed follower), the leader's replication frozen and the
// leader killed, and what the failover cost, measured from the outside.
package drill

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Env is the cluster.env that `scripts/cluster up` writes: every port, pid,
// URL and token of the cluster, by name.
type Env map[string]string

// LoadEnv reads the cluster.env at path as bash reads it (its values are
// shell-quoted).
func LoadEnv(ctx context.Context, path string) (Env, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cluster.env: %w", err)
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", `set -a; . "$0"; env -0`, path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", path, err)
	}
	env := Env{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"FRONT_URL", "SIM_URL", "APP_TOKEN", "OPS_TOKEN", "DB_RW_URL", "PATRONI_NODES"} {
		if env[k] == "" {
			return nil, fmt.Errorf("%s has no %s", path, k)
		}
	}
	return env, nil
}
