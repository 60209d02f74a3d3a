package main

import (
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/wechatpaysim"
)

// tzDo asks contractd at base and checks the answer against openapi.yaml
// (which includes: every time in it is UTC).
func tzDo(t *testing.T, base, method, path, token, body string) response {
	t.Helper()
	r := request{Method: method, Path: path, Token: token}
	if body != "" {
		r.Body = body
	}
	return call(t, base, r)
}

var utcTime = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`)

// Issue 10: the built binary, run under TZ=Asia/Shanghai, answers every
// time in UTC, the ones inside history details included.
func TestTimesAreUTCUnderAnotherHostTimeZone(t *testing.T) {
	if _, err := time.LoadLocation("Asia/Shanghai"); err != nil {
		t.Fatalf("this test needs the zone files (Debian package tzdata; scripts/test installs it): %v", err)
	}
	bin := cliBuild(t)
	db := pgtest.New(t)
	keys, err := wechatpaysim.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	addr := cliFreeAddr(t)
	simCfg := keys.SimConfig()
	simCfg.TerminateNotifyURL = devPublicURL + config.NotifyPath
	simCfg.NotifyTarget = "http://" + addr
	simCfg.TimeScale = 0.001
	simCfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sim, err := wechatpaysim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { simSrv.Close(); sim.Close() })

	env := simulatedWeChatEnv(keys, dir, simSrv.URL)
	maps.Copy(env, map[string]string{
		"DATABASE_URL":         db.URL,
		"CONTRACTD_HTTP_ADDR":  addr,
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken,
		"WECHATPAY_MODE":       "common",
		"CONTRACTD_LOG_LEVEL":  "error",
		"TZ":                   "Asia/Shanghai",
	})
	p := cliStartServeAt(t, bin, env, addr)

	r := tzDo(t, p.URL, "POST", "/v1/contracts/pre-sign", appToken,
		`{"channel":"app","out_contract_code":"tz1","plan_id":123,"user_display_name":"Zhang San","expired_time":"`+
			time.Now().Add(time.Hour).In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)+`"}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("pre-sign: %d %s", r.Status, r.Body)
	}
	if _, err := sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: "tz1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the sign notification", func() bool {
		return strings.Contains(string(tzDo(t, p.URL, "GET", "/v1/contracts/tz1", opsToken, "").Body), `"state":"signed"`)
	})
	if r := tzDo(t, p.URL, "POST", "/v1/contracts/tz1/terminate", opsToken, `{"note":"tz test"}`); r.Status != http.StatusOK {
		t.Fatalf("terminate: %d %s", r.Status, r.Body)
	}
	// The feed serves a row only once every older transaction on the
	// cluster has ended (its horizon), and the shared test cluster may have
	// long ones: wait until it serves these.
	eventually(t, 60*time.Second, "the feed to serve the rows", func() bool {
		return utcTime.Match(tzDo(t, p.URL, "GET", "/v1/events", opsToken, "").Body)
	})
	for _, path := range []string{"/v1/contracts/tz1", "/v1/contracts", "/v1/contracts/tz1/events", "/v1/events"} {
		r := tzDo(t, p.URL, "GET", path, opsToken, "")
		if path == "/v1/events" {
			// The feed serves a row once every transaction in the cluster
			// that began before it has ended (README, "No database-wide
			// lock"): other tests' transactions may hold it back a while.
			eventually(t, time.Minute, "the feed to serve tz1's history", func() bool {
				r = tzDo(t, p.URL, "GET", path, opsToken, "")
				return r.Status != http.StatusOK || strings.Contains(string(r.Body), `"tz1"`)
			})
		}
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		if !utcTime.Match(r.Body) {
			t.Errorf("GET %s carries no UTC time at all: %s", path, r.Body)
		}
		if m := zoned.Find(r.Body); m != nil {
			t.Errorf("GET %s answers %s, not UTC: %s", path, m, r.Body)
		}
	}
	// The details of history rows hold times too (operate_time, session_expires_at).
	if h := tzDo(t, p.URL, "GET", "/v1/contracts/tz1/events", opsToken, "").Body; !strings.Contains(string(h), `"operate_time":"`) {
		t.Errorf("history details carry no operate_time to check: %s", h)
	}
}
