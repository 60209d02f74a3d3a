package config

import (
	"strings"
	"testing"
	"time"
)

// config owns the defaults the flows and the console run with: an empty
// environment yields each of them, and CONTRACTD_RECONCILE_AFTER moves the
// minimum age (and first gap) but not the look-back.
func TestReconcileSettingsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name      string
		got, want time.Duration
	}{
		{"ReconcileAfter", c.ReconcileAfter, DefaultReconcileAfter},
		{"ReconcileLookBack", c.ReconcileLookBack, DefaultReconcileLookBack},
		{"LeaseTTL", c.LeaseTTL, DefaultLeaseTTL},
		{"LeaseWait", c.LeaseWait, DefaultLeaseWait},
		{"DBLockTimeout", c.DBLockTimeout, DefaultDBLockTimeout},
		{"DBStatementTimeout", c.DBStatementTimeout, DefaultDBStatementTimeout},
	} {
		if d.got != d.want || d.want <= 0 {
			t.Errorf("%s = %s, want the default %s", d.name, d.got, d.want)
		}
	}
	env["CONTRACTD_RECONCILE_AFTER"] = "90s"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.ReconcileAfter != 90*time.Second || c.ReconcileLookBack != DefaultReconcileLookBack {
		t.Fatalf("with CONTRACTD_RECONCILE_AFTER=90s: after %s look-back %s (%v)", c.ReconcileAfter, c.ReconcileLookBack, err)
	}
}

// The healing after a failover runs with config's defaults (the timeline
// read every 5s, a window of an hour) unless CONTRACTD_TIMELINE_INTERVAL
// and CONTRACTD_HEAL_WINDOW say otherwise; neither takes a non-positive
// duration.
func TestHealSettingsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.TimelineInterval != DefaultTimelineInterval || c.HealWindow != DefaultHealWindow ||
		DefaultTimelineInterval != 5*time.Second || DefaultHealWindow != time.Hour {
		t.Fatalf("defaults: interval %s window %s (%v)", c.TimelineInterval, c.HealWindow, err)
	}
	env["CONTRACTD_TIMELINE_INTERVAL"], env["CONTRACTD_HEAL_WINDOW"] = "2s", "3h"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.TimelineInterval != 2*time.Second || c.HealWindow != 3*time.Hour {
		t.Fatalf("overridden: interval %s window %s (%v)", c.TimelineInterval, c.HealWindow, err)
	}
	for _, bad := range []string{"0s", "-1m", "soon"} {
		env["CONTRACTD_HEAL_WINDOW"] = bad
		if _, err := Load(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "CONTRACTD_HEAL_WINDOW") {
			t.Errorf("CONTRACTD_HEAL_WINDOW=%s: %v, want an error naming it", bad, err)
		}
	}
}
