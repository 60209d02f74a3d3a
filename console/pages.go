package console

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/httpapi"
	"github.com/contractd/contractd/store"
)

// page is what every template gets.
type page struct {
	Title   string
	Actor   string
	CSRF    string
	Query   string // the search box's value
	Nav     string // the section the page belongs to
	Problem string // an error to show above the content
	Done    string // what the last action did
	Message string // error pages
	Data    any
}

func statusOf(err error) int { return httpapi.StatusOf(err) }

func itoa(n int) string { return strconv.Itoa(n) }

var funcs = template.FuncMap{
	"utc": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return ""
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"mask":    mask,
	"contractURL": func(k domain.Key) string {
		v := url.Values{"code": {k.OutContractCode}}
		if k.SubMchID != "" {
			v.Set("sub_mchid", k.SubMchID)
		}
		return "/ops/contract?" + v.Encode()
	},
	"pretty": func(b []byte) string {
		var out bytes.Buffer
		if len(b) == 0 || json.Indent(&out, b, "", "  ") != nil {
			return string(b)
		}
		return out.String()
	},
	"deref": func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	},
	"keyOf": func(e domain.HistoryEntry) domain.Key {
		return domain.Key{SubMchID: e.SubMchID, OutContractCode: e.OutContractCode}
	},
	"ago": func(d time.Duration) string { return d.Round(time.Second).String() },
}

func parsePages() map[string]*template.Template {
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		if n.Name() == "base.html" {
			continue
		}
		pages[n.Name()] = template.Must(template.New("base.html").Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+n.Name()))
	}
	return pages
}

// render writes a page; the session (when there is one) fills the header.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if s := sessionOf(r); s.idHash != "" {
		p.Actor, p.CSRF = s.Actor, s.CSRFToken
		if p.Actor == "" {
			p.Actor = "an unnamed ops token"
		}
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.log.ErrorContext(r.Context(), "console template failed", "page", name, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// mask hides most of an openid.
func mask(s string) string {
	if s == "" {
		return ""
	}
	r := []rune(s)
	if len(r) <= 6 {
		return strings.Repeat("•", len(r))
	}
	return string(r[:4]) + "••••••" + string(r[len(r)-2:])
}

// maxText is the longest text the console accepts in a query or form field.
const maxText = 128

// text checks one value from outside before it goes anywhere: valid UTF-8,
// no control characters, at most maxText bytes.
func text(name, v string) (string, *domain.FieldError) {
	if len(v) > maxText || !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
		return "", &domain.FieldError{Field: name, Reason: fmt.Sprintf("must be valid text of at most %d bytes", maxText)}
	}
	return strings.TrimSpace(v), nil
}

func badParams(fields []domain.FieldError) error {
	return &domain.Error{Code: domain.CodeParamError, Message: "bad parameters: " + fieldList(fields), Fields: fields}
}

func fieldList(fields []domain.FieldError) string {
	var s []string
	for _, f := range fields {
		s = append(s, f.Field+" "+f.Reason)
	}
	return strings.Join(s, "; ")
}

// keyFrom reads a contract's key from the query (GET) or the form (POST):
// the console's text rule first, then domain.ParseKey's, the API's.
func keyFrom(r *http.Request) (domain.Key, error) {
	get := r.URL.Query().Get
	if r.Method == http.MethodPost {
		get = r.PostForm.Get
	}
	var fields []domain.FieldError
	code, fe := text("code", get("code"))
	if fe != nil {
		fields = append(fields, *fe)
	}
	sub, fe := text("sub_mchid", get("sub_mchid"))
	if fe != nil {
		fields = append(fields, *fe)
	}
	if len(fields) > 0 {
		return domain.Key{}, badParams(fields)
	}
	return domain.ParseKey(code, sub)
}

// overviewData is the overview page's content.
type overviewData struct {
	store.Overview
	Period     string
	Periods    []string
	States     []stateCount
	Outcomes   []stateCount
	Conversion string
	Age        time.Duration
	MaxAge     time.Duration
}

type stateCount struct {
	Name  string
	Count int64
}

var periods = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour}

