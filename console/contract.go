package console

import (
	"net/http"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
)

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
