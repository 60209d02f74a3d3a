package wechatpaysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"time"
)

// routes builds the simulator's mux: the merchant API (signed) and the /sim/ control routes.
func (s *Simulator) routes() http.Handler {
	mux := http.NewServeMux()
	const g = "/v3/global/papay/contracts"
	mux.Handle("POST "+g+"/{kind}", s.api(s.globalPreSign))
	mux.Handle("GET "+g+"/{contract_id}", s.api(s.globalQueryByID))
	mux.Handle("GET "+g+"/out-contract-code/{code}", s.api(s.globalQueryByCode))
	mux.Handle("POST "+g+"/{contract_id}/terminate", s.api(s.globalTerminate))
	const d = "/v3/password-exempt-contract/contracts"
	mux.Handle("POST "+d+"/{mode}/pre-entrust-sign/mini-program", s.api(s.domesticPreSign))
	mux.Handle("GET "+d+"/service-id/{service_id}/out-contract-code/{code}", s.api(s.domesticQuery))
	mux.Handle("POST "+d+"/service-id/{service_id}/out-contract-code/{code}/terminate", s.api(s.domesticTerminate))
	mux.Handle("GET "+globalCertificatesPath, s.api(s.certificates))
	mux.Handle("GET "+domesticCertificatesPath, s.api(s.certificates))
	mux.Handle("/v3/", s.api(func(*http.Request, []byte) (int, any, error) { return 0, nil, notFound() }))

	mux.HandleFunc("GET /sim/{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"simulator": "WeChat Pay simulator: control routes (unsigned JSON) acting as the WeChat user",
			"routes":    ControlRoutes,
		})
	})
	mux.HandleFunc("POST /sim/sign", s.handleSign)
	mux.HandleFunc("GET /sim/sign-page/{session_id}", s.handleSignPage)
	mux.HandleFunc("POST /sim/sign-page/{session_id}", s.handleSignPageSubmit)
	mux.HandleFunc("POST /sim/contracts/{contract_id}/terminate", s.handleTerminate)
	mux.HandleFunc("GET /sim/contracts", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Contracts())
	})
	mux.HandleFunc("GET /sim/sessions", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Sessions())
	})
	mux.HandleFunc("GET /sim/requests", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Requests())
	})
	mux.HandleFunc("GET /sim/deliveries", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Deliveries())
	})
	mux.HandleFunc("GET /sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.CurrentFaults())
	})
	mux.HandleFunc("PUT /sim/faults", s.handlePutFaults)
	mux.HandleFunc("GET /sim/platform-certificates", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.PlatformCertificates())
	})
	mux.HandleFunc("POST /sim/platform-certificates/rotate", s.handleRotate)
	mux.HandleFunc("DELETE /sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.SetFaults(Faults{})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sim/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /sim/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

// ControlRoute is one of the simulator's control routes, as GET /sim/
// lists them.
type ControlRoute struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Does   string `json:"does"`
}

// ControlRoutes lists the control routes under /sim/.
var ControlRoutes = []ControlRoute{
	{"GET", "/sim/", "this index"},
	{"POST", "/sim/sign", `sign as the WeChat user: {"session_id": "<session_id or pre_entrustweb_id>"} or {"out_contract_code": "...", "sub_mchid": "..."}; optional "openid"`},
	{"GET", "/sim/sign-page/{session_id}", "the user's signing page (HTML); the URL an h5, jsapi or web pre-sign answers"},
	{"POST", "/sim/sign-page/{session_id}", `what the page's "Agree" button posts (form field openid optional): signs the session`},
	{"POST", "/sim/contracts/{contract_id}/terminate", "terminate a signed contract as the user"},
	{"GET", "/sim/contracts", "every contract the simulator holds"},
	{"GET", "/sim/sessions", "every signing session"},
	{"GET", "/sim/requests", "every merchant API request received, with its answer"},
	{"GET", "/sim/deliveries", "every notification delivery and its attempts"},
	{"GET", "/sim/faults", "the faults in force"},
	{"PUT", "/sim/faults", "inject faults (JSON: error_code, error_status, error_count, error_rate, path_contains, latency_ms, duplicate_deliveries, drop_deliveries, reorder_sign_terminate, probe_signatures, tamper_responses, override_serial)"},
	{"DELETE", "/sim/faults", "clear faults"},
	{"POST", "/sim/reset", "clear faults, requests and deliveries"},
	{"GET", "/sim/healthz", "liveness"},
}

// writeJSON writes an unsigned control answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"INTERNAL","message":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeControlError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]string{"code": code, "message": message})
}

// controlStatus maps Sign and TerminateAsUser errors to a status and code.
func controlStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrSessionNotFound):
		return http.StatusNotFound, "SESSION_NOT_FOUND"
	case errors.Is(err, ErrSessionExpired):
		return http.StatusConflict, "SESSION_EXPIRED"
	case errors.Is(err, ErrSessionUsed):
		return http.StatusConflict, "SESSION_USED"
	case errors.Is(err, ErrContractExisted):
		return http.StatusConflict, "CONTRACT_EXISTED"
	case errors.Is(err, ErrContractNotFound):
		return http.StatusNotFound, "CONTRACT_NOT_EXIST"
	case errors.Is(err, ErrContractNotSigned):
		return http.StatusConflict, "CONTRACT_NOT_SIGNED"
	}
	return http.StatusInternalServerError, "INTERNAL"
}

