package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// node is one Patroni node of cluster.env.
type node struct {
	name, restURL, dataDir string
	patroniPid             int
}

func (e Env) nodes() ([]node, error) {
	var out []node
	for i := 1; ; i++ {
		p := "NODE" + strconv.Itoa(i) + "_"
		if e[p+"NAME"] == "" {
			break
		}
		pid, err := strconv.Atoi(e[p+"PATRONI_PID"])
		if err != nil {
			return nil, fmt.Errorf("cluster.env %sPATRONI_PID: %w", p, err)
		}
		out = append(out, node{name: e[p+"NAME"], restURL: e[p+"REST_URL"], dataDir: e[p+"DATA_DIR"], patroniPid: pid})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cluster.env names no Patroni node")
	}
	return out, nil
}

// patroniView is what GET /patroni answers that the drill reads.
type patroniView struct {
	Role     string `json:"role"`
	State    string `json:"state"`
	Timeline int64  `json:"timeline"`
	XLog     struct {
		// Location is a primary's WAL position; a standby's are what
		// it received and replayed.
		Location         int64 `json:"location"`
		ReceivedLocation int64 `json:"received_location"`
		ReplayedLocation int64 `json:"replayed_location"`
	} `json:"xlog"`
}

// lags reads, from Patroni, how many bytes of the leader's WAL each other
// node has not received.
func (c *client) lags(ctx context.Context, nodes []node, leader node) string {
	lv, ok := c.patroni(ctx, leader)
	if !ok {
		return "unknown (the leader's Patroni does not answer)"
	}
	out := ""
	for _, n := range nodes {
		if n.name == leader.name {
			continue
		}
		v, ok := c.patroni(ctx, n)
		if !ok {
			out += " " + n.name + "=?"
			continue
		}
		got := max(v.XLog.ReceivedLocation, v.XLog.ReplayedLocation)
		out += fmt.Sprintf(" %s=%d", n.name, lv.XLog.Location-got)
	}
	return out
}

func (c *client) patroni(ctx context.Context, n node) (patroniView, bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, b, err := c.do(ctx, http.MethodGet, n.restURL+"/patroni", "", nil)
	var v patroniView
	if err != nil || st != http.StatusOK || json.Unmarshal(b, &v) != nil {
		return v, false
	}
	return v, true
}

// leader returns the node whose Patroni answers GET /primary with 200.
func (c *client) leader(ctx context.Context, nodes []node) (node, bool) {
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, _, _ := c.do(ctx, http.MethodGet, n.restURL+"/primary", "", nil)
		cancel()
		if st == http.StatusOK {
			return n, true
		}
	}
	return node{}, false
}

// walsenders lists the walsender processes of the postmaster pm.
func walsenders(pm int) []int {
	var out []int
	for _, p := range children(pm) {
		if strings.Contains(cmdline(p), "walsender") {
			out = append(out, p)
		}
	}
	return out
}

// freeze stops (SIGSTOP) the leader's walsenders: the standbys get no more
// WAL while the leader goes on committing.
func freeze(leader node) ([]int, error) {
	pm, err := postmasterPid(leader.dataDir)
	if err != nil {
		return nil, err
	}
	ws := walsenders(pm)
	if len(ws) == 0 {
		return nil, fmt.Errorf("the leader %s (postmaster %d) has no walsender", leader.name, pm)
	}
	for _, p := range ws {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			return nil, fmt.Errorf("SIGSTOP walsender %d: %w", p, err)
		}
	}
	return ws, nil
}

// kill SIGKILLs the leader's Patroni, its postmaster and every child of
// the postmaster (the frozen walsenders among them) at once, as if its
// machine died, and waits until they are gone.
func kill(ctx context.Context, leader node) ([]int, error) {
	pm, err := postmasterPid(leader.dataDir)
	if err != nil {
		return nil, err
	}
	targets := append([]int{leader.patroniPid, pm}, children(pm)...)
	for _, p := range targets {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		for _, p := range targets {
			if alive(p) {
				left++
			}
		}
		if left == 0 {
			return targets, nil
		}
		if time.Now().After(deadline) {
			return targets, fmt.Errorf("%d of the leader's processes still run 30s after SIGKILL", left)
		}
		pause(ctx, 20*time.Millisecond)
	}
}