func (c *Console) overviewPage(w http.ResponseWriter, r *http.Request) {
	period := r.URL.Query().Get("period")
	span, ok := periods[period]
	if !ok {
		period, span = "24h", 24*time.Hour
	}
	ov, err := c.cachedOverview(r, period, span, r.URL.Query().Get("fresh") != "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := overviewData{Overview: ov, Period: period, Periods: []string{"1h", "24h", "7d", "30d"},
		Age: c.opt.Now().Sub(ov.At), MaxAge: c.opt.OverviewMaxAge}
	if d.Age < 0 {
		d.Age = 0
	}
	for _, s := range []domain.State{domain.StateCreated, domain.StateSessionIssued, domain.StateSigned, domain.StateExpired, domain.StateTerminated} {
		d.States = append(d.States, stateCount{Name: string(s), Count: ov.ByState[s]})
	}
	for k, n := range ov.Notifications {
		d.Outcomes = append(d.Outcomes, stateCount{Name: k, Count: n})
	}
	sort.Slice(d.Outcomes, func(i, j int) bool { return d.Outcomes[i].Name < d.Outcomes[j].Name })
	d.Conversion = "—"
	if ov.Sessions > 0 {
		d.Conversion = fmt.Sprintf("%.1f%%", 100*float64(ov.Signed)/float64(ov.Sessions))
	}
	c.render(w, r, http.StatusOK, "overview.html", page{Title: "Overview", Nav: "overview", Data: d})
}

// cachedOverview answers with the overview's figures for period. The first
// view reads them; later views get the last figures read at once, and when
// those are older than OverviewMaxAge one read starts in the background for
// the next view (so that no view waits for counting millions of rows). The
// page shows the figures' age. fresh reads them now, waiting.
func (c *Console) cachedOverview(r *http.Request, period string, span time.Duration, fresh bool) (store.Overview, error) {
	c.mu.Lock()
	e, ok := c.overview[period]
	if ok && !fresh {
		if c.opt.Now().Sub(e.ov.At) >= c.opt.OverviewMaxAge && !e.refreshing {
			e.refreshing = true
			c.overview[period] = e
			go c.refreshOverview(r, period, span)
		}
		c.mu.Unlock()
		return e.ov, nil
	}
	c.mu.Unlock()
	ov, err := c.readOverview(r.Context(), span)
	if err != nil {
		return ov, err
	}
	c.mu.Lock()
	c.overview[period] = overviewEntry{ov: ov}
	c.mu.Unlock()
	return ov, nil
}

// refreshOverview reads the figures of period in the background, on behalf
// of the view that found them old; it is bounded by a timeout, and a
// failure keeps the old figures (and is logged).
func (c *Console) refreshOverview(r *http.Request, period string, span time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer cancel()
	e := overviewEntry{}
	defer func() {
		if p := recover(); p != nil {
			c.log.ErrorContext(ctx, "panic recovered", "where", "console overview", "panic", fmt.Sprint(p))
		}
		c.mu.Lock()
		if e.ov.At.IsZero() {
			old := c.overview[period]
			old.refreshing = false
			c.overview[period] = old
		} else {
			c.overview[period] = e
		}
		c.mu.Unlock()
	}()
	ov, err := c.readOverview(ctx, span)
	if err != nil {
		c.log.WarnContext(ctx, "console overview refresh failed", "error", err.Error())
		return
	}
	e.ov = ov
}

func (c *Console) readOverview(ctx context.Context, span time.Duration) (store.Overview, error) {
	now := c.opt.Now()
	return c.opt.Store.Overview(ctx, store.OverviewOptions{From: now.Add(-span), To: now,
		ReconcileMinAge: c.opt.ReconcileMinAge, ReconcileLookBack: c.opt.ReconcileLookBack, RecentErrors: 10})
}

// listData is the contract list's content.
type listData struct {
	Filter   map[string]string
	States   []string
	Channels []string
	Items    []domain.Contract
	Next     string
	NextURL  string
	CSVURL   string
	Search   bool
}

var listParams = []string{"state", "channel", "plan_id", "service_id", "sub_mchid", "created_from", "created_to", "limit"}

