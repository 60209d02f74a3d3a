package lifecycle_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/lifecycle"
)

// The flows take the settings config owns as values: New refuses to run
// without them, naming each one missing, rather than fall back on a default
// of its own.
func TestNewRequiresTheSettingsConfigOwns(t *testing.T) {
	full := sweepOptions(10)
	for _, tc := range []struct {
		name    string
		clear   func(o *lifecycle.Options)
		missing []string
	}{
		{"none missing", func(*lifecycle.Options) {}, nil},
		{"the lease", func(o *lifecycle.Options) { o.LeaseTTL = 0 }, []string{"LeaseTTL"}},
		{"the wait", func(o *lifecycle.Options) { o.PresignWait = 0 }, []string{"PresignWait"}},
		{"the reconcile rule", func(o *lifecycle.Options) {
			o.ReconcileMinAge, o.ReconcileLookBack, o.ReconcileFirstGap = 0, -time.Second, 0
		}, []string{"ReconcileMinAge", "ReconcileLookBack", "ReconcileFirstGap"}},
		{"the healing window", func(o *lifecycle.Options) { o.HealWindow = 0 }, []string{"HealWindow"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := full
			tc.clear(&o)
			msg := func() (msg string) {
				defer func() {
					if r := recover(); r != nil {
						msg = fmt.Sprint(r)
					}
				}()
				lifecycle.New(nil, nil, nil, o)
				return ""
			}()
			if len(tc.missing) == 0 {
				if msg != "" {
					t.Fatalf("New panicked: %s", msg)
				}
				return
			}
			for _, name := range tc.missing {
				if !strings.Contains(msg, "Options."+name) {
					t.Errorf("panic %q does not name Options.%s", msg, name)
				}
			}
		})
	}
}
