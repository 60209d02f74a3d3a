package console

import (
	"encoding/json"
	"net/http"

	"github.com/contractd/contractd/domain"
)

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
	page, err := c.opt.Flows.Feed(r.Context(), after, 100)
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
	// Lost: the row the page's cursor named was lost to a failover; the
	// page carries no rows and next resumes before it (store.Store.Feed).
	out := struct {
		Items []row  `json:"items"`
		Next  string `json:"next"`
		Lost  bool   `json:"lost"`
	}{Items: []row{}, Next: page.Next, Lost: page.Lost != nil}
	for _, e := range page.Items {
		k := domain.Key{SubMchID: e.SubMchID, OutContractCode: e.OutContractCode}
		out.Items = append(out.Items, row{ID: e.ID, At: e.OccurredAt.UTC().Format("2006-01-02 15:04:05Z"), Contract: k.String(),
			URL: funcs["contractURL"].(func(domain.Key) string)(k), Event: string(e.Event), From: string(e.FromState),
			To: string(e.ToState), Source: string(e.Source), Ignored: e.Ignored})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
