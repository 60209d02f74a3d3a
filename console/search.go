package console

import (
	"fmt"
	"net/http"

	"github.com/contractd/contractd/domain"
)

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
