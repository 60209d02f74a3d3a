package console

import (
	"net/http"
	"net/url"

	"github.com/contractd/contractd/domain"
)

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
	d.Items, d.Next, err = c.opt.Reads.List(r.Context(), f)
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