// listFilter reads the API's list filters from a query with the API's
// parser, domain.ParseListFilter, after the console's text rule; empty
// values do not filter (a form sends every field). It returns the values
// read, to fill the form again.
func listFilter(q url.Values) (domain.ListFilter, map[string]string, error) {
	var fields []domain.FieldError
	vals := map[string]string{}
	given := url.Values{}
	for _, name := range append(listParams, "cursor") {
		v, fe := text(name, q.Get(name))
		if fe != nil {
			fields = append(fields, *fe)
			continue
		}
		vals[name] = v
		if v != "" {
			given.Set(name, v)
		}
	}
	if len(fields) > 0 {
		return domain.ListFilter{}, vals, badParams(fields)
	}
	f, err := domain.ParseListFilter(given)
	return f, vals, err
}

func filterQuery(vals map[string]string) url.Values {
	q := url.Values{}
	for _, k := range listParams {
		if vals[k] != "" {
			q.Set(k, vals[k])
		}
	}
	return q
}

func (c *Console) listPage(w http.ResponseWriter, r *http.Request) {
	f, vals, err := listFilter(r.URL.Query())
	d := listData{Filter: vals, States: []string{"created", "session_issued", "signed", "expired", "terminated"},
		Channels: []string{"app", "mini_program", "h5", "jsapi", "web"}}
	p := page{Title: "Contracts", Nav: "contracts", Data: &d}
	if err != nil {
		p.Problem = err.Error()
		c.render(w, r, http.StatusBadRequest, "contracts.html", p)
		return
	}
	d.Items, d.Next, err = c.opt.Flows.List(r.Context(), f)
	if err != nil {
		if statusOf(err) >= 500 {
			c.fail(w, r, err)
			return
		}
		p.Problem = err.Error()
		c.render(w, r, statusOf(err), "contracts.html", p)
		return
	}
	q := filterQuery(vals)
	d.CSVURL = "/ops/contracts.csv?" + q.Encode()
	if d.Next != "" {
		q.Set("cursor", d.Next)
		d.NextURL = "/ops/contracts?" + q.Encode()
	}
	if f.State != "" {
		p.Title = "Contracts: " + string(f.State)
	}
	c.render(w, r, http.StatusOK, "contracts.html", p)
}

// csvColumns are the exported columns; openids are masked (revealing one
// is a logged act of its own).
var csvColumns = []string{"sub_mchid", "out_contract_code", "product", "channel", "plan_id", "service_id", "state",
	"contract_id", "openid_masked", "user_display_name", "contract_display_account", "session_expires_at",
	"signed_at", "terminated_at", "termination_mode", "expired_at", "last_error_code", "version", "created_at", "updated_at"}

// csvText makes a text cell of the export inert in a spreadsheet: a cell
// that begins with '=', '+', '-', '@', a tab or a carriage return would be
// run as a formula (OWASP's CSV injection rule), so it gets a leading '
// that spreadsheets show as text. Other cells are unchanged.
func csvText(v string) string {
	if v != "" && strings.IndexByte("=+-@\t\r", v[0]) >= 0 {
		return "'" + v
	}
	return v
}

