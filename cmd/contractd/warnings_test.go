package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/contractd/contractd/config"
)

// TestServeLogsConfigurationWarnings: start-up logs each of the
// configuration's warnings (a deprecated variable name) at warn level,
// before anything that could fail, so that even a start-up that fails says
// them.
func TestServeLogsConfigurationWarnings(t *testing.T) {
	warning := config.DeprecatedLeaseWaitVariable + " is deprecated: rename it CONTRACTD_LEASE_WAIT"
	cfg := config.Config{DatabaseURL: "postgres://postgres@127.0.0.1:5432/postgres", DBMaxConns: 1, Warnings: []string{warning}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the database is never reached: serve fails at once
	var out bytes.Buffer
	if err := serve(ctx, cfg, false, newLogger("info", &out), nil, nil); err == nil {
		t.Fatal("serve with a cancelled context succeeded")
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), warning) {
			return
		}
	}
	t.Fatalf("no warn line saying %q in:\n%s", warning, out.String())
}
