package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/contractd/contractd/domain"
)

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