// exportCSV streams the filtered list as CSV, one page of the list at a
// time, so that memory does not grow with the export.
func (c *Console) exportCSV(w http.ResponseWriter, r *http.Request) {
	f, _, err := listFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	f.Limit, f.Cursor = domain.MaxListLimit, ""
	items, next, err := c.opt.Flows.List(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="contracts.csv"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(csvColumns)
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	num := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	rows := 0
	for {
		for _, ct := range items {
			lastErr := ""
			if ct.LastError != nil {
				lastErr = ct.LastError.Code
			}
			t := csvText
			_ = cw.Write([]string{t(ct.SubMchID), t(ct.OutContractCode), t(string(ct.Product)), t(string(ct.Channel)), num(ct.PlanID), num(ct.ServiceID),
				t(string(ct.State)), t(ct.ContractID), t(mask(ct.OpenID)), t(ct.UserDisplayName), t(ct.ContractDisplayAccount), ts(ct.SessionExpiresAt),
				ts(ct.SignedAt), ts(ct.TerminatedAt), t(ct.TerminationMode), ts(ct.ExpiredAt), t(lastErr),
				strconv.FormatInt(ct.Version, 10), ct.CreatedAt.UTC().Format(time.RFC3339), ct.UpdatedAt.UTC().Format(time.RFC3339)})
		}
		rows += len(items)
		cw.Flush()
		if next == "" || cw.Error() != nil || r.Context().Err() != nil {
			break
		}
		f.Cursor = next
		if items, next, err = c.opt.Flows.List(r.Context(), f); err != nil {
			// The header is sent: the cut-off shows as a truncated file.
			c.log.ErrorContext(r.Context(), "console CSV export cut off", "rows", rows, "error", err.Error())
			return
		}
	}
	c.log.InfoContext(r.Context(), "console CSV export", "rows", rows)
}

// search finds a contract by out_contract_code, contract_id or openid: one
// match opens it, several are listed.
func (c *Console) search(w http.ResponseWriter, r *http.Request) {
	q, fe := text("q", r.URL.Query().Get("q"))
	d := listData{Search: true}
	p := page{Title: "Search", Nav: "contracts", Query: q, Data: &d}
	if fe != nil {
		p.Problem = "The search " + fe.Reason + "."
		c.render(w, r, http.StatusBadRequest, "contracts.html", p)
		return
	}
	if q == "" {
		http.Redirect(w, r, "/ops/contracts", http.StatusSeeOther)
		return
	}
	items, err := c.opt.Store.Search(r.Context(), q, 50)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(items) == 1 {
		http.Redirect(w, r, funcs["contractURL"].(func(domain.Key) string)(items[0].Key()), http.StatusSeeOther)
		return
	}
	d.Items = items
	p.Title = fmt.Sprintf("Search: %d contracts match", len(items))
	c.render(w, r, http.StatusOK, "contracts.html", p)
}

// contractData is a contract page's content.
type contractData struct {
	C             domain.Contract
	Key           domain.Key
	OpenID        string // masked unless revealed
	Revealed      bool
	History       []domain.HistoryEntry
	Notifications []store.NotificationRecord
	Note          string
	Confirm       bool
}

func (c *Console) loadContract(r *http.Request, key domain.Key) (*contractData, error) {
	ct, err := c.opt.Flows.Get(r.Context(), key)
	if err != nil {
		return nil, err
	}
	h, err := c.opt.Flows.History(r.Context(), key)
	if err != nil {
		return nil, err
	}
	ns, err := c.opt.Store.Notifications(r.Context(), key)
	if err != nil {
		return nil, err
	}
	return &contractData{C: ct, Key: key, OpenID: mask(ct.OpenID), History: h, Notifications: ns}, nil
}

func (c *Console) showContract(w http.ResponseWriter, r *http.Request, status int, key domain.Key, p page, adjust func(d *contractData)) {
	d, err := c.loadContract(r, key)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if adjust != nil {
		adjust(d)
	}
	p.Title, p.Nav, p.Data = "Contract "+key.String(), "contracts", d
	if d.Confirm {
		p.Title = "Confirm termination of " + key.String()
	}
	c.render(w, r, status, "contract.html", p)
}

func (c *Console) contractPage(w http.ResponseWriter, r *http.Request) {
	key, err := keyFrom(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := page{}
	switch r.URL.Query().Get("done") {
	case "terminated":
		p.Done = "The contract is terminated."
	case "synced":
		p.Done = "Synced with WeChat Pay: the contract shows what WeChat says now."
	}
	c.showContract(w, r, http.StatusOK, key, p, nil)
}

// reveal shows a contract's openid, and logs who looked.
func (c *Console) reveal(w http.ResponseWriter, r *http.Request) {
	key, err := keyFrom(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.showContract(w, r, http.StatusOK, key, page{}, func(d *contractData) {
		d.OpenID, d.Revealed = d.C.OpenID, true
		// The log line carries the session's actor (logging.WithActor).
		c.log.InfoContext(r.Context(), "console revealed an openid", "contract", key.String())
	})
}

// terminate asks for a note, then for confirmation, then runs the API's
// terminate flow.
func (c *Console) terminate(w http.ResponseWriter, r *http.Request) {
	key, err := keyFrom(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	note := strings.TrimSpace(r.PostForm.Get("note"))
	if err := domain.CheckTerminationNote(note); err != nil {
		// The API's rule, said in the page's words.
		why := "breaks the rules"
		var de *domain.Error
		if errors.As(err, &de) && len(de.Fields) > 0 {
			why = de.Fields[0].Reason
		}
		c.showContract(w, r, http.StatusBadRequest, key, page{Problem: "The termination note " + why +
			". A termination needs a note of 1 to 120 characters saying why."}, nil)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		c.showContract(w, r, http.StatusOK, key, page{}, func(d *contractData) { d.Note, d.Confirm = note, true })
		return
	}
	if _, err := c.opt.Flows.Terminate(r.Context(), key, sessionOf(r).Actor, note); err != nil {
		c.actionFailed(w, r, key, "Terminate", err)
		return
	}
	c.log.InfoContext(r.Context(), "console terminated a contract", "contract", key.String())
	http.Redirect(w, r, contractURLDone(key, "terminated"), http.StatusSeeOther)
}

func (c *Console) sync(w http.ResponseWriter, r *http.Request) {
	key, err := keyFrom(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if _, err := c.opt.Flows.Sync(r.Context(), key, sessionOf(r).Actor); err != nil {
		c.actionFailed(w, r, key, "Sync", err)
		return
	}
	c.log.InfoContext(r.Context(), "console synced a contract", "contract", key.String())
	http.Redirect(w, r, contractURLDone(key, "synced"), http.StatusSeeOther)
}

func contractURLDone(key domain.Key, done string) string {
	return funcs["contractURL"].(func(domain.Key) string)(key) + "&done=" + done
}

// actionFailed shows the contract again with what went wrong.
func (c *Console) actionFailed(w http.ResponseWriter, r *http.Request, key domain.Key, what string, err error) {
	status := statusOf(err)
	if status == http.StatusNotFound || status >= 500 && status != http.StatusBadGateway && status != http.StatusServiceUnavailable {
		c.fail(w, r, err)
		return
	}
	c.log.WarnContext(r.Context(), "console action failed", "action", what, "contract", key.String(), "error", err.Error())
	c.showContract(w, r, status, key, page{Problem: what + " failed: " + err.Error()}, nil)
}

// feedData is the feed page's content: the newest rows, newest first, and
// the feed's cursor after them.
type feedData struct {
	Items []domain.HistoryEntry
	After string
}

func (c *Console) feedPage(w http.ResponseWriter, r *http.Request) {
	items, after, err := c.opt.Store.FeedTail(r.Context(), 50)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := feedData{After: after}
	for i := len(items) - 1; i >= 0; i-- {
		d.Items = append(d.Items, items[i])
	}
	c.render(w, r, http.StatusOK, "feed.html", page{Title: "Live feed", Nav: "feed", Data: d})
}

// feedJSON is what the feed page polls: the rows after a cursor.
func (c *Console) feedJSON(w http.ResponseWriter, r *http.Request) {
	after := r.URL.Query().Get("after")
	items, next, err := c.opt.Flows.Feed(r.Context(), after, 100)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(statusOf(err))
		if domain.IsCode(err, domain.CodeParamError) {
			_, _ = w.Write([]byte(`{"code":"PARAM_ERROR","message":"after must be a cursor this service issued"}`))
			return
		}
		_, _ = w.Write([]byte(`{"code":"UNAVAILABLE","message":"the feed cannot be read now"}`))
		return
	}
	type row struct {
		ID       int64  `json:"id"`
		At       string `json:"at"`
		Contract string `json:"contract"`
		URL      string `json:"url"`
		Event    string `json:"event"`
		From     string `json:"from"`
		To       string `json:"to"`
		Source   string `json:"source"`
		Ignored  bool   `json:"ignored"`
	}
	out := struct {
		Items []row  `json:"items"`
		Next  string `json:"next"`
	}{Items: []row{}, Next: next}
	for _, e := range items {
		k := domain.Key{SubMchID: e.SubMchID, OutContractCode: e.OutContractCode}
		out.Items = append(out.Items, row{ID: e.ID, At: e.OccurredAt.UTC().Format("2006-01-02 15:04:05Z"), Contract: k.String(),
			URL: funcs["contractURL"].(func(domain.Key) string)(k), Event: string(e.Event), From: string(e.FromState),
			To: string(e.ToState), Source: string(e.Source), Ignored: e.Ignored})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
