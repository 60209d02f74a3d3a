package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// replicaTerminateCalls counts the terminate requests the simulator received.
func replicaTerminateCalls(s *stack) int {
	n := 0
	for _, r := range s.Sim.Requests() {
		if strings.HasSuffix(r.Path, "/terminate") {
			n++
		}
	}
	return n
}

// Two contractd processes (replicas) on one database, with the in-process
// server of the stack taking WeChat's notifications.
func TestFaultTwoReplicas(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)

	t.Run("2x20 concurrent terminates make 20 WeChat calls and 40 answers of 200", func(t *testing.T) {
		t.Parallel()
		s := startStack(t, stackOptions{})
		env := maps.Clone(s.Env)
		env["CONTRACTD_LEASE_WAIT"] = "30s"
		procs := []*cliProcess{cliStartServe(t, bin, env), cliStartServe(t, bin, env)}
		const n = 20
		code := func(i int) string { return fmt.Sprintf("rep-term-%02d", i) }
		for i := range n {
			ntPreSignAt(t, procs[i%2].URL, code(i), 123)
			ntSign(t, s, code(i))
		}
		eventually(t, 30*time.Second, "every contract signed", func() bool {
			return s.count(`SELECT count(*) FROM contracts WHERE state = 'signed'`) == n
		})

		type answer struct {
			code   string
			status int
			state  string
			body   string
		}
		answers := make(chan answer, 2*n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			for _, p := range procs {
				wg.Go(func() {
					<-start
					r, err := send(t, p.URL, request{Method: http.MethodPost, Path: "/v1/contracts/" + code(i) + "/terminate", Token: opsToken, Body: map[string]string{"note": "customer asked"}})
					if err != nil {
						answers <- answer{code: code(i), body: err.Error()}
						return
					}
					var c struct {
						State string `json:"state"`
					}
					_ = json.Unmarshal(r.Body, &c)
					answers <- answer{code(i), r.Status, c.State, string(r.Body)}
				})
			}
		}
		close(start)
		wg.Wait()
		close(answers)
		ok := 0
		for a := range answers {
			if a.status == http.StatusOK && a.state == "terminated" {
				ok++
			} else {
				t.Errorf("%s: %d %s", a.code, a.status, a.body)
			}
		}
		if ok != 2*n {
			t.Fatalf("%d answers of 200 terminated, want %d", ok, 2*n)
		}
		if got := replicaTerminateCalls(s); got != n {
			t.Fatalf("%d WeChat terminate calls for %d contracts, want %d", got, n, n)
		}
		if got := s.count(`SELECT count(*) FROM contract_events WHERE event = 'terminate' AND source = 'ops'`); got != n {
			t.Fatalf("%d terminate history rows with source ops, want %d", got, n)
		}
		if got := s.count(`SELECT count(*) FROM contract_events WHERE event = 'terminate'`); got != n {
			t.Fatalf("%d terminate history rows, want %d", got, n)
		}
		// Repeated: answered from the database, no new call.
		for i := range n {
			r := doAt(t, procs[(i+1)%2].URL, http.MethodPost, "/v1/contracts/"+code(i)+"/terminate", opsToken, map[string]string{"note": "again"})
			if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"state":"terminated"`) {
				t.Fatalf("repeated terminate: %d %s", r.Status, r.Body)
			}
		}
		if got := replicaTerminateCalls(s); got != n {
			t.Fatalf("repeated terminates called WeChat: %d calls, want %d", got, n)
		}
	})

	t.Run("identical pre-signs racing on both replicas open one session each", func(t *testing.T) {
		t.Parallel()
		s := startStack(t, stackOptions{})
		env := maps.Clone(s.Env)
		env["CONTRACTD_LEASE_WAIT"] = "30s"
		procs := []*cliProcess{cliStartServe(t, bin, env), cliStartServe(t, bin, env)}
		const codes, per = 20, 4
		type answer struct {
			code   string
			status int
			launch string
		}
		answers := make(chan answer, codes*per)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range codes {
			code := fmt.Sprintf("rep-pre-%02d", i)
			body := presignPapay("app", code)
			for j := range per {
				wg.Go(func() {
					<-start
					r, err := send(t, procs[j%2].URL, request{Method: http.MethodPost, Path: "/v1/contracts/pre-sign", Token: appToken, Body: body})
					if err != nil {
						answers <- answer{code: code, launch: err.Error()}
						return
					}
					var got struct {
						Launch json.RawMessage `json:"launch"`
					}
					_ = json.Unmarshal(r.Body, &got)
					answers <- answer{code, r.Status, string(got.Launch)}
				})
			}
		}
		close(start)
		wg.Wait()
		close(answers)
		created := map[string]int{}
		reused := map[string]int{}
		launches := map[string]map[string]bool{}
		for a := range answers {
			switch a.status {
			case http.StatusCreated:
				created[a.code]++
			case http.StatusOK:
				reused[a.code]++
			default:
				t.Fatalf("%s: %d %s", a.code, a.status, a.launch)
			}
			if launches[a.code] == nil {
				launches[a.code] = map[string]bool{}
			}
			launches[a.code][a.launch] = true
		}
		for i := range codes {
			code := fmt.Sprintf("rep-pre-%02d", i)
			if created[code] != 1 || reused[code] != per-1 || len(launches[code]) != 1 {
				t.Fatalf("%s: %d x 201, %d x 200, %d distinct launches; want 1, %d, 1", code, created[code], reused[code], len(launches[code]), per-1)
			}
		}
		if got := presignCalls(s); got != codes {
			t.Fatalf("%d WeChat pre-sign calls, want %d", got, codes)
		}
		if got := s.count(`SELECT count(*) FROM contracts`); got != codes {
			t.Fatalf("%d contracts, want %d", got, codes)
		}
		if got := s.count(`SELECT count(*) FROM contract_events WHERE event = 'issue_session'`); got != codes {
			t.Fatalf("%d issue_session rows, want %d", got, codes)
		}
	})
}

// A password-exempt contract first learned of from an ENTRUST.SIGN that
// carried no service_id: terminate and sync cannot call WeChat, and say so.
func TestFaultTerminatePasswordExemptLearnedWithoutServiceID(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const code = "pe-no-service"
	now := time.Now().UTC()
	sign := ntEnvelope(t, s.Keys, "n-"+ntRandom(8), "ENTRUST.SIGN", map[string]any{
		"mchid": s.Keys.MchID, "appid": s.Keys.AppID, "out_contract_code": code, "contract_id": "wx-pe-" + ntRandom(4),
		"openid": "o" + ntRandom(8), "contract_state": "SIGNED", "operate_time": now.Format(time.RFC3339)})
	if r := ntPostNotification(t, s, sign, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
		t.Fatalf("ENTRUST.SIGN: %d %s", r.Status, r.Body)
	}
	if st := ntState(t, s, code); st != "signed" {
		t.Fatalf("state %s", st)
	}
	for _, path := range []string{"/terminate", "/sync"} {
		r := s.do(http.MethodPost, "/v1/contracts/"+code+path, opsToken, map[string]string{"note": "customer asked"})
		if path == "/sync" {
			r = s.do(http.MethodPost, "/v1/contracts/"+code+path, opsToken, nil)
		}
		e := presignExpectError(t, r, http.StatusConflict, "INVALID_STATE")
		if !strings.Contains(e.Message, "service_id") || !slicesContain(e.fields(), "service_id") {
			t.Fatalf("%s: %s does not name service_id", path, r.Body)
		}
	}
	if n := len(s.Sim.Requests()); n != 0 {
		t.Fatalf("%d WeChat calls for a contract WeChat cannot be asked about", n)
	}
	// No operator's mark was left: WeChat's merchant-mode termination stays WeChat's.
	term := ntEnvelope(t, s.Keys, "n-"+ntRandom(8), "ENTRUST.TERMINATE", map[string]any{
		"mchid": s.Keys.MchID, "appid": s.Keys.AppID, "out_contract_code": code, "contract_state": "TERMINATED",
		"contract_termination_mode": "MERCHANT", "operate_time": now.Add(time.Second).Format(time.RFC3339)})
	if r := ntPostNotification(t, s, term, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
		t.Fatalf("ENTRUST.TERMINATE: %d %s", r.Status, r.Body)
	}
	var source, details string
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT source, details::text FROM contract_events
		WHERE out_contract_code = $1 AND event = 'terminate'`, code).Scan(&source, &details); err != nil {
		t.Fatal(err)
	}
	if source != "notification" || strings.Contains(details, `"note"`) {
		t.Fatalf("terminate recorded with source %s, details %s; want notification and no operator note", source, details)
	}
	if n := s.count(`SELECT count(*) FROM contracts WHERE ops_termination IS NOT NULL OR claim_token <> ''`); n != 0 {
		t.Fatalf("%d contracts with a mark or a lease left", n)
	}
}

func slicesContain(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