// decodeControl decodes a small JSON control body, refusing unknown fields.
func decodeControl(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

func (s *Simulator) handleSign(w http.ResponseWriter, r *http.Request) {
	var req SignRequest
	if err := decodeControl(r, &req); err != nil {
		writeControlError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	c, err := s.Sign(r.Context(), req)
	if err != nil {
		status, code := controlStatus(err)
		writeControlError(w, status, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Simulator) handleTerminate(w http.ResponseWriter, r *http.Request) {
	c, err := s.TerminateAsUser(r.Context(), r.PathValue("contract_id"))
	if err != nil {
		status, code := controlStatus(err)
		writeControlError(w, status, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Simulator) handlePutFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := decodeControl(r, &f); err != nil {
		writeControlError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if err := f.Validate(); err != nil {
		writeControlError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, f)
}

// signPageData feeds the sign page template.
type signPageData struct {
	Session  Session
	Expired  bool
	Contract *Contract
	Error    string
}

func (s *Simulator) session(id string) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	if !ok {
		return Session{}, false
	}
	return *sess, true
}

func (s *Simulator) handleSignPage(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(r.PathValue("session_id"))
	if !ok {
		s.renderPage(w, http.StatusNotFound, signPageData{Error: "This signing session does not exist."})
		return
	}
	data := signPageData{Session: sess, Expired: !s.now().Before(sess.ExpiresAt)}
	if c, ok := s.Contract(sess.ContractID); ok {
		data.Contract = &c
	}
	s.renderPage(w, http.StatusOK, data)
}

func (s *Simulator) handleSignPageSubmit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("session_id")
	sess, ok := s.session(id)
	if !ok {
		s.renderPage(w, http.StatusNotFound, signPageData{Error: "This signing session does not exist."})
		return
	}
	if err := r.ParseForm(); err != nil {
		s.renderPage(w, http.StatusBadRequest, signPageData{Session: sess, Error: "Bad form: " + err.Error()})
		return
	}
	c, err := s.Sign(r.Context(), SignRequest{SessionID: id, OpenID: r.PostForm.Get("openid")})
	if err != nil {
		status, _ := controlStatus(err)
		s.renderPage(w, status, signPageData{Session: sess, Error: "Signing failed: " + err.Error()})
		return
	}
	s.renderPage(w, http.StatusOK, signPageData{Session: sess, Contract: c})
}

func (s *Simulator) renderPage(w http.ResponseWriter, status int, data signPageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.pages.Execute(w, data); err != nil {
		s.log.Error("wechatpaysim: render sign page", "err", err)
	}
}

func parsePages() (*template.Template, error) {
	return template.New("sign").Funcs(template.FuncMap{
		"wechatTime": func(t time.Time) string { return wechatTime(t) },
	}).Parse(signPageHTML)
}

const signPageHTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>WeChat Pay (simulated): auto-debit authorization</title>
<style>
body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.3rem;color:#07c160} dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem}
dt{color:#666} dd{margin:0;word-break:break-all} button{background:#07c160;color:#fff;border:0;
border-radius:.3rem;padding:.7rem 2rem;font-size:1rem;cursor:pointer} .err{color:#c00} .ok{color:#07c160}
</style></head>
<body>
<h1>WeChat Pay auto-debit authorization (simulator)</h1>
{{with .Session}}{{if .ID}}
<dl>
<dt>Merchant</dt><dd>{{.MchID}}{{if .SubMchID}} / sub-merchant {{.SubMchID}}{{end}}</dd>
<dt>App</dt><dd>{{.AppID}}{{.SPAppID}}</dd>
{{if .PlanID}}<dt>Template (plan_id)</dt><dd>{{.PlanID}}</dd>{{end}}
{{if .ServiceID}}<dt>Service (service_id)</dt><dd>{{.ServiceID}}</dd>{{end}}
<dt>Contract code</dt><dd>{{.OutContractCode}}</dd>
<dt>Account shown</dt><dd>{{.DisplayName}}</dd>
<dt>Channel</dt><dd>{{.Family}} / {{.Channel}}</dd>
<dt>Session</dt><dd>{{.ID}}</dd>
<dt>Session expires</dt><dd>{{wechatTime .ExpiresAt}}</dd>
</dl>
<p>By agreeing, you allow this merchant to debit your WeChat Pay account under the terms of the template above, without entering your password for each payment.</p>
{{end}}{{end}}
{{if .Error}}<p class="err" id="error">{{.Error}}</p>
{{else if .Contract}}<p class="ok" id="result">Signed. Contract {{.Contract.ContractID}} is {{.Contract.State}}.</p>
{{else if .Expired}}<p class="err" id="error">This signing session has expired.</p>
{{else}}<form method="post">{{if not .Session.OpenID}}<p><label>Your openid (optional) <input name="openid" maxlength="128"></label></p>{{end}}
<button type="submit" id="agree">Agree and sign</button></form>
{{end}}
</body></html>
`
