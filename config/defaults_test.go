package config

import (
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
