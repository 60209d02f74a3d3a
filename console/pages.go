package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/httpapi"
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
	// Webhooks: the console has the webhook endpoints' pages.
	Webhooks bool
	Data     any
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
	// seconds says a lag in seconds, to a tenth.
	"seconds":    func(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" },
	"webhookURL": func(id string) string { return webhookURL(id, "") },
	"outcome":    attemptOutcome,
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
	p.Webhooks = c.opt.Webhooks != nil
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
